/**
 * protoguard: declarative JWT authentication and authorization for
 * Connect-RPC services. Rules live in .proto options (`protoguard.v1`);
 * `createAuth` enforces them from the method descriptors.
 *
 * This entry point loads no database driver, logger or metrics library: an
 * application that brings its own user store needs nothing else. The other
 * entry points are `protoguard/store` (the Drizzle user store),
 * `protoguard/auth-service` (login, refresh, logout), `protoguard/server`
 * (one port for gRPC, gRPC-Web and Connect) and `protoguard/testing`.
 *
 * @example
 * ```ts
 * import { connectNodeAdapter } from "@connectrpc/connect-node";
 * import { createAuth, createKeyring, createTokenVerifier, requireUser } from "protoguard";
 * import { createPrincipalSource, openDatabase } from "protoguard/store";
 *
 * const keyring = await createKeyring([{ alg: "HS256", secret: process.env.JWT_SECRET! }]);
 * const auth = createAuth({
 *   services: [ProductService],
 *   verifier: createTokenVerifier({ keyring }),
 *   principals: await createPrincipalSource({ database: await openDatabase({ url: process.env.DATABASE_URL }) }),
 * });
 * const handler = connectNodeAdapter({ routes, interceptors: [auth.interceptor], requestGate: auth.requestGate });
 * ```
 *
 * @module protoguard
 */

// ---------------------------------------------------------------------------
// Enforcing the rules: what every application needs
// ---------------------------------------------------------------------------
export { createAuth } from "./connect/auth.js";
export type { Auth, AuthOptions, DecisionEvent, DecisionStage } from "./connect/auth.js";
export type { RevalidationHooks, StreamRevalidationOptions } from "./connect/watch.js";

// Handler helpers (django-cfg's BaseService methods)
export {
  authSignal,
  getUser,
  hasPermission,
  permissionDenied,
  requirePermission,
  requireStaff,
  requireSuperuser,
  requireUser,
} from "./connect/helpers.js";
export type { CallerContext } from "./connect/helpers.js";
export { principalHasPermission, principalKind } from "./principal.js";
export type { Principal, PrincipalKindName, PrincipalLookup } from "./principal.js";

// Errors clients see, and reading them on the client
export { authError, authErrorReason } from "./connect/errors.js";
export { ERROR_DOMAIN } from "./reasons.js";
export type {
  DenyReason,
  LoginFailureReason,
  PermissionDeniedReason,
  UnauthenticatedReason,
  UnavailableReason,
} from "./reasons.js";

// ---------------------------------------------------------------------------
// Tokens: keys, verifying, issuing (jose)
// ---------------------------------------------------------------------------
export {
  createKeyring,
  createRemoteKeySource,
  createTokenIssuer,
  createTokenVerifier,
  DEFAULT_USER_ID_CLAIM,
  generateKeyPairFiles,
  jwksDocument,
  KeyConfigError,
  loadKeyFile,
  MAX_USER_ID,
  parseUserId,
  TokenRejectedError,
} from "./token/index.js";
export type {
  AsymmetricAlgorithm,
  AsymmetricKeyInput,
  IssuedToken,
  JwksDocument,
  KeyConfig,
  KeyConfigErrorCode,
  Keyring,
  LoadedKey,
  RemoteJwksOptions,
  RemoteKeySource,
  SigningKey,
  TokenAlgorithm,
  TokenIssuer,
  TokenIssuerOptions,
  TokenRejectionCode,
  TokenType,
  TokenVerifier,
  TokenVerifierOptions,
  VerificationKey,
  VerifiedClaims,
  VerifyResult,
} from "./token/index.js";
export type { AccessVerifyResult, FederatedTokenVerifier, FederatedTokenVerifierOptions } from "./token/verifier.js";

// ---------------------------------------------------------------------------
// Tokens of existing identity providers (Keycloak, Auth0, Entra ID...)
// ---------------------------------------------------------------------------
export { loadTrustedIssuers, parseTrustedIssuers } from "./identity/trusted-issuers.js";
export type { TrustedIssuer, TrustedIssuerInit } from "./identity/trusted-issuers.js";
export type { ClaimPath, ClaimPathInit } from "./identity/claim-path.js";
export { withTrustedIssuers } from "./identity/external-verifier.js";
export type { AccessVerifier, TrustedIssuerOptions } from "./identity/external-verifier.js";
export type { ExternalAccessClaims, ExternalSubject } from "./identity/subject.js";

// Behind a gateway that verified the token already (Envoy jwt_authn, Istio, an API gateway)
export { createGatewayReader } from "./identity/gateway.js";
export type { GatewayOptions, GatewayReader } from "./identity/gateway.js";

// ---------------------------------------------------------------------------
// Rules: reading and validating them from descriptors
// ---------------------------------------------------------------------------
export { createAuthPolicy, PolicyError } from "./policy/policy.js";
export type { AuthPolicy, AuthPolicyOptions, MethodPlan } from "./policy/policy.js";
export { describeRule, planRule } from "./policy/rule.js";
export type { PlannedRule, RuleInit, RuleSource } from "./policy/rule.js";
export { isPermissionString, parsePermission } from "./permission.js";
// The options themselves, as generated from proto/protoguard/v1/options.proto.
export {
  file_protoguard_v1_options,
  method_rule,
  method_shadow_rule,
  PrincipalKind,
  PrincipalKindSchema,
  RuleSchema,
  service_rule,
  service_shadow_rule,
} from "../gen/protoguard/v1/options_pb.js";
export type { Rule } from "../gen/protoguard/v1/options_pb.js";

// ---------------------------------------------------------------------------
// For library authors: a user store of your own, the decision itself
// ---------------------------------------------------------------------------
export { createDecider } from "./decide/decide.js";
export type {
  AccessTokenResult,
  AccessTokenVerifier,
  Decide,
  DeciderOptions,
  IdentityResolution,
  IdentityResolver,
  LocalAccessClaims,
  PrincipalSource,
} from "./decide/decide.js";
export type { Allow, Deny, TokenIdentity, Unavailable, Verdict } from "./decide/verdict.js";
export { readBearer, parseAuthorization, MAX_AUTHORIZATION_LENGTH } from "./credential/bearer.js";
export type { BearerCredential, HeaderReader } from "./credential/bearer.js";
export { verdictToConnectError } from "./connect/errors.js";
export { authSignalKey, principalKey } from "./connect/context.js";
