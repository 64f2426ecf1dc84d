/** JWKS in both directions: publishing our public keys, and consuming a remote issuer's. */
import { createRemoteJWKSet, errors } from "jose";
import type { FlattenedJWSInput, JWSHeaderParameters } from "jose";
import { TokenRejectedError } from "./errors.js";
import type { AsymmetricAlgorithm, Keyring } from "./keys.js";

/** A ready-to-send HTTP response for `/.well-known/jwks.json`. */
export interface JwksDocument {
  readonly body: string;
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * Serialises the keyring's public keys (asymmetric keys only; HMAC secrets are never published)
 * as a JWKS response. `maxAgeSeconds` (default 300) sets `Cache-Control`: keep it well below the
 * time an old key stays in the keyring after rotation, so consumers see new keys in time.
 */
export function jwksDocument(keyring: Keyring, options?: { maxAgeSeconds?: number }): JwksDocument {
  const maxAge = options?.maxAgeSeconds ?? 300;
  return {
    body: JSON.stringify(keyring.publicJwks()),
    headers: Object.freeze({
      "content-type": "application/jwk-set+json",
      "cache-control": `public, max-age=${Math.max(0, Math.floor(maxAge))}`,
    }),
  };
}

/** How a remote JWKS is fetched and cached (passed to jose's `createRemoteJWKSet`). */
export interface RemoteJwksOptions {
  /** Keys are re-fetched after this many ms. Default 600000 (10 minutes). */
  cacheMaxAge?: number;
  /**
   * After a fetch, an unknown `kid` triggers no new fetch for this many ms, so tokens with made-up
   * kids cannot make us hammer the JWKS endpoint. Default 30000.
   */
  cooldownDuration?: number;
  /**
   * After a fetch that failed (an HTTP error, a reset connection, a timeout, a document that is
   * no JWKS), calls fail closed (`KEYS_UNAVAILABLE`) without a new fetch for this many ms:
   * tokens cannot make us hammer a JWKS endpoint that is down. Default 5000, or
   * `cooldownDuration` when that is shorter.
   */
  failureCooldownDuration?: number;
  /** HTTP timeout in ms. Default 5000. */
  timeoutDuration?: number;
  /** Accepted algorithms, explicit so nothing is inferred from the token. Default `["RS256", "ES256"]`. */
  algorithms?: readonly AsymmetricAlgorithm[];
  /** Allow `http:` for hosts other than loopback. Default false: plain HTTP lets anyone on the path swap keys. */
  allowInsecureHttp?: boolean;
}

/** A remote JWKS wrapped so failures say whether the token or the key source is at fault. */
export interface RemoteKeySource {
  readonly algorithms: ReadonlySet<string>;
  /** True when resolving a key now could cause a network fetch. */
  readonly mayFetch: boolean;
  /**
   * Finds the key for a header. Throws `TokenRejectedError` with code `KID_UNKNOWN` / `KID_REQUIRED`
   * (the token's fault) or `KEYS_UNAVAILABLE` (fetch failed, bad JWKS: fail closed).
   */
  resolve(header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey>;
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);

/** Wraps jose's `createRemoteJWKSet` for the `jwksUrl` option of `createTokenVerifier`. */
export function createRemoteKeySource(url: string | URL, options: RemoteJwksOptions = {}): RemoteKeySource {
  const parsed = new URL(url);
  if (
    parsed.protocol !== "https:" &&
    !(parsed.protocol === "http:" && (LOOPBACK.has(parsed.hostname) || options.allowInsecureHttp))
  ) {
    throw new RangeError(`jwksUrl must be https (got ${parsed.protocol}//${parsed.host})`);
  }
  const algorithms = new Set<string>(options.algorithms ?? ["RS256", "ES256"]);
  for (const alg of algorithms) {
    if (alg !== "RS256" && alg !== "ES256") throw new RangeError(`unsupported JWKS algorithm ${alg}`);
  }
  const remote = createRemoteJWKSet(parsed, {
    ...(options.cacheMaxAge === undefined ? {} : { cacheMaxAge: options.cacheMaxAge }),
    ...(options.cooldownDuration === undefined ? {} : { cooldownDuration: options.cooldownDuration }),
    ...(options.timeoutDuration === undefined ? {} : { timeoutDuration: options.timeoutDuration }),
  });
  const failureCooldown = Math.max(
    0,
    options.failureCooldownDuration ?? Math.min(5_000, options.cooldownDuration ?? 30_000),
  );
  // When the last fetch failed, and why: calls until the cool-down ends get that failure.
  let failed: { at: number; cause: unknown } | undefined;
  const coolingAfterFailure = () => failed !== undefined && Date.now() - failed.at < failureCooldown;
  return {
    algorithms,
    get mayFetch() {
      if (coolingAfterFailure()) return false;
      // Stale cache, or fresh but past the cooldown (an unknown kid would re-fetch).
      return !remote.fresh || !remote.coolingDown;
    },
    async resolve(header, token) {
      if (coolingAfterFailure()) {
        throw new TokenRejectedError("KEYS_UNAVAILABLE", "the JWKS could not be fetched or used", {
          cause: failed!.cause,
        });
      }
      try {
        const key = await remote(header, token);
        failed = undefined;
        return key;
      } catch (cause) {
        if (cause instanceof errors.JWKSNoMatchingKey) {
          throw new TokenRejectedError("KID_UNKNOWN", "no published key matches the token", { cause });
        }
        if (cause instanceof errors.JWKSMultipleMatchingKeys) {
          throw new TokenRejectedError("KID_REQUIRED", "several published keys match the token", { cause });
        }
        // jose keeps no trace of a failed fetch and would fetch again on the next call.
        failed = { at: Date.now(), cause };
        throw new TokenRejectedError("KEYS_UNAVAILABLE", "the JWKS could not be fetched or used", { cause });
      }
    },
  };
}
