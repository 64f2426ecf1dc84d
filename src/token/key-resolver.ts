/**
 * Key resolution: which key checks a token's signature, chosen from its protected header. Local
 * keys by `kid`, the key's own alg deciding (which defeats alg confusion); kids not found
 * locally, and tokens without `kid` when there are no local keys, go to the remote JWKS.
 */
import type { CompactJWSHeaderParameters, FlattenedJWSInput, JWSAlgorithm } from "jose";
import { TokenRejectedError } from "./errors.js";
import type { RemoteKeySource } from "./jwks.js";
import type { Keyring, VerificationKey } from "./keys.js";

/** jose's key callback: a local key synchronously, a remote one as a promise. */
export type ResolveKey = (
  header: CompactJWSHeaderParameters,
  token: FlattenedJWSInput,
) => CryptoKey | Promise<CryptoKey>;

/** Built by {@link createKeyResolver}. */
export interface KeyResolver {
  readonly resolveKey: ResolveKey;
  /** Every alg a configured key checks. jose refuses any other before resolving, `none` included. */
  readonly algorithms: readonly JWSAlgorithm[];
  /** The local keys by `kid`. */
  readonly localKeys: ReadonlyMap<string, VerificationKey>;
  /**
   * The key for a token without `kid`: the only local key, and only when no JWKS is configured
   * (how simplejwt tokens arrive). Otherwise undefined and such a token needs a kid.
   */
  readonly onlyLocalKey: VerificationKey | undefined;
}

/**
 * Builds the key resolution for a verifier. `beforeFetch` gets the still unverified payload
 * segment of a token about to be sent to a JWKS that may fetch, and may throw to refuse it
 * without I/O.
 */
export function createKeyResolver(
  keyring: Keyring | undefined,
  remote: RemoteKeySource | undefined,
  beforeFetch: (encodedPayload: string) => void,
): KeyResolver {
  const localKeys: ReadonlyMap<string, VerificationKey> = keyring?.keys ?? new Map();
  const onlyLocalKey = !remote && localKeys.size === 1 ? localKeys.values().next().value : undefined;
  const algorithms = [...new Set<string>([...(keyring?.algorithms ?? []), ...(remote?.algorithms ?? [])])];

  // Async, so a refusal by `beforeFetch` arrives as a rejected key promise like a fetch failure.
  async function resolveRemote(source: RemoteKeySource, header: CompactJWSHeaderParameters, token: FlattenedJWSInput) {
    // Cheap checks first (no JWKS I/O for expired or foreign tokens).
    if (source.mayFetch) beforeFetch(token.payload as string);
    return source.resolve(header, token);
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

  return Object.freeze({
    resolveKey,
    algorithms: Object.freeze(algorithms as JWSAlgorithm[]),
    localKeys,
    onlyLocalKey,
  });
}
