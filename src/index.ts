/**
 * protoguard: declarative JWT authentication and authorization for
 * Connect-RPC services. Rules live in .proto options (`protoguard.v1`);
 * `createAuth` enforces them from the method descriptors.
 *
 * @example
 * ```ts
 * import { createAuth, createKeyring, createTokenVerifier, createPrincipalSource, openDatabase } from "protoguard";
 *
 * const database = await openDatabase({ url: process.env.DATABASE_URL });
 * const keyring = await createKeyring([{ alg: "HS256", secret: process.env.JWT_SECRET! }]);
 * const auth = createAuth({
 *   services: [ProductService],
 *   verifier: createTokenVerifier({ keyring }),
 *   principals: await createPrincipalSource({ database }),
 * });
 * const handler = connectNodeAdapter({ routes, interceptors: [auth.interceptor], requestGate: auth.requestGate });
 * ```
 *
 * @module protoguard
 */

// Rules
export { createAuthPolicy, PolicyError } from "./policy/policy.js";
export type { AuthPolicy, AuthPolicyOptions, MethodPlan } from "./policy/policy.js";
export { describeRule, planRule } from "./policy/rule.js";
export type { PlannedRule, RuleInit, RuleSource } from "./policy/rule.js";
export { isPermissionString, parsePermission } from "./permission.js";

// Enforcement
export { createAuth } from "./connect/auth.js";
export type { Auth, AuthOptions, DecisionEvent, DecisionStage } from "./connect/auth.js";
export { createDecider } from "./decide/decide.js";
export type { AccessTokenVerifier, Decide, DeciderOptions, PrincipalSource } from "./decide/decide.js";
export type { Allow, Deny, Unavailable, Verdict } from "./decide/verdict.js";
export { readBearer, parseAuthorization, MAX_AUTHORIZATION_LENGTH } from "./credential/bearer.js";
export type { BearerCredential } from "./credential/bearer.js";
export { authError, authErrorReason, verdictToConnectError } from "./connect/errors.js";
export { principalKey } from "./connect/context.js";
export { ERROR_DOMAIN } from "./reasons.js";
export type { DenyReason, PermissionDeniedReason, UnauthenticatedReason, UnavailableReason } from "./reasons.js";

// Handler helpers
export {
  getUser,
  hasPermission,
  permissionDenied,
  requirePermission,
  requireStaff,
  requireSuperuser,
  requireUser,
} from "./connect/helpers.js";
export { principalHasPermission } from "./principal.js";
export type { Principal } from "./principal.js";

// Tokens
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
  parseUserId,
  TokenRejectedError,
} from "./token/index.js";
export type {
  IssuedToken,
  JwksDocument,
  KeyConfig,
  KeyConfigErrorCode,
  Keyring,
  RemoteJwksOptions,
  TokenAlgorithm,
  TokenIssuer,
  TokenIssuerOptions,
  TokenRejectionCode,
  TokenType,
  TokenVerifier,
  TokenVerifierOptions,
  VerifiedClaims,
  VerifyResult,
} from "./token/index.js";

// Users and permissions
export { createPrincipalSource } from "./principals/source.js";
export type { CachedPrincipalSource, PrincipalSourceOptions } from "./principals/source.js";
export {
  addUsersToGroup,
  createGroup,
  createUser,
  deleteUser,
  ensurePermissions,
  findUserByUsername,
  getUserById,
  grantGroupPermissions,
  grantUserPermissions,
  loadPrincipal,
  migrateDatabase,
  openDatabase,
  removeUsersFromGroup,
  revokeGroupPermissions,
  revokeUserPermissions,
  setPasswordHash,
  setUserActive,
  StoreError,
} from "./store/index.js";
export type {
  CreateUserInput,
  Database,
  DrizzleDb,
  OpenDatabaseOptions,
  PrincipalLookup,
  StoreErrorCode,
  User,
} from "./store/index.js";
export * as schema from "./store/schema.js";
export { INVALIDATION_CHANNEL, subscribeInvalidations } from "./store/invalidation.js";
export type { InvalidationEvent } from "./store/invalidation.js";

// Passwords and TOTP
export { createPasswordHasher, PasswordBusyError } from "./lifecycle/passwords.js";
export type { PasswordHasher, PasswordHasherOptions } from "./lifecycle/passwords.js";
export { generateTotp, generateTotpSecret, totpUri, verifyTotp } from "./lifecycle/totp.js";

// Token lifecycle
export { changePassword, createAuthService, deactivateUser, enableTotp } from "./lifecycle/auth-service.js";
export type { AuthServiceOptions, TotpEnrollment } from "./lifecycle/auth-service.js";
export { DEFAULT_THROTTLE } from "./store/login-attempts.js";
export type { ThrottlePolicy } from "./store/login-attempts.js";
export type { LoginFailureReason } from "./reasons.js";

// Serving: one port for gRPC, gRPC-Web and Connect
export { JWKS_PATH, METRICS_PATH, SERVER_SERVICES, startServer } from "./server/serve.js";
export type { RunningServer, ServerRuntime, StartServerOptions } from "./server/serve.js";
export { createPrefilter, createStreamPrefilter, prefilterContextValues } from "./server/prefilter.js";
export type { PrefilterOptions } from "./server/prefilter.js";
export { listen } from "./server/listen.js";
export type { Listening, ListenOptions, RequestHandler, TlsOptions } from "./server/listen.js";
export { withCors } from "./server/cors.js";
export type { CorsOptions } from "./server/cors.js";
export { createHealth } from "./server/health.js";
export type { HealthService, ServingStatus } from "./server/health.js";
export { fileRegistryOf, registerReflection } from "./server/reflection.js";
export { createObservability } from "./server/observability.js";
export type { Observability, ObservabilityOptions } from "./server/observability.js";
export { onShutdownSignals } from "./server/shutdown.js";

// Configuration from the environment (what the CLI and `serve` use)
export { ConfigError, loadConfig } from "./runtime/config.js";
export type { ProtoguardConfig } from "./runtime/config.js";
export { openRuntime } from "./runtime/runtime.js";
export type { OpenRuntimeOptions, Runtime } from "./runtime/runtime.js";
