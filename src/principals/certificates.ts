/**
 * The store-backed {@link CertificatePrincipalSource}: TLS client
 * certificate identities mapped to service accounts through
 * `service_accounts.tls_identity`. Apart from the credential module so that
 * the main entry point (which reads certificates) loads no database driver.
 */
import type { CertificatePrincipalSource, ClientCertificate } from "../credential/client-certificate.js";
import type { PrincipalLookup } from "../principal.js";
import type { Database } from "../store/database.js";
import type { InvalidationEvent } from "../invalidation-event.js";
import { loadPrincipal } from "../store/principal-query.js";
import { findServiceByTlsIdentity } from "../store/service-accounts.js";

/** Options of {@link createCertificatePrincipalSource}. */
export interface CertificatePrincipalSourceOptions {
  /** The store holding `service_accounts`. Required. */
  database: Database;
  /**
   * Where invalidations come from: the principal source's
   * `onInvalidation`, which already follows the database's notifications
   * (a service's grants, deactivation, deletion or a changed `tls_identity`
   * all announce its user). Without it, answers are trusted for `maxAgeMs`.
   */
  onInvalidation?: (listener: (event: InvalidationEvent) => void) => () => void;
  /** Most certificate identities remembered; 0 disables the cache. Default 1000. */
  maxEntries?: number;
  /** Longest time a cached answer is trusted, in milliseconds. Default 30000. */
  maxAgeMs?: number;
  /** Clock in milliseconds, for tests. Default `Date.now`. */
  now?: () => number;
}

interface Entry {
  readonly lookup: PrincipalLookup;
  /** The mapped user, or undefined for "no account has this identity". */
  readonly userId: number | undefined;
  readonly storedAt: number;
}

/** A {@link CertificatePrincipalSource} with a cache; `close` stops following invalidations. */
export interface CachedCertificatePrincipalSource extends CertificatePrincipalSource {
  peek(certificate: ClientCertificate): PrincipalLookup | undefined;
  close(): void;
}

/**
 * Maps certificate identities to service accounts in the database (one
 * indexed lookup of `tls_identity`, then the same one-query principal load
 * tokens use), with a bounded cache dropped on invalidation. Answers for
 * unmapped identities are cached too, and all of them are dropped by any
 * change to any user, so a newly mapped identity works at once.
 *
 * @example
 * ```ts
 * const principals = await createPrincipalSource({ database });
 * const certificates = createCertificatePrincipalSource({
 *   database,
 *   onInvalidation: (listener) => principals.onInvalidation(listener),
 * });
 * const auth = createAuth({ verifier, principals, certificates, services });
 * ```
 */
export function createCertificatePrincipalSource(
  options: CertificatePrincipalSourceOptions,
): CachedCertificatePrincipalSource {
  const db = options.database.db;
  const maxEntries = options.maxEntries ?? 1000;
  const maxAgeMs = options.maxAgeMs ?? 30_000;
  const now = options.now ?? Date.now;
  if (!Number.isSafeInteger(maxEntries) || maxEntries < 0) throw new RangeError("maxEntries must be an integer >= 0");
  // Few identities (one per service), so a Map in insertion order bounded
  // by evicting the oldest is enough, and it can be scanned on invalidation.
  const cache = new Map<string, Entry>();
  let generation = 0;

  const stop = options.onInvalidation?.((event) => {
    generation++;
    if (event.kind === "all") return cache.clear();
    if (event.kind !== "user") return;
    for (const [identity, entry] of cache) {
      if (entry.userId === undefined || entry.userId === event.userId) cache.delete(identity);
    }
  });

  async function fetch(identity: string): Promise<Entry> {
    const storedAt = now();
    const userId = await findServiceByTlsIdentity(db, [identity]);
    const lookup: PrincipalLookup = userId === undefined ? { status: "not_found" } : await loadPrincipal(db, userId);
    return { lookup, userId, storedAt };
  }

  function peek(certificate: ClientCertificate): PrincipalLookup | undefined {
    if (maxEntries === 0) return undefined;
    const entry = cache.get(certificate.identity);
    return entry !== undefined && now() - entry.storedAt < maxAgeMs ? entry.lookup : undefined;
  }

  return {
    peek,
    async load(certificate) {
      const cached = peek(certificate);
      if (cached !== undefined) return cached;
      const startedAt = generation;
      const entry = await fetch(certificate.identity);
      if (maxEntries > 0 && generation === startedAt) {
        cache.delete(certificate.identity);
        if (cache.size >= maxEntries) cache.delete(cache.keys().next().value!);
        cache.set(certificate.identity, entry);
      }
      return entry.lookup;
    },
    close() {
      stop?.();
    },
  };
}
