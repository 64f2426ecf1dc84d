/** Signs access and refresh tokens shaped like djangorestframework-simplejwt's. */
import { randomBytes } from "node:crypto";
import { SignJWT } from "jose";
import { isUserId, MAX_USER_ID } from "../user-id.js";
import { DEFAULT_USER_ID_CLAIM, RESERVED_CLAIMS, userIdClaimName } from "./claims.js";
import type { TokenType } from "./claims.js";
import { TOKEN_DEFAULTS } from "./defaults.js";
import { KeyConfigError } from "./errors.js";
import type { Keyring } from "./keys.js";

/** Options of {@link createTokenIssuer}. */
export interface TokenIssuerOptions {
  /** Signs with `keyring.signingKey` (the first key that can sign). */
  keyring: Keyring;
  /** Access token lifetime. Default `TOKEN_DEFAULTS.accessTtlSeconds`, 300 (simplejwt's `ACCESS_TOKEN_LIFETIME`, 5 minutes). */
  accessTtlSeconds?: number | undefined;
  /** Refresh token lifetime. Default `TOKEN_DEFAULTS.refreshTtlSeconds`, 86400 (simplejwt's `REFRESH_TOKEN_LIFETIME`, 1 day). */
  refreshTtlSeconds?: number | undefined;
  /** `iss` claim; omitted by default (simplejwt omits it unless `ISSUER` is set). */
  issuer?: string | undefined;
  /** `aud` claim; omitted by default. */
  audience?: string | undefined;
  /** Name of the user id claim. Default `"user_id"`. */
  userIdClaim?: string | undefined;
  /** Clock in milliseconds. Default `Date.now`; tests pass a frozen one. */
  now?: () => number;
}

/** A freshly signed token and the claims a caller needs to store (e.g. the refresh `jti`). */
export interface IssuedToken {
  readonly token: string;
  /** 128-bit random id, hex. */
  readonly jti: string;
  /** Seconds since the Unix epoch. */
  readonly issuedAt: number;
  /** Seconds since the Unix epoch. */
  readonly expiresAt: number;
  readonly tokenType: TokenType;
}

/** Built by {@link createTokenIssuer}. */
export interface TokenIssuer {
  /**
   * Signs an access token for `userId` (1..2147483647); `extra` claims may not replace reserved ones.
   * `ttlSeconds` shortens its lifetime (service tokens); it may not exceed {@link accessTtlSeconds},
   * which verifiers take as the longest an access token may live.
   */
  issueAccess(userId: number, extra?: Record<string, unknown>, ttlSeconds?: number): Promise<IssuedToken>;
  /** Signs a refresh token for `userId`; same rules as {@link issueAccess}. */
  issueRefresh(userId: number, extra?: Record<string, unknown>): Promise<IssuedToken>;
  readonly accessTtlSeconds: number;
  readonly refreshTtlSeconds: number;
}

function positiveSeconds(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer`);
  return value;
}

/**
 * Creates an issuer of simplejwt-compatible tokens: header `{ alg, kid, typ: "JWT" }`, claims
 * `token_type`, `exp`, `iat`, `jti`, `user_id` (+ `iss`/`aud` when configured).
 *
 * @throws {KeyConfigError} `NO_SIGNING_KEY` when the keyring can only verify.
 * @example
 * ```ts
 * const issuer = createTokenIssuer({ keyring, accessTtlSeconds: 300 });
 * const { token, jti, expiresAt } = await issuer.issueAccess(42);
 * ```
 */
export function createTokenIssuer(options: TokenIssuerOptions): TokenIssuer {
  const signing = options.keyring.signingKey;
  if (!signing) throw new KeyConfigError("NO_SIGNING_KEY", "the keyring has no private key or secret to sign with");
  const accessTtlSeconds = positiveSeconds(
    options.accessTtlSeconds,
    TOKEN_DEFAULTS.accessTtlSeconds,
    "accessTtlSeconds",
  );
  const refreshTtlSeconds = positiveSeconds(
    options.refreshTtlSeconds,
    TOKEN_DEFAULTS.refreshTtlSeconds,
    "refreshTtlSeconds",
  );
  const userIdClaim = userIdClaimName(options.userIdClaim, DEFAULT_USER_ID_CLAIM, "userIdClaim");
  const { issuer, audience } = options;
  const now = options.now ?? Date.now;
  const signingKey = signing.key;
  const header = Object.freeze({ alg: signing.alg, kid: signing.kid, typ: "JWT" });

  async function issue(tokenType: TokenType, ttl: number, userId: number, extra?: Record<string, unknown>) {
    if (!isUserId(userId)) {
      throw new RangeError(`userId must be an integer in 1..${MAX_USER_ID}`);
    }
    const payload: Record<string, unknown> = {};
    if (extra) {
      for (const name of Object.keys(extra)) {
        if (RESERVED_CLAIMS.has(name) || name === userIdClaim || name === "__proto__") {
          throw new RangeError(`extra claim "${name}" would replace a claim the issuer sets`);
        }
      }
    }
    // `iat` keeps milliseconds (RFC 7519 NumericDate may be fractional) so a
    // token issued just after a password change is told apart from one
    // issued just before it, in the same second. `exp` stays whole.
    const nowMs = Math.floor(now());
    const issuedAt = nowMs / 1000;
    const expiresAt = Math.floor(nowMs / 1000) + ttl;
    const jti = randomBytes(16).toString("hex");
    // simplejwt's claim order, so tokens from either side look alike when decoded.
    payload.token_type = tokenType;
    payload.exp = expiresAt;
    payload.iat = issuedAt;
    payload.jti = jti;
    payload[userIdClaim] = userId;
    if (issuer !== undefined) payload.iss = issuer;
    if (audience !== undefined) payload.aud = audience;
    if (extra) Object.assign(payload, extra);
    const token = await new SignJWT(payload).setProtectedHeader(header).sign(signingKey);
    return Object.freeze({ token, jti, issuedAt, expiresAt, tokenType });
  }

  return Object.freeze({
    issueAccess: (userId: number, extra?: Record<string, unknown>, ttlSeconds?: number) => {
      if (
        ttlSeconds !== undefined &&
        (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0 || ttlSeconds > accessTtlSeconds)
      ) {
        return Promise.reject(new RangeError(`ttlSeconds must be an integer in 1..${accessTtlSeconds}`));
      }
      return issue("access", ttlSeconds ?? accessTtlSeconds, userId, extra);
    },
    issueRefresh: (userId: number, extra?: Record<string, unknown>) =>
      issue("refresh", refreshTtlSeconds, userId, extra),
    accessTtlSeconds,
    refreshTtlSeconds,
  });
}
