/**
 * Verifying access tokens of trusted external issuers, and routing every access token to its
 * verifier by its (still unverified) `iss` before any key is tried: a trusted issuer's tokens
 * are checked only against that issuer's JWKS, protoguard's own only against its keyring, and a
 * token naming any other issuer is refused without I/O. So a token claiming a trusted issuer
 * but signed with protoguard's keys (or the other way round) finds no key and is refused.
 */
import { readAuthContext } from "../token/auth-context.js";
import { createHash } from "node:crypto";
import { compactVerify, type CompactJWSHeaderParameters, type FlattenedJWSInput } from "jose";
import type { AccessTokenResult } from "../claims.js";
import { VerifiedTokenCache } from "../token/cache.js";
import { LruMap } from "../util/lru.js";
import { hasCanonicalSegments, isCompactJws } from "../token/compact.js";
import { TokenRejectedError } from "../token/errors.js";
import { createRemoteKeySource, type RemoteKeySource } from "../token/jwks.js";
import { readClaim } from "./claim-path.js";
import type { ExternalAccessClaims, ExternalSubject } from "../claims.js";
import { isGroupName, resolveTrustedIssuers, type TrustedIssuer, type TrustedIssuerInit } from "./trusted-issuers.js";

/** What {@link withTrustedIssuers} wraps: the access side of a verifier. */
export interface AccessVerifier {
  verify(token: string, expected: "access"): Promise<AccessTokenResult>;
  peek?(token: string, expected: "access"): AccessTokenResult | undefined;
  readonly leewaySeconds?: number;
  /**
   * The `iss` values this verifier judges itself (tokens without `iss` always go to it), or
   * `"any"` when it checks none. `createTokenVerifier`'s verifiers say; default `[]`.
   */
  readonly localIssuers?: readonly string[] | "any";
  /** Issuers it trusts already (a verifier wrapped before): their tokens keep going to it. */
  readonly trustedIssuers?: readonly string[];
}

/** What {@link withTrustedIssuers} adds to the verifier it wraps. */
export interface TrustedIssuerRouting {
  /** The `iss` of every trusted issuer (and of those a verifier wrapped before trusts). */
  readonly trustedIssuers: readonly string[];
  /** What the wrapped verifier judges itself, passed on for a further wrap. */
  readonly localIssuers: readonly string[] | "any";
  /**
   * Tokens remembered as protoguard's own, to route them without decoding again: only tokens
   * that verified, never one an unauthenticated caller merely sent (at most `cacheEntries`).
   */
  readonly routeCacheSize: number;
}

/** Options of {@link withTrustedIssuers}. */
export interface TrustedIssuerOptions {
  /** Verified external tokens kept (by token string). Default 10000; 0 disables. */
  cacheEntries?: number;
  /** Clock in milliseconds. Default `Date.now`. */
  now?: () => number;
}

/** Longest subject accepted (the `external_identities.subject` column). */
const MAX_SUBJECT_LENGTH = 255;
/** Most groups one token may map onto: more is a misconfiguration, not a caller. */
const MAX_GROUPS = 256;
const MAX_JTI_LENGTH = 64;
const utf8 = new TextDecoder("utf-8", { fatal: true });

type Route = { kind: "local" } | { kind: "unknown" } | { kind: "trusted"; issuer: IssuerState };

interface IssuerState {
  readonly config: TrustedIssuer;
  readonly keys: RemoteKeySource;
  readonly algorithms: ReadonlySet<string>;
  readonly verifyOptions: { algorithms: string[] };
}

const LOCAL: Route = Object.freeze({ kind: "local" });
const UNKNOWN: Route = Object.freeze({ kind: "unknown" });
const UNKNOWN_ISSUER: AccessTokenResult = Object.freeze({
  ok: false,
  reason: "UNKNOWN_ISSUER",
  error: Object.freeze(new TokenRejectedError("ISSUER_MISMATCH", "the token's iss is not a trusted issuer")),
});

/**
 * Wraps the access-token side of `local` so tokens of the `issuers` are verified against their
 * own JWKS and answered as {@link ExternalAccessClaims}; everything else goes to `local`
 * unchanged. Each issuer's JWKS is cached, re-fetched on an unknown `kid` (after a cool-down),
 * and a fetch failure answers `KEYS_UNAVAILABLE` (UNAVAILABLE, never a pass).
 *
 * Checks on an external token: compact JWS shape; `iss` routes it (unknown → `UNKNOWN_ISSUER`);
 * `exp` (read unverified) already past → `TOKEN_EXPIRED` without fetching keys; the signature
 * with the issuer's allowed algorithms and a JWKS key (never a key from the header); then `iss`
 * again, `aud` (one configured audience, exactly), `exp` and `iat` required finite numbers,
 * `nbf`, `iat` not in the future, the subject claim, and the groups claim.
 *
 * @throws {TypeError} when `issuers` is not a valid list (see `parseTrustedIssuers`), or names
 *   `localIssuer`.
 * @example
 * ```ts
 * const verifier = withTrustedIssuers(createTokenVerifier({ keyring }), [
 *   { issuer: "https://sso.example.com/realms/shop", jwks_url: "https://sso.example.com/realms/shop/protocol/openid-connect/certs",
 *     audience: "shop-api", groups_claim: "realm_access.roles", provision: true },
 * ]);
 * ```
 */
export function withTrustedIssuers<V extends AccessVerifier>(
  local: V,
  issuers: readonly TrustedIssuerInit[] | readonly TrustedIssuer[],
  options: TrustedIssuerOptions = {},
): V & TrustedIssuerRouting {
  const configs = resolveTrustedIssuers(issuers);
  const byIssuer = new Map<string, IssuerState>();
  for (const config of configs) {
    const keys = createRemoteKeySource(config.jwksUrl, { ...config.jwks, algorithms: config.algorithms });
    byIssuer.set(config.issuer, {
      config,
      keys,
      algorithms: keys.algorithms,
      verifyOptions: Object.freeze({ algorithms: [...config.algorithms] }),
    });
  }
  // What `local` judges itself: its own issuer(s), and issuers a previous wrap trusts.
  const inner = local.localIssuers ?? [];
  const passUnknown = inner === "any";
  const locals = new Set<unknown>([...(inner === "any" ? [] : inner), ...(local.trustedIssuers ?? [])]);
  for (const issuer of byIssuer.keys()) {
    // Routing by iss could not tell protoguard's own tokens (or the other list's) from its.
    if (locals.has(issuer)) throw new TypeError(`trusted issuer ${issuer} is protoguard's own issuer or trusted twice`);
  }
  const now = options.now ?? Date.now;
  const maxEntries = options.cacheEntries ?? 10_000;
  const cache =
    maxEntries > 0 ? new VerifiedTokenCache<{ dropAfter: number; result: AccessTokenResult }>(maxEntries) : undefined;
  // protoguard's own tokens seen before skip the payload decoding: the common call stays as
  // cheap as without trusted issuers. Keys are the token strings the local cache holds anyway:
  // only tokens the local verifier accepted, never what an unauthenticated caller sent.
  const localTokens = new LruMap<string, true>(Math.max(maxEntries, 1));
  const rememberLocal = <R extends { ok: boolean }>(token: string, result: R): R => {
    if (result.ok && maxEntries > 0) localTokens.set(token, true);
    return result;
  };

  function route(token: string): Route {
    if (localTokens.get(token) === true) return LOCAL;
    // The local verifier refuses anything that is not a canonical compact JWS; let it.
    if (!isCompactJws(token) || !hasCanonicalSegments(token)) return LOCAL;
    const first = token.indexOf(".");
    const payload = parseSegment(token.slice(first + 1, token.indexOf(".", first + 1)));
    if (payload === undefined) return LOCAL;
    const iss = Object.hasOwn(payload, "iss") ? payload.iss : undefined;
    const issuer = typeof iss === "string" ? byIssuer.get(iss) : undefined;
    if (issuer !== undefined) return { kind: "trusted", issuer };
    if (iss === undefined || locals.has(iss) || passUnknown) return LOCAL;
    return UNKNOWN;
  }

  function peek(token: string, expected: "access"): AccessTokenResult | undefined {
    if (expected !== "access") return local.peek?.(token, expected);
    const hit = cache?.get(token, now() / 1000);
    if (hit !== undefined) return hit.result;
    const where = route(token);
    if (where.kind === "unknown") return UNKNOWN_ISSUER;
    if (where.kind === "local") {
      const known = local.peek?.(token, expected);
      return known === undefined ? undefined : rememberLocal(token, known);
    }
    return undefined;
  }

  async function verify(token: string, expected: "access"): Promise<AccessTokenResult> {
    // Refresh tokens are protoguard's own only: never routed to an external issuer.
    if (expected !== "access") return local.verify(token, expected);
    const hit = cache?.get(token, now() / 1000);
    if (hit !== undefined) return hit.result;
    const where = route(token);
    if (where.kind === "unknown") return UNKNOWN_ISSUER;
    if (where.kind === "local") return rememberLocal(token, await local.verify(token, expected));
    try {
      const claims = await verifyExternal(where.issuer, token, now);
      const result: AccessTokenResult = Object.freeze({ ok: true as const, claims });
      cache?.set(token, { dropAfter: claims.expiresAt + where.issuer.config.leewaySeconds, result }, now() / 1000);
      return result;
    } catch (error) {
      return failure(error);
    }
  }

  // Open streams are re-checked at exp plus this: the largest skew any issuer is granted.
  const leewaySeconds = Math.max(local.leewaySeconds ?? 0, ...configs.map((c) => c.leewaySeconds));
  // A new object over `local`, so every other member (cacheSize, refresh verification) stays its.
  const wrapped = Object.create(local) as V & TrustedIssuerRouting;
  Object.defineProperties(wrapped, {
    verify: { value: verify },
    peek: { value: peek },
    leewaySeconds: { value: leewaySeconds },
    trustedIssuers: { value: Object.freeze([...(local.trustedIssuers ?? []), ...byIssuer.keys()]) },
    routeCacheSize: { get: () => localTokens.size },
    localIssuers: { value: inner },
  });
  return wrapped;
}

function parseSegment(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(utf8.decode(Buffer.from(segment, "base64url")));
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

async function verifyExternal(state: IssuerState, token: string, now: () => number): Promise<ExternalAccessClaims> {
  const { config } = state;
  // Cheap refusal before any JWKS I/O: an expired token costs no fetch. Unverified claims may
  // only refuse, never accept.
  const first = token.indexOf(".");
  const unverified = parseSegment(token.slice(first + 1, token.indexOf(".", first + 1)));
  const exp = unverified?.exp;
  if (typeof exp === "number" && now() / 1000 >= exp + config.leewaySeconds) {
    throw new TokenRejectedError("EXPIRED", "token expired", { claim: "exp" });
  }
  const { payload } = await compactVerify(
    token,
    (header: CompactJWSHeaderParameters, input: FlattenedJWSInput) => {
      if (Object.hasOwn(header, "b64"))
        throw new TokenRejectedError("HEADER_INVALID", "the b64 header is not accepted");
      if (Object.hasOwn(header, "kid") && typeof header.kid !== "string") {
        throw new TokenRejectedError("HEADER_INVALID", "kid must be a string");
      }
      if (!state.algorithms.has(header.alg)) {
        throw new TokenRejectedError("ALG_MISMATCH", "the token's alg is not allowed for its issuer");
      }
      return state.keys.resolve(header, input);
    },
    state.verifyOptions,
  );
  const claims: unknown = JSON.parse(utf8.decode(payload));
  return checkExternalClaims(claims, config, token, now() / 1000);
}

/**
 * Checks a trusted issuer's verified (or gateway-verified) payload and maps it to an external
 * subject. `source` is the token (or header value) a missing `jti` is derived from.
 *
 * @throws {TokenRejectedError}
 */
export function checkExternalClaims(
  value: unknown,
  config: TrustedIssuer,
  source: string,
  nowSeconds: number,
): ExternalAccessClaims {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TokenRejectedError("CLAIMS_NOT_OBJECT", "the payload is not a JSON object");
  }
  const claims = value as Record<string, unknown>;
  const own = (name: string) => (Object.hasOwn(claims, name) ? claims[name] : undefined);
  const date = (name: string, required: boolean) => {
    const v = own(name);
    if (v === undefined && !required) return undefined;
    if (v === undefined) throw new TokenRejectedError("CLAIM_MISSING", `"${name}" claim is required`, { claim: name });
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new TokenRejectedError("CLAIM_INVALID", `"${name}" claim must be a finite number`, { claim: name });
    }
    return v;
  };
  const exp = date("exp", true)!;
  const iat = date("iat", true)!;
  const nbf = date("nbf", false);
  if (own("iss") !== config.issuer)
    throw new TokenRejectedError("ISSUER_MISMATCH", "unexpected issuer", { claim: "iss" });
  const aud = own("aud");
  const audienceOk =
    (typeof aud === "string" && config.audiences.includes(aud)) ||
    (Array.isArray(aud) && aud.length <= 32 && aud.some((member) => config.audiences.includes(member as string)));
  if (!audienceOk) throw new TokenRejectedError("AUDIENCE_MISMATCH", "unexpected audience", { claim: "aud" });

  const subject = subjectOf(readClaim(claims, config.subjectClaim));
  if (subject === undefined) {
    throw new TokenRejectedError("CLAIM_INVALID", "subject claim is not a non-empty string of at most 255 characters", {
      claim: config.subjectClaim.join("."),
    });
  }
  const groups = groupsOf(readClaim(claims, config.groupsClaim ?? []), config);

  const leeway = config.leewaySeconds;
  if (nbf !== undefined && nbf > nowSeconds + leeway) {
    throw new TokenRejectedError("NOT_YET_VALID", "token not valid yet", { claim: "nbf" });
  }
  if (iat > nowSeconds + leeway)
    throw new TokenRejectedError("ISSUED_IN_FUTURE", "token issued in the future", { claim: "iat" });
  if (nowSeconds >= exp + leeway) throw new TokenRejectedError("EXPIRED", "token expired", { claim: "exp" });

  const username = readClaim(claims, config.usernameClaim);
  const email = readClaim(claims, config.emailClaim);
  const external: ExternalSubject = Object.freeze({
    issuer: config.issuer,
    subject,
    groups,
    provision: config.provision,
    ...(typeof username === "string" && username.length > 0 && { username }),
    ...(typeof email === "string" && email.length > 0 && { email }),
  });
  const jti = own("jti");
  return Object.freeze({
    external,
    jti:
      typeof jti === "string" && jti.length > 0 && jti.length <= MAX_JTI_LENGTH
        ? jti
        : // Auth0 and Entra ID access tokens have no jti; caches still need one id per token.
          `sha256:${createHash("sha256").update(source).digest("base64url").slice(0, 40)}`,
    issuedAt: iat,
    expiresAt: exp,
    tokenType: "access" as const,
    // Read like protoguard's own: step-up rules judge an IdP's login the same way.
    ...readAuthContext(claims),
    payload: Object.freeze(claims),
  });
}

function subjectOf(value: unknown): string | undefined {
  const text = typeof value === "number" && Number.isSafeInteger(value) ? String(value) : value;
  return typeof text === "string" && text.length > 0 && text.length <= MAX_SUBJECT_LENGTH ? text : undefined;
}

/** The protoguard groups a groups claim maps onto: an array of strings, or a space-separated string (`scope`). */
function groupsOf(value: unknown, config: TrustedIssuer): readonly string[] {
  if (config.groupsClaim === undefined || value === undefined) return [];
  const roles = typeof value === "string" ? value.split(" ").filter((s) => s !== "") : value;
  if (!Array.isArray(roles)) {
    throw new TokenRejectedError(
      "CLAIM_INVALID",
      "groups claim is not an array of strings or a space-separated string",
      {
        claim: config.groupsClaim.join("."),
      },
    );
  }
  const out = new Set<string>();
  for (const role of roles) {
    if (typeof role !== "string") continue;
    const names = config.groupMap === undefined ? [role] : (config.groupMap.get(role) ?? []);
    for (const name of names) if (isGroupName(name)) out.add(name);
    if (out.size > MAX_GROUPS) {
      throw new TokenRejectedError("CLAIM_INVALID", `groups claim maps onto more than ${MAX_GROUPS} groups`, {
        claim: config.groupsClaim.join("."),
      });
    }
  }
  return Object.freeze([...out]);
}

/** The refusal for a verification error: expired and key outages keep their reason, the rest is TOKEN_INVALID. */
export function failure(error: unknown): AccessTokenResult {
  if (error instanceof TokenRejectedError) {
    switch (error.code) {
      case "EXPIRED":
        return { ok: false, reason: "TOKEN_EXPIRED", error };
      case "KEYS_UNAVAILABLE":
        return { ok: false, reason: "KEYS_UNAVAILABLE", error };
      default:
        break;
    }
  }
  // jose's errors (bad signature, alg not allowed, unknown crit...), unknown kid, bad claims.
  return { ok: false, reason: "TOKEN_INVALID", error };
}
