/**
 * Machine-readable reasons for refusing a call. They travel to clients in a
 * `google.rpc.ErrorInfo` detail (domain {@link ERROR_DOMAIN}) and appear in
 * logs and metrics, so they are stable API: add, never rename.
 */
export const ERROR_DOMAIN = "protoguard.dev";

/** Why a caller is not identified (gRPC code UNAUTHENTICATED). */
export type UnauthenticatedReason =
  /** No `authorization` header on a method that needs a user. */
  | "TOKEN_MISSING"
  /** The header is not `Bearer <three base64url segments>`, is repeated, or too long. */
  | "TOKEN_MALFORMED"
  /** Signature, algorithm, key, header or claims are not acceptable. */
  | "TOKEN_INVALID"
  /** `exp` has passed (beyond the configured leeway). */
  | "TOKEN_EXPIRED"
  /**
   * The token lives longer (`exp - iat`) than the verifier accepts: its
   * `maxLifetimeSeconds`, which defaults to the issuer's default TTLs (300 s
   * access). Raise it (or the verifier's `accessTtlSeconds`) to the TTL the
   * tokens are issued with. The ErrorInfo metadata `maxLifetimeSeconds`
   * carries the bound.
   */
  | "TOKEN_LIFETIME_EXCEEDED"
  /** A refresh token where an access token belongs, or the other way round. */
  | "TOKEN_WRONG_TYPE"
  /** The token's `jti` was revoked, or it predates the user's last credentials change. */
  | "TOKEN_REVOKED"
  /** The token names a user that does not exist or is not active. */
  | "USER_INACTIVE"
  /**
   * The token's `iss` is neither protoguard's own issuer nor a configured
   * trusted issuer: refused before any key is tried.
   */
  | "UNKNOWN_ISSUER"
  /**
   * A trusted issuer's token names a subject linked to no local user, and
   * that issuer is not configured to provision users on first sight.
   */
  | "IDENTITY_NOT_LINKED"
  /**
   * In gateway mode, the gateway claims header arrived from a socket peer
   * outside the configured gateway ranges (or from no known socket): never
   * trusted, whatever else the request carries.
   */
  | "GATEWAY_UNTRUSTED"
  /**
   * An API key (`pgk_…`) was presented to a method whose rule says
   * `api_keys: false` (changing a password, minting keys): it needs a token
   * from a login. Decided from the credential's shape before any look-up,
   * so the caller is not identified, hence UNAUTHENTICATED rather than
   * PERMISSION_DENIED. An unknown, wrong or revoked key is `TOKEN_INVALID` /
   * `TOKEN_REVOKED`, an expired one `TOKEN_EXPIRED`, a key of a deactivated
   * owner `USER_INACTIVE`, as for tokens.
   */
  | "API_KEY_NOT_ALLOWED";

/** Why an identified caller may not call (gRPC code PERMISSION_DENIED). */
export type PermissionDeniedReason =
  | "PERMISSION_MISSING"
  | "STAFF_REQUIRED"
  | "SUPERUSER_REQUIRED"
  /**
   * The rule admits only one kind of principal (`principal_kind`) and the
   * caller is of the other: a person on a service-only method, or a service
   * account on a method for people.
   */
  | "PRINCIPAL_KIND"
  /**
   * The rule's CEL condition is false for this request, or the method's
   * resource loader found nothing (refused alike, so a caller cannot probe
   * which resources exist). The message is the rule's `condition_message`.
   */
  | "CONDITION_FAILED"
  /** The rule's condition could not be evaluated (a missing key, a wrong type): refused, never allowed. */
  | "CONDITION_ERROR"
  /** The application's `authorize` fallback refused the call; the message is the one it gave. */
  | "AUTHORIZE_DENIED";

/** Why no decision could be made (gRPC code UNAVAILABLE). */
export type UnavailableReason =
  | "AUTH_BACKEND_UNAVAILABLE"
  /** The method's resource loader threw: the condition cannot be decided. */
  | "RESOURCE_UNAVAILABLE"
  /** The application's `authorize` fallback threw or answered nonsense. */
  | "AUTHORIZE_UNAVAILABLE";

export type DenyReason = UnauthenticatedReason | PermissionDeniedReason | UnavailableReason;

/**
 * Why the AuthService refused a login. Kept apart from {@link DenyReason}:
 * these come from the Login RPC itself, not from the auth layer's checks.
 */
export type LoginFailureReason =
  /**
   * UNAUTHENTICATED: unknown user, wrong password, disabled account, missing,
   * wrong or replayed TOTP code. Deliberately one reason for all of them, so
   * a caller learns nothing about which accounts exist.
   */
  | "INVALID_CREDENTIALS"
  /**
   * RESOURCE_EXHAUSTED: too many failed attempts for this username, too many
   * attempts from this client address, or too many password checks in
   * progress; retry later.
   */
  | "LOGIN_THROTTLED"
  /**
   * UNAUTHENTICATED: the account was imported (`protoguard import django`)
   * with a password hash protoguard cannot verify, so no password can be
   * checked; set a new one (`protoguard user set-password`, or your reset
   * flow). Answered whatever password was sent, only for active accounts.
   */
  | "PASSWORD_RESET_REQUIRED";
