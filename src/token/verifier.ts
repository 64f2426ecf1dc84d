import { createHmac, KeyObject, timingSafeEqual, verify as cryptoVerify } from "node:crypto";
/** Verifies access and refresh tokens on every call: structure, key, signature, then claims. */
import { compactVerify } from "jose";
import type { CompactJWSHeaderParameters, FlattenedJWSInput, JWSAlgorithm } from "jose";
import { LruMap } from "../util/lru.js";
import { hasCanonicalEnding } from "./base64url.js";
import { VerifiedTokenCache } from "./cache.js";
import { checkClaims, DEFAULT_USER_ID_CLAIM, RESERVED_CLAIMS } from "./claims.js";
import type { ClaimRules, TokenType, VerifiedClaims } from "./claims.js";
import { TokenRejectedError } from "./errors.js";
import { createRemoteKeySource } from "./jwks.js";
import type { RemoteJwksOptions, RemoteKeySource } from "./jwks.js";
import type { Keyring, TokenAlgorithm, VerificationKey } from "./keys.js";

/** Options of {@link createTokenVerifier}. At least one of `keyring` and `jwksUrl` is required. */
export interface TokenVerifierOptions {
  /** Local keys, looked up by the token's `kid`. */
  keyring?: Keyring;
  /** A remote issuer's JWKS (https, or http on loopback). Consulted for kids not in `keyring`. */
  jwksUrl?: string | URL;
  /** Fetching and caching of `jwksUrl`, and its explicit algorithm list (default RS256, ES256). */
  /**
   * The claim naming the local user in tokens verified with a `jwksUrl` key,
   * when the external issuer calls it something else than `userIdClaim`
   * (its value must still be a local user id). Default: `userIdClaim`.
   */
  jwksUserIdClaim?: string;
  jwksOptions?: RemoteJwksOptions;
  /** Required exact `iss`. Default: not checked. */
  issuer?: string;
  /**
   * Required audience (exact string, or one exact member of an `aud` array). Default: none, and
   * then a token that names an audience is refused (RFC 7519 §4.1.3).
   */
  audience?: string;
  /** Clock skew tolerated on `exp`, `nbf` and `iat`. Default 30; must be within 0..60 (RangeError otherwise). */
  leewaySeconds?: number;
  /**
   * Upper bound of `exp - iat`, one number for both types or one per type. Default with only a
   * `keyring`: `{ access: 300, refresh: 86400 }`, the issuer's default TTLs — pass the issuer's
   * real TTLs (`issuer.accessTtlSeconds`, `issuer.refreshTtlSeconds`) when they differ. Default
   * with `jwksUrl`: no bound (the external issuer decides). `Infinity` disables the check.
   */
  maxLifetimeSeconds?: number | { access: number; refresh: number };
  /** Name of the user id claim. Default `"user_id"` (simplejwt's `USER_ID_CLAIM`). */
  userIdClaim?: string;
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
  | { ok: false; reason: "TOKEN_INVALID" | "TOKEN_EXPIRED" | "TOKEN_WRONG_TYPE" | "TOKEN_MALFORMED"; error: unknown }
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
  /** The clock skew tolerated on `exp`, `nbf` and `iat`: open streams end at `exp` plus this. */
  readonly leewaySeconds: number;
}

/** gRPC's suggested header size limit; a token is never close to it. */
const MAX_TOKEN_LENGTH = 8192;
/** Three base64url segments; the classes exclude `.`, so this runs in linear time. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const MAX_LEEWAY_SECONDS = 60;
const DEFAULT_LOCAL_LIFETIME = Object.freeze({ access: 300, refresh: 86_400 });
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
const utf8 = new TextDecoder("utf-8", { fatal: true });

interface CachedResult {
  readonly dropAfter: number;
  readonly result: { ok: true; claims: VerifiedClaims };
}

function resolveLifetime(
  option: TokenVerifierOptions["maxLifetimeSeconds"],
  localOnly: boolean,
): Readonly<Record<TokenType, number>> {
  if (option === undefined) return localOnly ? DEFAULT_LOCAL_LIFETIME : NO_LIFETIME_BOUND;
  const pair = typeof option === "number" ? { access: option, refresh: option } : option;
  for (const value of [pair.access, pair.refresh]) {
    if (typeof value !== "number" || Number.isNaN(value) || value <= 0) {
      throw new RangeError("maxLifetimeSeconds must be positive (Infinity for no bound)");
    }
  }
  return Object.freeze({ access: pair.access, refresh: pair.refresh });
}

/**
 * One shared refusal for forged signatures: the error says nothing about the
 * token, and capturing a stack per forgery would be most of its cost.
 */
const FORGED: VerifyResult = Object.freeze({
  ok: false,
  reason: "TOKEN_INVALID",
  error: new TokenRejectedError("SIGNATURE_INVALID", "the signature does not match the key"),
});

function failure(error: unknown): VerifyResult {
  if (error instanceof TokenRejectedError) {
    switch (error.code) {
      case "EXPIRED":
        return { ok: false, reason: "TOKEN_EXPIRED", error };
      case "WRONG_TYPE":
        return { ok: false, reason: "TOKEN_WRONG_TYPE", error };
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
 * does a regex pre-check, a kid lookup, one jose signature check, then the claim checks.
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
 * embedded in headers (`jwk`, `jku`, `x5u`, `x5c`) never work; the signature is checked before
 * any claim is read. Claims: `exp` and `iat` required, finite numbers; `nbf` honoured; `iat`
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

  const leewaySeconds = options.leewaySeconds ?? 30;
  if (typeof leewaySeconds !== "number" || !(leewaySeconds >= 0 && leewaySeconds <= MAX_LEEWAY_SECONDS)) {
    throw new RangeError(`leewaySeconds must be within 0..${MAX_LEEWAY_SECONDS}`);
  }
  const userIdClaim = options.userIdClaim ?? DEFAULT_USER_ID_CLAIM;
  if (typeof userIdClaim !== "string" || userIdClaim.length === 0 || RESERVED_CLAIMS.has(userIdClaim)) {
    throw new RangeError("userIdClaim must be a non-empty string other than a registered claim");
  }
  const rules: ClaimRules = Object.freeze({
    issuer: options.issuer,
    audience: options.audience,
    leewaySeconds,
    maxLifetime: resolveLifetime(options.maxLifetimeSeconds, remote === undefined),
    userIdClaim,
    requireJti: options.requireJti ?? true,
  });
  const jwksUserIdClaim = options.jwksUserIdClaim ?? userIdClaim;
  if (typeof jwksUserIdClaim !== "string" || jwksUserIdClaim.length === 0 || RESERVED_CLAIMS.has(jwksUserIdClaim)) {
    throw new RangeError("jwksUserIdClaim must be a non-empty string other than a registered claim");
  }
  const remoteRules: ClaimRules =
    jwksUserIdClaim === userIdClaim ? rules : Object.freeze({ ...rules, userIdClaim: jwksUserIdClaim });
  const now = options.now ?? Date.now;
  const maxEntries = options.cache?.maxEntries ?? 10_000;
  const cache = maxEntries > 0 ? new VerifiedTokenCache<CachedResult>(maxEntries) : undefined;

  const localKeys: ReadonlyMap<string, VerificationKey> = keyring?.keys ?? new Map();
  const onlyLocalKey = !remote && localKeys.size === 1 ? localKeys.values().next().value : undefined;
  const algorithms = [...new Set<string>([...(keyring?.algorithms ?? []), ...(remote?.algorithms ?? [])])];
  // jose refuses every alg not listed here before any key is resolved, `none` included.
  const verifyOptions = Object.freeze({ algorithms: algorithms as JWSAlgorithm[] });

  async function resolveRemote(source: RemoteKeySource, header: CompactJWSHeaderParameters, token: FlattenedJWSInput) {
    // Cheap checks first (no JWKS I/O for expired or foreign tokens). The claims are unverified
    // here, so they may only refuse, never accept; a forged "expired" token gains nothing.
    if (source.mayFetch) precheckUnverified(token.payload);
    return source.resolve(header, token);
  }

  function precheckUnverified(encodedPayload: FlattenedJWSInput["payload"]): void {
    let claims: unknown;
    try {
      claims = JSON.parse(Buffer.from(encodedPayload as string, "base64url").toString("utf8"));
    } catch (cause) {
      throw new TokenRejectedError("CLAIMS_NOT_OBJECT", "the payload is not JSON", { cause });
    }
    if (typeof claims !== "object" || claims === null) {
      throw new TokenRejectedError("CLAIMS_NOT_OBJECT", "the payload is not a JSON object");
    }
    const exp = Object.hasOwn(claims, "exp") ? (claims as { exp: unknown }).exp : undefined;
    if (typeof exp === "number" && now() / 1000 >= exp + leewaySeconds) {
      throw new TokenRejectedError("EXPIRED", "token expired", { claim: "exp" });
    }
    if (rules.issuer !== undefined && (!Object.hasOwn(claims, "iss") || (claims as { iss: unknown }).iss !== rules.issuer)) {
      throw new TokenRejectedError("ISSUER_MISMATCH", "unexpected issuer", { claim: "iss" });
    }
  }

  // Created once: jose hands it the header it already parsed, so the header is decoded once.
  function resolveKey(header: CompactJWSHeaderParameters, token: FlattenedJWSInput): CryptoKey | Promise<CryptoKey> {
    // b64 only matters with crit (jose refuses unknown crit itself); a JWT has no use for it at all.
    if (Object.hasOwn(header, "b64")) throw new TokenRejectedError("HEADER_INVALID", "the b64 header is not accepted");
    const alg = header.alg;
    const kid = Object.hasOwn(header, "kid") ? header.kid : undefined;
    let key: VerificationKey | undefined;
    if (kid !== undefined) {
      if (typeof kid !== "string") throw new TokenRejectedError("HEADER_INVALID", "kid must be a string");
      key = localKeys.get(kid);
      if (key === undefined) {
        if (remote?.algorithms.has(alg)) return resolveRemote(remote, header, token);
        throw new TokenRejectedError("KID_UNKNOWN", "no configured key has this kid");
      }
    } else if (onlyLocalKey !== undefined) {
      key = onlyLocalKey;
    } else if (remote && localKeys.size === 0) {
      return resolveRemote(remote, header, token);
    } else {
      throw new TokenRejectedError("KID_REQUIRED", "a kid is required when several keys are configured");
    }
    // The key's own algorithm, not the header's, decides: this is what defeats alg confusion.
    if (key.alg !== alg) throw new TokenRejectedError("ALG_MISMATCH", "the token's alg is not the key's alg");
    return key.key;
  }

  // node:crypto checks a signature synchronously and several times faster
  // than WebCrypto's promise; used only to refuse forged tokens early, so a
  // flood of them costs no promise. jose still makes every acceptance.
  const syncChecks = new Map<string, SignatureCheck>();
  for (const [kid, key] of localKeys) syncChecks.set(kid, signatureCheck(key));
  const onlySyncCheck = onlyLocalKey === undefined ? undefined : syncChecks.get(onlyLocalKey.kid);

  /** A refusal when the token's signature is provably wrong for the local key it names; else undefined. */
  // Tokens of one issuer share their header segment, so the check it selects
  // is remembered per segment (bounded) instead of decoding JSON per call.
  const checkByHeader = new LruMap<string, SignatureCheck | null>(256);
  function checkFor(encodedHeader: string): SignatureCheck | undefined {
    const known = checkByHeader.get(encodedHeader);
    if (known !== undefined) return known ?? undefined;
    let check: SignatureCheck | undefined;
    try {
      const header: unknown = JSON.parse(Buffer.from(encodedHeader, "base64url").toString("utf8"));
      if (typeof header === "object" && header !== null) {
        const { alg, kid } = header as { alg?: unknown; kid?: unknown };
        check = Object.hasOwn(header, "kid") ? (typeof kid === "string" ? syncChecks.get(kid) : undefined) : onlySyncCheck;
        // Not ours to judge early: jose (and resolveKey) decide those.
        if (check?.alg !== alg || Object.hasOwn(header, "crit") || Object.hasOwn(header, "b64")) check = undefined;
      }
    } catch {
      check = undefined; // jose reports it
    }
    checkByHeader.set(encodedHeader, check ?? null);
    return check;
  }

  function forgedSignature(token: string): VerifyResult | undefined {
    const lastDot = token.lastIndexOf(".");
    const check = checkFor(token.slice(0, token.indexOf(".")));
    if (check === undefined) return undefined;
    if (check.verify(token.slice(0, lastDot), Buffer.from(token.slice(lastDot + 1), "base64url"))) return undefined;
    return FORGED;
  }

  function peek(token: string, expected: TokenType): VerifyResult | undefined {
    if (typeof token !== "string" || token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) return MALFORMED;
    // Every path (the auth layer's peek, verify, the refresh and logout
    // calls) passes here before any decoding, cache lookup or signature
    // check: one accepted spelling per token, so nothing keyed by the string
    // can be given a twin.
    if (!canonicalSegments(token)) return NOT_CANONICAL;
    if (expected !== "access" && expected !== "refresh") {
      return { ok: false, reason: "TOKEN_INVALID", error: new TypeError(`unknown expected token type ${String(expected)}`) };
    }
    if (cache) {
      const hit = cache.get(token, now() / 1000);
      if (hit) {
        if (hit.result.claims.tokenType === expected) return hit.result;
        return failure(new TokenRejectedError("WRONG_TYPE", `expected a ${expected} token`, { claim: "token_type" }));
      }
    }
    return forgedSignature(token);
  }

  async function verify(token: string, expected: TokenType): Promise<VerifyResult> {
    const known = peek(token, expected);
    if (known !== undefined) return known;
    try {
      // Local keys resolve synchronously; only a remote JWKS key comes as a
      // promise, which is how the claim rules of the key's issuer are chosen.
      let fromRemote = false;
      const { payload } = await compactVerify(
        token,
        remoteRules === rules
          ? resolveKey
          : (header: CompactJWSHeaderParameters, input: FlattenedJWSInput) => {
              const key = resolveKey(header, input);
              fromRemote = key instanceof Promise;
              return key;
            },
        verifyOptions,
      );
      // Read the clock after verification: a JWKS fetch may have taken a while.
      // Milliseconds kept (a fractional second): the issuer writes `iat` with
      // milliseconds, and a whole-second "now" would put a fresh token's iat
      // in the future, refused at leeway 0 until the next second. Integer
      // claims from other issuers compare the same either way.
      const nowSeconds = now() / 1000;
      const claims = checkClaims(JSON.parse(utf8.decode(payload)), expected, fromRemote ? remoteRules : rules, nowSeconds);
      const result = Object.freeze({ ok: true as const, claims });
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
    get cacheSize() {
      return cache?.size ?? 0;
    },
  });
}

/** Each segment of a string that matched COMPACT_JWS has a canonical ending (O(1)). */
function canonicalSegments(token: string): boolean {
  const first = token.indexOf(".");
  const second = token.indexOf(".", first + 1);
  return (
    hasCanonicalEnding(token, 0, first) &&
    hasCanonicalEnding(token, first + 1, second) &&
    hasCanonicalEnding(token, second + 1, token.length)
  );
}

interface SignatureCheck {
  readonly alg: TokenAlgorithm;
  verify(signingInput: string, signature: Buffer): boolean;
}

function signatureCheck(key: VerificationKey): SignatureCheck {
  const keyObject = KeyObject.from(key.key);
  switch (key.alg) {
    case "HS256":
      return {
        alg: key.alg,
        verify(input, signature) {
          const expected = createHmac("sha256", keyObject).update(input).digest();
          return signature.length === expected.length && timingSafeEqual(signature, expected);
        },
      };
    case "RS256":
      return { alg: key.alg, verify: (input, signature) => cryptoVerify("sha256", Buffer.from(input), keyObject, signature) };
    case "ES256":
      return {
        alg: key.alg,
        verify: (input, signature) =>
          // JWS carries r||s (64 bytes), not DER.
          signature.length === 64 &&
          cryptoVerify("sha256", Buffer.from(input), { key: keyObject, dsaEncoding: "ieee-p1363" }, signature),
      };
  }
}
