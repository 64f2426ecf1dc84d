/**
 * The token lifecycle: `protoguard.v1.AuthService` (Login with password and
 * TOTP, Refresh with rotation and reuse detection, Logout, WhoAmI), its
 * descriptor and messages, password hashing and TOTP enrolment.
 *
 * @example
 * ```ts
 * import { AuthService, createAuthService } from "protoguard/auth-service";
 *
 * const authService = createAuthService({ database, issuer, verifier });
 * const routes = (router: ConnectRouter) => router.service(AuthService, authService);
 * // and list AuthService in createAuth({ services }) so its own rules are enforced
 * ```
 *
 * @module protoguard/auth-service
 */

// ---------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------
export { createAuthService } from "../lifecycle/auth-service.js";
export type { AuthServiceOptions } from "../lifecycle/auth-service.js";
export * from "../../gen/protoguard/v1/auth_pb.js";

// ---------------------------------------------------------------------------
// Account operations that end sessions
// ---------------------------------------------------------------------------
export { changePassword, deactivateUser, enableTotp } from "../lifecycle/auth-service.js";
export type { TotpEnrollment } from "../lifecycle/auth-service.js";

// ---------------------------------------------------------------------------
// Passwords, TOTP, throttling
// ---------------------------------------------------------------------------
export {
  createPasswordHasher,
  DEFAULT_SCRYPT_PARAMS,
  MAX_PASSWORD_BYTES,
  PasswordBusyError,
} from "../lifecycle/passwords.js";
export type {
  PasswordHasher,
  PasswordHasherOptions,
  PasswordVerification,
  ScryptParams,
} from "../lifecycle/passwords.js";
export { generateTotp, generateTotpSecret, totpUri, verifyTotp } from "../lifecycle/totp.js";
export type { TotpFailure, TotpVerification, VerifyTotpOptions } from "../lifecycle/totp.js";
export {
  DEFAULT_SERVICE_TOKEN_TTL_SECONDS,
  generateClientCredentials,
  generateClientId,
  generateClientSecret,
} from "../lifecycle/service-token.js";
export type { ClientCredentials } from "../lifecycle/service-token.js";
export { DEFAULT_LOGIN_ADMISSION } from "../lifecycle/login-admission.js";
export type { LoginAdmissionOptions } from "../lifecycle/login-admission.js";
export type { PasswordWorkOptions } from "../lifecycle/passwords.js";
export { DEFAULT_THROTTLE, purgeLoginAttempts } from "../store/login-attempts.js";
export type { ThrottlePolicy } from "../store/login-attempts.js";

// ---------------------------------------------------------------------------
// Moving from Django: adopting simplejwt refresh tokens
// ---------------------------------------------------------------------------
export { createSimplejwtAdoption } from "../lifecycle/simplejwt-adoption.js";
export type { AdoptionContext, SimplejwtAdoption, SimplejwtAdoptionOptions } from "../lifecycle/simplejwt-adoption.js";
export type { IssuedSession } from "../lifecycle/sessions.js";
export { openSimplejwtBlacklist } from "../store/simplejwt-tokens.js";
export type { SimplejwtBlacklist } from "../store/simplejwt-tokens.js";

// Security events (refresh reuse, logout) for an audit trail of your own
export type { SecurityEvent } from "../lifecycle/auth-service.js";

// API keys: minting with the scope checks both the CLI and CreateApiKey apply
export {
  ApiKeyError,
  MAX_API_KEY_LIFETIME_SECONDS,
  MAX_API_KEYS_PER_OWNER,
  mintApiKey,
  parseApiKeyLifetime,
} from "../lifecycle/api-keys.js";
export type { ApiKeyErrorCode, MintApiKeyInput, MintedApiKey } from "../lifecycle/api-keys.js";
