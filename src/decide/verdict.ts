import { Code } from "@connectrpc/connect";
import type { MethodPlan } from "../policy/policy.js";
import { principalKind, type Principal, type PrincipalKindName } from "../principal.js";
import { TokenRejectedError } from "../token/errors.js";
import type { PermissionDeniedReason, UnauthenticatedReason, UnavailableReason } from "../reasons.js";

/**
 * The outcome of one authorization decision: a value, not an exception.
 * Only the boundary adapters (request gate, interceptor, pre-filter) turn a
 * denial into a response.
 */
export type Verdict = Allow | Deny | Unavailable;

/** The call may proceed; `principal` is undefined for an anonymous caller of a public method. */
export interface Allow {
  readonly outcome: "allow";
  readonly plan: MethodPlan;
  readonly principal: Principal | undefined;
  /**
   * The verified access token the principal was identified by (undefined
   * when anonymous): what re-checking a long-lived call is keyed on.
   */
  readonly token?: TokenIdentity;
}

/** The parts of a verified access token that later re-checks need; no secret. */
export interface TokenIdentity {
  readonly userId: number;
  /** Revocation is keyed by it. */
  readonly jti: string;
  /** `iat`, seconds since the epoch. */
  readonly issuedAt: number;
  /** `exp`, seconds since the epoch, when the verifier reports it. */
  readonly expiresAt?: number;
}

/** The call is refused: UNAUTHENTICATED or PERMISSION_DENIED. */
export interface Deny {
  readonly outcome: "deny";
  readonly plan: MethodPlan;
  readonly code: Code.Unauthenticated | Code.PermissionDenied;
  readonly reason: UnauthenticatedReason | PermissionDeniedReason;
  /** Safe to show to the client. */
  readonly message: string;
  /** The identified caller, for PERMISSION_DENIED (logs only). */
  readonly userId?: number;
  /** The identified caller's kind, for PERMISSION_DENIED (logs and metrics only). */
  readonly principalKind?: PrincipalKindName;
  /** The underlying error, for logs only; never sent to clients. */
  readonly cause?: unknown;
  /**
   * Facts a developer needs to act on the refusal, sent in the ErrorInfo
   * metadata and logged: for `TOKEN_LIFETIME_EXCEEDED`, `maxLifetimeSeconds`
   * (the verifier's bound).
   */
  readonly metadata?: Readonly<Record<string, string>>;
}

/** No decision could be made because a backend (database, JWKS) failed: fail closed. */
export interface Unavailable {
  readonly outcome: "unavailable";
  readonly plan: MethodPlan;
  readonly code: Code.Unavailable;
  readonly reason: UnavailableReason;
  readonly message: string;
  readonly cause: unknown;
}

/** Client-facing messages, short and generic; the reason code carries the detail. */
export const MESSAGES = {
  TOKEN_MISSING: "authentication required",
  TOKEN_MALFORMED: "malformed authorization header",
  TOKEN_INVALID: "invalid token",
  TOKEN_EXPIRED: "token expired",
  TOKEN_LIFETIME_EXCEEDED: "token lifetime above the verifier's maxLifetimeSeconds",
  TOKEN_WRONG_TYPE: "invalid token type",
  TOKEN_REVOKED: "token revoked",
  USER_INACTIVE: "user not found or inactive",
  UNKNOWN_ISSUER: "token issuer not trusted",
  IDENTITY_NOT_LINKED: "external identity not linked to a user",
  GATEWAY_UNTRUSTED: "gateway claims header not accepted from this peer",
  API_KEY_NOT_ALLOWED: "API keys are not accepted by this method: use a token from a login",
  STAFF_REQUIRED: "staff access required",
  SUPERUSER_REQUIRED: "superuser access required",
  PRINCIPAL_KIND_USER: "only users may call this method",
  PRINCIPAL_KIND_SERVICE: "only service accounts may call this method",
  AUTH_BACKEND_UNAVAILABLE: "authentication backend unavailable, try again later",
} as const;

/** Builds an UNAUTHENTICATED verdict with the standard message for `reason`. */
export function unauthenticated(plan: MethodPlan, reason: UnauthenticatedReason, cause?: unknown): Deny {
  const metadata = reason === "TOKEN_LIFETIME_EXCEEDED" ? lifetimeMetadata(cause) : undefined;
  return {
    outcome: "deny",
    plan,
    code: Code.Unauthenticated,
    reason,
    message: MESSAGES[reason],
    cause,
    ...(metadata !== undefined && { metadata }),
  };
}

/** The bound a token broke, from the verifier's error (a `TokenRejectedError` with `bound`). */
function lifetimeMetadata(cause: unknown): Record<string, string> | undefined {
  if (!(cause instanceof TokenRejectedError) || cause.bound === undefined) return undefined;
  return { maxLifetimeSeconds: String(cause.bound) };
}

/**
 * Builds a PERMISSION_DENIED verdict for an identified caller, labelled with
 * its id and kind (for logs and metrics): the one shape the rule checks, the
 * conditions and the `authorize` fallback all refuse with.
 */
export function permissionDenied(
  plan: MethodPlan,
  principal: Principal | undefined,
  reason: PermissionDeniedReason,
  message: string,
  cause?: unknown,
): Deny {
  return {
    outcome: "deny",
    plan,
    code: Code.PermissionDenied,
    reason,
    message,
    ...(principal !== undefined && { userId: principal.id, principalKind: principalKind(principal) }),
    ...(cause !== undefined && { cause }),
  };
}
