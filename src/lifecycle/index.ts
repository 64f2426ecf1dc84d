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
export { createAuthService } from "./auth-service.js";
export type { AuthServiceOptions } from "./auth-service.js";
export * from "../../gen/protoguard/v1/auth_pb.js";

// ---------------------------------------------------------------------------
// Account operations that end sessions
// ---------------------------------------------------------------------------
export { changePassword, deactivateUser, enableTotp } from "./auth-service.js";
export type { TotpEnrollment } from "./auth-service.js";

// ---------------------------------------------------------------------------
// Passwords, TOTP, throttling
// ---------------------------------------------------------------------------
export { createPasswordHasher, DEFAULT_SCRYPT_PARAMS, MAX_PASSWORD_BYTES, PasswordBusyError } from "./passwords.js";
export type { PasswordHasher, PasswordHasherOptions, PasswordVerification, ScryptParams } from "./passwords.js";
export { generateTotp, generateTotpSecret, totpUri, verifyTotp } from "./totp.js";
export type { TotpFailure, TotpVerification, VerifyTotpOptions } from "./totp.js";
export {
  DEFAULT_SERVICE_TOKEN_TTL_SECONDS,
  generateClientCredentials,
  generateClientId,
  generateClientSecret,
} from "./service-token.js";
export type { ClientCredentials } from "./service-token.js";
export { DEFAULT_LOGIN_ADMISSION } from "./login-admission.js";
export type { LoginAdmissionOptions } from "./login-admission.js";
export type { PasswordWorkOptions } from "./passwords.js";
export { DEFAULT_THROTTLE, purgeLoginAttempts } from "../store/login-attempts.js";
export type { ThrottlePolicy } from "../store/login-attempts.js";

// django24: new exports
export { createSimplejwtAdoption } from "./simplejwt-adoption.js";
export type { AdoptionContext, SimplejwtAdoption, SimplejwtAdoptionOptions } from "./simplejwt-adoption.js";
export type { IssuedSession } from "./sessions.js";
export { openSimplejwtBlacklist } from "../store/simplejwt-tokens.js";
export type { SimplejwtBlacklist } from "../store/simplejwt-tokens.js";
