/**
 * The store-backed {@link CertificatePrincipalSource}: TLS client
 * certificate identities mapped to service accounts through
 * `service_accounts.tls_identity`. Apart from the credential module so that
 * the main entry point (which reads certificates) loads no database driver.
 */
import type { CertificatePrincipalSource, ClientCertificate } from "../credential/client-certificate.js";
import type { PrincipalLookup } from "../principal.js";
import type { Database } from "../store/database-handle.js";
import type { InvalidationEvent } from "../invalidation-event.js";
import { loadPrincipal } from "../store/principal-query.js";
import { findServiceByTlsIdentity } from "../store/service-accounts.js";
import { PrincipalCache, resolveCacheLimits } from "./cache.js";

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
  // Few identities (one per service). An answer about nobody ("no account has this identity")
  // goes on any user's change: a service gaining the identity announces only that service.
  const cache = new PrincipalCache<string, PrincipalLookup>(
    resolveCacheLimits(options, { maxEntries: 1000, maxAgeMs: 30_000 }),
    true,
  );
  const stop = options.onInvalidation?.((event) => cache.invalidate(event));

  function peek(certificate: ClientCertificate): PrincipalLookup | undefined {
    return cache.fresh(certificate.identity);
  }

  return {
    peek,
    async load(certificate) {
      const cached = peek(certificate);
      if (cached !== undefined) return cached;
      const started = cache.start();
      const userId = await findServiceByTlsIdentity(db, [certificate.identity]);
      const lookup: PrincipalLookup = userId === undefined ? { status: "not_found" } : await loadPrincipal(db, userId);
      cache.store(certificate.identity, lookup, userId, started);
      return lookup;
    },
    close() {
      stop?.();
    },
  };
}
