/**
 * The claims protoguard puts in and expects from a token: djangorestframework-simplejwt's
 * `token_type`, `exp`, `iat`, `jti` and `user_id`, plus `iss`/`aud` when configured.
 */
import type { JWTPayload } from "jose";
import { isUserId, MAX_USER_ID } from "../user-id.js";
import { readAuthContext } from "./auth-context.js";
import { TokenRejectedError } from "./errors.js";

/** Which kind of token: short-lived access tokens on RPCs, refresh tokens only to get new ones. */
export type TokenType = "access" | "refresh";

/** What a successful verification yields. Times are seconds since the Unix epoch. */
export interface VerifiedClaims {
  readonly userId: number;
  /** The token's id (what revocation is keyed by). `""` only when `requireJti: false` and absent. */
  readonly jti: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
  readonly tokenType: TokenType;
  /** `auth_time` (seconds) when the token has a numeric one: when its holder last entered a credential. */
  readonly authTime?: number;
  /** `amr` (RFC 8176) when the token has a list of strings: `["pwd"]`, `["pwd", "otp"]`. */
  readonly amr?: readonly string[];
  /** The whole verified payload, shallowly frozen. Read extra claims with `Object.hasOwn`. */
  readonly payload: Readonly<JWTPayload>;
}

/** simplejwt's default `USER_ID_CLAIM`. */
export const DEFAULT_USER_ID_CLAIM = "user_id";

/** Claims the issuer sets itself; `extra` claims may not override them. */
export const RESERVED_CLAIMS: ReadonlySet<string> = new Set(["token_type", "exp", "iat", "nbf", "jti", "iss", "aud"]);

/**
 * Resolves a user-id-claim option (`userIdClaim`, `jwksUserIdClaim`): `value`, or `fallback`
 * when undefined. The same rule for the issuer and the verifier, so a name one accepts the
 * other accepts too.
 *
 * @throws {RangeError} when the name is empty, not a string, or a registered claim.
 */
export function userIdClaimName(value: string | undefined, fallback: string, option: string): string {
  const name = value ?? fallback;
  if (typeof name !== "string" || name.length === 0 || RESERVED_CLAIMS.has(name)) {
    throw new RangeError(`${option} must be a non-empty string other than a registered claim`);
  }
  return name;
}

const DECIMAL_ID = /^[1-9][0-9]{0,9}$/;
const MAX_JTI_LENGTH = 255;

/**
 * Reads a user id: a JSON integer, or a decimal string (simplejwt stringifies some primary keys),
 * in 1..{@link MAX_USER_ID}. Anything else, including `"012"`, `1.5` and `2 ** 31`, is `undefined`.
 */
export function parseUserId(value: unknown): number | undefined {
  if (typeof value === "number") return isUserId(value) ? value : undefined;
  if (typeof value === "string" && DECIMAL_ID.test(value)) {
    const n = Number(value);
    return n <= MAX_USER_ID ? n : undefined;
  }
  return undefined;
}

/** Checks applied to a payload, resolved once per verifier. */
export interface ClaimRules {
  readonly issuer: string | undefined;
  readonly audience: string | undefined;
  readonly leewaySeconds: number;
  /** Upper bound of `exp - iat` per token type (`Infinity` for none). */
  readonly maxLifetime: Readonly<Record<TokenType, number>>;
  readonly userIdClaim: string;
  readonly requireJti: boolean;
}

/** `payload[name]` only when it is an own property, so `__proto__` & co. never come from the prototype. */
function own(payload: Record<string, unknown>, name: string): unknown {
  return Object.hasOwn(payload, name) ? payload[name] : undefined;
}

function numericDate(payload: Record<string, unknown>, name: string, required: boolean): number | undefined {
  const value = own(payload, name);
  if (value === undefined) {
    if (required) throw new TokenRejectedError("CLAIM_MISSING", `"${name}" claim is required`, { claim: name });
    return undefined;
  }
  // JSON.parse turns a signed `1e400` into Infinity: typeof alone would let it through.
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new TokenRejectedError("CLAIM_INVALID", `"${name}" claim must be a finite number`, { claim: name });
  }
  return value;
}

/**
 * Validates a payload whose signature has already been verified, and returns the claims.
 * `nowSeconds` keeps its fraction (milliseconds): `iat`, `nbf` and `exp` are all compared
 * against the same instant at the precision the issuer writes.
 * Order matters: only a token that is otherwise fine is reported as expired, so `EXPIRED`
 * (which makes clients refresh) is never a reply to a token that would fail anyway.
 *
 * @throws {TokenRejectedError}
 */
export function checkClaims(
  payload: unknown,
  expected: TokenType,
  rules: ClaimRules,
  nowSeconds: number,
): VerifiedClaims {
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    throw new TokenRejectedError("CLAIMS_NOT_OBJECT", "the payload is not a JSON object");
  }
  const claims = payload as Record<string, unknown>;
  const exp = numericDate(claims, "exp", true) as number;
  const iat = numericDate(claims, "iat", true) as number;
  const nbf = numericDate(claims, "nbf", false);

  if (rules.issuer !== undefined && own(claims, "iss") !== rules.issuer) {
    throw new TokenRejectedError("ISSUER_MISMATCH", "unexpected issuer", { claim: "iss" });
  }
  checkAudience(own(claims, "aud"), rules.audience);

  const tokenType = own(claims, "token_type");
  if (tokenType !== expected) {
    if (tokenType === "access" || tokenType === "refresh") {
      throw new TokenRejectedError("WRONG_TYPE", `expected a ${expected} token`, { claim: "token_type" });
    }
    throw new TokenRejectedError("CLAIM_INVALID", "missing or unknown token_type", { claim: "token_type" });
  }

  const userId = parseUserId(own(claims, rules.userIdClaim));
  if (userId === undefined) {
    throw new TokenRejectedError("CLAIM_INVALID", "user id claim is not a positive 32-bit integer", {
      claim: rules.userIdClaim,
    });
  }

  let jti = own(claims, "jti");
  if (jti === undefined && !rules.requireJti) {
    jti = "";
  } else if (typeof jti !== "string" || jti.length === 0 || jti.length > MAX_JTI_LENGTH) {
    throw new TokenRejectedError(
      jti === undefined ? "CLAIM_MISSING" : "CLAIM_INVALID",
      "jti must be a short non-empty string",
      {
        claim: "jti",
      },
    );
  }

  const { leewaySeconds } = rules;
  if (nbf !== undefined && nbf > nowSeconds + leewaySeconds) {
    throw new TokenRejectedError("NOT_YET_VALID", "token not valid yet", { claim: "nbf" });
  }
  if (iat > nowSeconds + leewaySeconds) {
    throw new TokenRejectedError("ISSUED_IN_FUTURE", "token issued in the future", { claim: "iat" });
  }
  const maxLifetime = rules.maxLifetime[expected];
  if (exp - iat > maxLifetime) {
    throw new TokenRejectedError(
      "LIFETIME_EXCEEDED",
      `token lifetime (exp - iat = ${Math.round(exp - iat)} s) above the verifier's maxLifetimeSeconds.${expected} (${maxLifetime} s)`,
      { claim: "exp", bound: maxLifetime },
    );
  }
  if (nowSeconds >= exp + leewaySeconds) {
    throw new TokenRejectedError("EXPIRED", "token expired", { claim: "exp" });
  }
  return Object.freeze({
    userId,
    jti: jti as string,
    issuedAt: iat,
    expiresAt: exp,
    tokenType: expected,
    ...readAuthContext(claims),
    payload: Object.freeze(claims) as Readonly<JWTPayload>,
  });
}

/**
 * Cheap refusals read from a payload whose signature is not verified yet: expired by `exp`, the
 * wrong `iss`, or the wrong `aud`. Run before a remote JWKS fetch, so expired or foreign tokens
 * cost no I/O, and before an RS256 or ES256 local key's signature check, so they cost no
 * public-key operation.
 * Unverified claims may only refuse, never accept: a forged "expired" token gains nothing.
 *
 * @throws {TokenRejectedError}
 */
export function refuseUnverified(encodedPayload: string, rules: ClaimRules, nowSeconds: number): void {
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(encodedPayload, "base64url").toString("utf8"));
  } catch (cause) {
    throw new TokenRejectedError("CLAIMS_NOT_OBJECT", "the payload is not JSON", { cause });
  }
  if (typeof claims !== "object" || claims === null) {
    throw new TokenRejectedError("CLAIMS_NOT_OBJECT", "the payload is not a JSON object");
  }
  const exp = Object.hasOwn(claims, "exp") ? (claims as { exp: unknown }).exp : undefined;
  if (typeof exp === "number" && nowSeconds >= exp + rules.leewaySeconds) {
    throw new TokenRejectedError("EXPIRED", "token expired", { claim: "exp" });
  }
  if (
    rules.issuer !== undefined &&
    (!Object.hasOwn(claims, "iss") || (claims as { iss: unknown }).iss !== rules.issuer)
  ) {
    throw new TokenRejectedError("ISSUER_MISMATCH", "unexpected issuer", { claim: "iss" });
  }
  checkAudience(Object.hasOwn(claims, "aud") ? (claims as { aud: unknown }).aud : undefined, rules.audience);
}

/** RFC 7519 §4.1.3: a token naming audiences must name ours; exact string equality only. */
function checkAudience(aud: unknown, expected: string | undefined): void {
  if (aud === undefined && expected === undefined) return;
  const ok =
    expected !== undefined &&
    (aud === expected || (Array.isArray(aud) && aud.length <= 32 && aud.some((member) => member === expected)));
  if (!ok) throw new TokenRejectedError("AUDIENCE_MISMATCH", "unexpected audience", { claim: "aud" });
}
