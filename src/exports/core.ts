/**
 * The parts of a decision, for people building their own user store,
 * verifier or transport on protoguard: the planned rules, the decision as a
 * value (`createDecider` → `allow` / `deny` / `unavailable`), credentials,
 * trusted-issuer routing, the reasons and error classes, and the context
 * keys the adapters set. An application needs none of it: `protoguard`
 * holds what applications import.
 *
 * @example
 * ```ts
 * import { createAuthPolicy, createDecider, type PrincipalSource } from "protoguard/core";
 * import { createTokenVerifier, type Keyring } from "protoguard";
 *
 * declare const keyring: Keyring;
 * const principals: PrincipalSource = {
 *   async load(userId) {
 *     const principal = { id: userId, username: `user${userId}`, email: "", isStaff: false, isSuperuser: false };
 *     return { status: "ok", principal: { ...principal, permissions: new Set<string>() } };
 *   },
 * };
 * const decide = createDecider({ policy: createAuthPolicy(), verifier: createTokenVerifier({ keyring }), principals });
 * ```
 *
 * @module protoguard/core
 */

// ---------------------------------------------------------------------------
// The decision as a value
// ---------------------------------------------------------------------------
export { createDecider } from "../decide/decide.js";
export type {
  AccessTokenVerifier,
  CallOrigin,
  Decide,
  DeciderOptions,
  IdentityResolution,
  IdentityResolver,
  PrincipalSource,
} from "../decide/decide.js";
export type { Allow, Deny, TokenIdentity, Unavailable, Verdict } from "../decide/verdict.js";
export type { ShadowOutcome } from "../decide/access.js";
export type { AccessTokenResult, ExternalAccessClaims, ExternalSubject, LocalAccessClaims } from "../claims.js";
export { principalHasPermission, principalKind } from "../principal.js";
export type { PrincipalLookup } from "../principal.js";
export { isPermissionString, parsePermission } from "../permission.js";

// Rules, planned once per method descriptor
export { createAuthPolicy } from "../policy/policy.js";
export type { AuthPolicy, AuthPolicyOptions, MethodPlan } from "../policy/policy.js";
export type { ShadowPlan } from "../policy/conditions.js";
export { describeRule, planRule } from "../policy/rule.js";
export type { PlannedRule, RuleCondition, RuleSource } from "../policy/rule.js";
export { ConditionError } from "../conditions/compile.js";
export type { CompiledCondition, ConditionBindings } from "../conditions/compile.js";

// Stream re-checks
export type { RevalidationHooks, StreamRevalidationOptions } from "../connect/watch.js";

// ---------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------
export { MAX_AUTHORIZATION_LENGTH, parseAuthorization, readBearer } from "../credential/bearer.js";
export type { BearerCredential, HeaderReader } from "../credential/bearer.js";
export {
  clientCertificateContextValues,
  clientCertificateKey,
  clientCertificateOf,
  readClientCertificate,
} from "../credential/client-certificate.js";
export type {
  CertificatePrincipalSource,
  CertificateRequest,
  CertificateSocket,
  ClientCertificate,
} from "../credential/client-certificate.js";

// ---------------------------------------------------------------------------
// Tokens: the pieces below createTokenVerifier
// ---------------------------------------------------------------------------
export { createRemoteKeySource, jwksDocument } from "../token/jwks.js";
export type { JwksDocument, RemoteJwksOptions, RemoteKeySource } from "../token/jwks.js";
export type {
  AsymmetricAlgorithm,
  AsymmetricKeyInput,
  SigningKey,
  VerificationKey,
} from "../token/keys.js";
export type { VerifyResult } from "../token/verifier.js";
export { DEFAULT_USER_ID_CLAIM, parseUserId } from "../token/claims.js";
export type { TokenType, VerifiedClaims } from "../token/claims.js";
export { MAX_USER_ID } from "../user-id.js";
export { TOKEN_DEFAULTS } from "../token/defaults.js";

// Trusted identity providers and gateways, composed by hand
export { parseTrustedIssuers } from "../identity/trusted-issuers.js";
export type { ClaimPath, ClaimPathInit } from "../identity/claim-path.js";
export { withTrustedIssuers } from "../identity/external-verifier.js";
export type { AccessVerifier, TrustedIssuerOptions, TrustedIssuerRouting } from "../identity/external-verifier.js";
export { createGatewayReader } from "../identity/gateway.js";
export type { GatewayReader } from "../identity/gateway.js";

// ---------------------------------------------------------------------------
// Errors: reasons, codes, and the boundary mapping
// ---------------------------------------------------------------------------
export { ERROR_DOMAIN } from "../reasons.js";
export type { PermissionDeniedReason, UnauthenticatedReason, UnavailableReason } from "../reasons.js";
export { authError, verdictToConnectError } from "../connect/errors.js";
export { TokenRejectedError } from "../token/errors.js";
export type { KeyConfigErrorCode, TokenRejectionCode } from "../token/errors.js";

// Context values the adapters set, for adapters of your own
export { authSignalKey, principalKey } from "../connect/context.js";

// API keys (`pgk_<id>_<secret>`): the credential's shape, generation and the source interface
export {
  API_KEY_PREFIX,
  generateApiKey,
  hashApiKeySecret,
  parseApiKey,
  scopedPrincipal,
} from "../credential/api-key.js";
export type {
  ApiKeyCredential,
  ApiKeyLookup,
  ApiKeyPrincipalSource,
  GeneratedApiKey,
} from "../credential/api-key.js";
export type { PrincipalApiKey } from "../principal.js";
export type { RuleCredentials } from "../policy/rule.js";
// Rate limits declared in rules (`rate_limit`): the plan, the limiter the adapters count with
export type { PlannedRateLimit, RateLimitInit } from "../policy/rate-limit.js";
export type { RuleRateLimit } from "../policy/rule.js";
export {
  BURST_REFILL_WINDOWS,
  MAX_RATE_LIMIT_WINDOW_SECONDS,
  parseRateLimitWindow,
  planRateLimit,
} from "../policy/rate-limit.js";
export { createRateLimiter, RATE_LIMITER_DEFAULTS } from "../connect/rate-limit.js";
export type {
  RateLimitCaller,
  RateLimitCounts,
  RateLimiter,
  RateLimiterOptions,
  RateLimitStoreFailure,
} from "../connect/rate-limit.js";
export type { RateLimitReason } from "../reasons.js";
export { rateLimitedError } from "../connect/errors.js";
// Step-up: what a rule's max_auth_age / require_totp ask of a token's auth_time / amr
export type { StepUpRequirement } from "../policy/step-up.js";
export type { AuthContext } from "../token/auth-context.js";
export { readAuthContext } from "../token/auth-context.js";
