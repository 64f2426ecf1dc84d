/**
 * Verifies access and refresh tokens on every call: structure, cache, key, signature, then
 * claims. This file wires the parts together; each concept has its own module: the compact JWS
 * shape (`compact.ts`), the verified-token cache (`cache.ts`), the synchronous signature
 * pre-check (`precheck.ts`), key resolution by `kid` or remote JWKS (`key-resolver.ts`,
 * `jwks.ts`), and the claim checks (`claims.ts`).
 */
import { compactVerify } from "jose";
import type { CompactJWSHeaderParameters, FlattenedJWSInput } from "jose";
import { VerifiedTokenCache } from "./cache.js";
import { TOKEN_DEFAULTS } from "./defaults.js";
import { checkClaims, DEFAULT_USER_ID_CLAIM, refuseUnverified, userIdClaimName } from "./claims.js";
import type { ClaimRules, TokenType, VerifiedClaims } from "./claims.js";
import { hasCanonicalSegments, isCompactJws } from "./compact.js";
import { TokenRejectedError } from "./errors.js";
import { createRemoteKeySource } from "./jwks.js";
import type { RemoteJwksOptions, RemoteKeySource } from "./jwks.js";
import { createKeyResolver } from "./key-resolver.js";
import type { Keyring } from "./keys.js";
import { createForgeryCheck } from "./precheck.js";

/** Options of {@link createTokenVerifier}. At least one of `keyring` and `jwksUrl` is required. */
export interface TokenVerifierOptions {
  /** Local keys, looked up by the token's `kid`. */
  keyring?: Keyring;
  /** A remote issuer's JWKS (https, or http on loopback). Consulted for kids not in `keyring`. */
  jwksUrl?: string | URL | undefined;
  /**
   * How `jwksUrl` is fetched and cached, and its explicit algorithm list. Default: each field's
   * own default (re-fetch after 10 minutes, 30 s cool-down, 5 s timeout, RS256 and ES256, plain
   * HTTP only on loopback); see {@link RemoteJwksOptions}. Ignored without `jwksUrl`.
   */
  jwksOptions?: RemoteJwksOptions;
  /**
   * The claim naming the local user in tokens verified with a `jwksUrl` key,
   * when the external issuer calls it something else than `userIdClaim`
   * (its value must still be a local user id). Default: `userIdClaim`.
   */
  jwksUserIdClaim?: string | undefined;
  /** Required exact `iss`. Default: not checked. */
  issuer?: string | undefined;
  /**
   * Required audience (exact string, or one exact member of an `aud` array). Default: none, and
   * then a token that names an audience is refused (RFC 7519 §4.1.3).
   */
  audience?: string | undefined;
  /** Clock skew tolerated on `exp`, `nbf` and `iat`. Default 30 (`TOKEN_DEFAULTS.leewaySeconds`); must be within 0..60 (RangeError otherwise). */
  leewaySeconds?: number | undefined;
  /**
   * The access token lifetime the tokens are issued with, as `createTokenIssuer`'s option of
   * the same name (so one options object can configure both): the default access bound of
   * {@link maxLifetimeSeconds}. Default 300 (`TOKEN_DEFAULTS.accessTtlSeconds`).
   */
  accessTtlSeconds?: number | undefined;
  /** As {@link accessTtlSeconds}, for refresh tokens. Default 86400 (`TOKEN_DEFAULTS.refreshTtlSeconds`). */
  refreshTtlSeconds?: number | undefined;
  /**
   * Upper bound of `exp - iat`, one number for both types or one per type; a token above it is
   * refused with reason `TOKEN_LIFETIME_EXCEEDED` (the bound in the ErrorInfo metadata
   * `maxLifetimeSeconds`). Default with only a `keyring`: `{ access: accessTtlSeconds, refresh:
   * refreshTtlSeconds }`, the issuer's TTLs — 300 and 86400 unless those options say otherwise.
   * Default with `jwksUrl`: no bound (the external issuer decides). `Infinity` disables the check.
   */
  maxLifetimeSeconds?: number | { access: number; refresh: number } | undefined;
  /** Name of the user id claim. Default `"user_id"` (simplejwt's `USER_ID_CLAIM`). */
  userIdClaim?: string | undefined;
  /** Refuse tokens without `jti`. Default true (revocation is keyed by it). */
  requireJti?: boolean;
  /**
   * LRU of verified tokens (keyed by the token string; memory is about maxEntries × token size).
   * Default `{ maxEntries: 10_000 }`; `0` disables. Hits still honour `exp` and the expected type;
   * a key removed from the keyring or JWKS stops tokens only after they leave the cache (by `exp`),
   * and revocation by `jti` is the caller's job either way.
   */
  cache?: { maxEntries: number };
  /** Clock in milliseconds. Default `Date.now`. */
  now?: () => number;
}

/** Outcome of {@link TokenVerifier.verify}; `error` is for logs, never for clients. */
export type VerifyResult =
  | { ok: true; claims: VerifiedClaims }
  | {
      ok: false;
      reason: "TOKEN_INVALID" | "TOKEN_EXPIRED" | "TOKEN_WRONG_TYPE" | "TOKEN_MALFORMED" | "TOKEN_LIFETIME_EXCEEDED";
      error: unknown;
    }
  /** The remote JWKS could not be fetched: answer UNAVAILABLE (fail closed), not UNAUTHENTICATED. */
  | { ok: false; reason: "KEYS_UNAVAILABLE"; error: unknown };

/** Built by {@link createTokenVerifier}. */
export interface TokenVerifier {
  /** Verifies `token` as an `expected` token. Never throws; every refusal is a `VerifyResult`. */
  verify(token: string, expected: TokenType): Promise<VerifyResult>;
  /**
   * The answer {@link verify} would give, when it is known without
   * cryptography or I/O (a structurally malformed token, or a cached
   * verification); otherwise undefined. Lets the hot path stay synchronous.
   */
  peek(token: string, expected: TokenType): VerifyResult | undefined;
  /** Number of cached verifications (0 when the cache is disabled). */
  readonly cacheSize: number;
  /**
   * Tokens accepted from the cache since creation, without a signature check.
   * Optional so a wrapper of a verifier remains one; `createTokenVerifier`'s has it.
   */
  readonly cacheHits?: number;
  /**
   * Tokens accepted after a signature check since creation (a cache miss, or
   * the cache off): `cacheHits / (cacheHits + cacheMisses)` is the hit rate of
   * accepted tokens. Refusals count in neither. Optional, as `cacheHits`.
   */
  readonly cacheMisses?: number;
  /** The clock skew tolerated on `exp`, `nbf` and `iat`: open streams end at `exp` plus this. */
  readonly leewaySeconds: number;
  /**
   * The `iss` values it judges (its `issuer`), or `"any"` when it checks none although a
   * `jwksUrl` may bring tokens of another issuer: how `withTrustedIssuers` routes around it.
   */
  readonly localIssuers?: readonly string[] | "any";
  /**
   * The verifier's clock in milliseconds (its `now` option): the decision judges a token's
   * `auth_time` against the same instant its `exp` was judged by. Optional, as `cacheHits`.
   */
  readonly now?: () => number;
}

const MAX_LEEWAY_SECONDS = TOKEN_DEFAULTS.maxLeewaySeconds;
const NO_LIFETIME_BOUND = Object.freeze({ access: Infinity, refresh: Infinity });

// Shared by every verifier: garbage tokens should cost no allocation.
const MALFORMED: VerifyResult = Object.freeze({
  ok: false,
  reason: "TOKEN_MALFORMED",
  error: Object.freeze(new TokenRejectedError("TOKEN_STRUCTURE", "not a compact JWS of at most 8 KiB")),
});
// A respelled twin of a token (spare bits set in a segment's last character,
// or a dangling sixth-bit character): structurally malformed, like the above.
const NOT_CANONICAL: VerifyResult = Object.freeze({
  ok: false,
  reason: "TOKEN_MALFORMED",
  error: Object.freeze(new TokenRejectedError("NOT_CANONICAL", "a segment is not canonical unpadded base64url")),
});
/**
 * One shared refusal for forged signatures: the error says nothing about the
 * token, and capturing a stack per forgery would be most of its cost.
 */
const FORGED: VerifyResult = Object.freeze({
  ok: false,
  reason: "TOKEN_INVALID",
  error: new TokenRejectedError("SIGNATURE_INVALID", "the signature does not match the key"),
});
const utf8 = new TextDecoder("utf-8", { fatal: true });

interface CachedResult {
  readonly dropAfter: number;
  readonly result: { ok: true; claims: VerifiedClaims };
}

function resolveLifetime(options: TokenVerifierOptions, localOnly: boolean): Readonly<Record<TokenType, number>> {
  const option = options.maxLifetimeSeconds;
  if (option === undefined && !localOnly) return NO_LIFETIME_BOUND;
  if (option === undefined) {
    return resolveLifetime(
      {
        maxLifetimeSeconds: {
          access: options.accessTtlSeconds ?? TOKEN_DEFAULTS.accessTtlSeconds,
          refresh: options.refreshTtlSeconds ?? TOKEN_DEFAULTS.refreshTtlSeconds,
        },
      },
      true,
    );
  }
  const pair = typeof option === "number" ? { access: option, refresh: option } : option;
  for (const value of [pair.access, pair.refresh]) {
    if (typeof value !== "number" || Number.isNaN(value) || value <= 0) {
      throw new RangeError("maxLifetimeSeconds must be positive (Infinity for no bound)");
    }
  }
  return Object.freeze({ access: pair.access, refresh: pair.refresh });
}

/** The claim rules for local keys, and those for `jwksUrl` keys (the same object when they agree). */
function resolveClaimRules(
  options: TokenVerifierOptions,
  localOnly: boolean,
): { local: ClaimRules; remote: ClaimRules } {
  const leewaySeconds = options.leewaySeconds ?? TOKEN_DEFAULTS.leewaySeconds;
  if (typeof leewaySeconds !== "number" || !(leewaySeconds >= 0 && leewaySeconds <= MAX_LEEWAY_SECONDS)) {
    throw new RangeError(`leewaySeconds must be within 0..${MAX_LEEWAY_SECONDS}`);
  }
  const userIdClaim = userIdClaimName(options.userIdClaim, DEFAULT_USER_ID_CLAIM, "userIdClaim");
  const local: ClaimRules = Object.freeze({
    issuer: options.issuer,
    audience: options.audience,
    leewaySeconds,
    maxLifetime: resolveLifetime(options, localOnly),
    userIdClaim,
    requireJti: options.requireJti ?? true,
  });
  const jwksUserIdClaim = userIdClaimName(options.jwksUserIdClaim, userIdClaim, "jwksUserIdClaim");
  return {
    local,
    remote: jwksUserIdClaim === userIdClaim ? local : Object.freeze({ ...local, userIdClaim: jwksUserIdClaim }),
  };
}

function failure(error: unknown): VerifyResult {
  if (error instanceof TokenRejectedError) {
    switch (error.code) {
      case "EXPIRED":
        return { ok: false, reason: "TOKEN_EXPIRED", error };
      case "WRONG_TYPE":
        return { ok: false, reason: "TOKEN_WRONG_TYPE", error };
      case "LIFETIME_EXCEEDED":
        return { ok: false, reason: "TOKEN_LIFETIME_EXCEEDED", error };
      case "KEYS_UNAVAILABLE":
        return { ok: false, reason: "KEYS_UNAVAILABLE", error };
      case "TOKEN_STRUCTURE":
      case "NOT_CANONICAL":
        return { ok: false, reason: "TOKEN_MALFORMED", error };
      default:
        break;
    }
  }
  // jose's errors (bad signature, alg not allowed, unknown crit, ...) and anything unforeseen.
  return { ok: false, reason: "TOKEN_INVALID", error };
}

/**
 * Creates the per-call token verifier. Everything configurable is resolved here, once; `verify`
 * does a shape check, a cache lookup, a synchronous pre-check that refuses forged signatures for
 * local keys, a kid lookup, one jose signature check, then the claim checks.
 *
 * Structure: three segments of canonical unpadded base64url, at most 8 KiB. A segment whose
 * last character has spare bits set, or whose length is 1 modulo 4, is a respelled twin of
 * another token (lenient decoders read the same bytes) and is refused as `TOKEN_MALFORMED`
 * (rejection code `NOT_CANONICAL`) before any decoding, cache lookup or signature check, so
 * every token has exactly one accepted spelling.
 *
 * Rules: the algorithm allow-list comes from the configured keys (each bound to one alg, looked up
 * by `kid`; a token without `kid` is accepted only when exactly one local key exists and no JWKS
 * is configured, which is how simplejwt tokens arrive); `none`, unknown `crit`, `b64` and keys
 * embedded in headers (`jwk`, `jku`, `x5u`, `x5c`) never work; without a JWKS, a header no local
 * key accepts (unknown `kid`, wrong alg) is refused from the header alone. The signature is
 * checked before any claim is trusted: for HS256 before the payload is even decoded; for
 * RS256/ES256 keys (and before a JWKS fetch) the unverified `exp`, `iss` and `aud` may refuse the
 * token first, which saves the public-key operation and can never accept a token. Claims: `exp` and `iat` required, finite numbers; `nbf` honoured; `iat`
 * not in the future; `exp - iat` bounded; `exp`, `nbf` and `iat` compared with the current time
 * in milliseconds (the issuer writes a fractional `iat`), so a fresh token verifies at leeway 0;
 * `iss`/`aud` exact; `token_type` must be `expected`; the user id is a positive 32-bit integer
 * (number or decimal string).
 *
 * @example
 * ```ts
 * const verifier = createTokenVerifier({ keyring, issuer: "https://auth.example.com" });
 * const result = await verifier.verify(bearer, "access");
 * if (!result.ok) return deny(result.reason); // KEYS_UNAVAILABLE → UNAVAILABLE, others → UNAUTHENTICATED
 * result.claims.userId;
 * ```
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const { keyring } = options;
  const remote: RemoteKeySource | undefined =
    options.jwksUrl === undefined ? undefined : createRemoteKeySource(options.jwksUrl, options.jwksOptions);
  if (!keyring && !remote) throw new TypeError("createTokenVerifier needs a keyring or a jwksUrl");
  const { local: rules, remote: remoteRules } = resolveClaimRules(options, remote === undefined);
  const { leewaySeconds } = rules;
  const now = options.now ?? Date.now;
  const maxEntries = options.cache?.maxEntries ?? 10_000;
  const cache = maxEntries > 0 ? new VerifiedTokenCache<CachedResult>(maxEntries) : undefined;
  let cacheHits = 0;
  let cacheMisses = 0;

  const keys = createKeyResolver(keyring, remote, (payload) => refuseUnverified(payload, rules, now() / 1000));
  // For RS256/ES256 local keys, the cheap refusals (expired, wrong issuer or audience) come
  // before the signature check: read from the unverified payload, they can only refuse.
  const beforeAsymmetric = (encodedPayload: string): TokenRejectedError | undefined => {
    try {
      refuseUnverified(encodedPayload, rules, now() / 1000);
      return undefined;
    } catch (error) {
      return error instanceof TokenRejectedError ? error : undefined;
    }
  };
  const precheck = createForgeryCheck(keys.localKeys, keys.onlyLocalKey, remote === undefined, beforeAsymmetric);
  // jose refuses every alg not listed here before any key is resolved, `none` included.
  const verifyOptions = Object.freeze({ algorithms: [...keys.algorithms] });
  const { resolveKey } = keys;

  /** {@link peek}'s answer, or `valid` when the pre-check proved the signature with a local key. */
  function inspect(token: string, expected: TokenType): VerifyResult | "valid" | undefined {
    if (!isCompactJws(token)) return MALFORMED;
    // Every path (the auth layer's peek, verify, the refresh and logout
    // calls) passes here before any decoding, cache lookup or signature
    // check: one accepted spelling per token, so nothing keyed by the string
    // can be given a twin.
    if (!hasCanonicalSegments(token)) return NOT_CANONICAL;
    if (expected !== "access" && expected !== "refresh") {
      return {
        ok: false,
        reason: "TOKEN_INVALID",
        error: new TypeError(`unknown expected token type ${String(expected)}`),
      };
    }
    const hit = cache?.get(token, now() / 1000);
    if (hit) {
      if (hit.result.claims.tokenType === expected) {
        cacheHits++;
        return hit.result;
      }
      return failure(new TokenRejectedError("WRONG_TYPE", `expected a ${expected} token`, { claim: "token_type" }));
    }
    const signature = precheck(token);
    if (signature === "forged") return FORGED;
    if (signature === "valid" || signature === undefined) return signature;
    // Refused by the header alone (shared, frozen), or by an asymmetric token's unverified claims.
    return failure("refused" in signature ? signature.refused : signature);
  }

  function peek(token: string, expected: TokenType): VerifyResult | undefined {
    const known = inspect(token, expected);
    return known === "valid" ? undefined : known;
  }

  async function verify(token: string, expected: TokenType): Promise<VerifyResult> {
    const known = inspect(token, expected);
    if (known !== undefined && known !== "valid") return known;
    try {
      // Local keys resolve synchronously; only a remote JWKS key comes as a
      // promise, which is how the claim rules of the key's issuer are chosen.
      let fromRemote = false;
      const payload =
        known === "valid"
          ? // node:crypto has just checked this signature with the local key
            // the header names, under the key's own alg, with no crit or b64:
            // jose would check the same again through WebCrypto.
            Buffer.from(token.slice(token.indexOf(".") + 1, token.lastIndexOf(".")), "base64url")
          : (
              await compactVerify(
                token,
                remoteRules === rules
                  ? resolveKey
                  : (header: CompactJWSHeaderParameters, input: FlattenedJWSInput) => {
                      const key = resolveKey(header, input);
                      fromRemote = key instanceof Promise;
                      return key;
                    },
                verifyOptions,
              )
            ).payload;
      // Read the clock after verification: a JWKS fetch may have taken a while.
      // Milliseconds kept (a fractional second): the issuer writes `iat` with
      // milliseconds, and a whole-second "now" would put a fresh token's iat
      // in the future, refused at leeway 0 until the next second. Integer
      // claims from other issuers compare the same either way.
      const nowSeconds = now() / 1000;
      const claims = checkClaims(
        JSON.parse(utf8.decode(payload)),
        expected,
        fromRemote ? remoteRules : rules,
        nowSeconds,
      );
      const result = Object.freeze({ ok: true as const, claims });
      cacheMisses++;
      cache?.set(token, { dropAfter: claims.expiresAt + leewaySeconds, result }, nowSeconds);
      return result;
    } catch (error) {
      return failure(error);
    }
  }

  return Object.freeze({
    verify,
    peek,
    leewaySeconds,
    now,
    localIssuers:
      options.issuer !== undefined
        ? Object.freeze([options.issuer])
        : remote !== undefined
          ? ("any" as const)
          : Object.freeze([]),
    get cacheSize() {
      return cache?.size ?? 0;
    },
    get cacheHits() {
      return cacheHits;
    },
    get cacheMisses() {
      return cacheMisses;
    },
  });
}
