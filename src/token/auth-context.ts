/**
 * How and when a token's holder authenticated: the `auth_time` (OpenID Connect Core §2) and
 * `amr` (RFC 8176) claims, read the same way from protoguard's own tokens and from trusted
 * issuers', for step-up rules (`max_auth_age`, `require_totp`).
 */

/** `auth_time` and `amr` of a verified token, each absent when the token has no usable one. */
export interface AuthContext {
  /** When the holder last entered a credential, seconds since the epoch. */
  readonly authTime?: number;
  /** The methods used (RFC 8176): `["pwd"]`, `["pwd", "otp"]`, ... */
  readonly amr?: readonly string[];
}

/** RFC 8176 values protoguard itself writes: a password, and a one-time code (TOTP). */
export const AMR_PASSWORD = "pwd";
/** RFC 8176 `otp`: a one-time password was entered. */
export const AMR_OTP = "otp";

const MAX_AMR_ENTRIES = 16;
const MAX_AMR_LENGTH = 64;

/**
 * Reads `auth_time` and `amr` from a verified payload. A malformed value (a string time, a
 * non-array `amr`, a huge list) is treated as absent: a step-up rule then refuses the token,
 * which fails closed, while methods without one are unaffected.
 */
export function readAuthContext(payload: Readonly<Record<string, unknown>>): AuthContext {
  const time = Object.hasOwn(payload, "auth_time") ? payload.auth_time : undefined;
  const methods = Object.hasOwn(payload, "amr") ? payload.amr : undefined;
  const authTime = typeof time === "number" && Number.isFinite(time) && time >= 0 ? time : undefined;
  const amr =
    Array.isArray(methods) &&
    methods.length <= MAX_AMR_ENTRIES &&
    methods.every((m) => typeof m === "string" && m.length > 0 && m.length <= MAX_AMR_LENGTH)
      ? Object.freeze([...(methods as string[])])
      : undefined;
  return { ...(authTime !== undefined && { authTime }), ...(amr !== undefined && { amr }) };
}
