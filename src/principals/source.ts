import type { PrincipalSource } from "../decide/decide.js";
import type { Database } from "../store/database.js";
import { subscribeInvalidations, type InvalidationEvent, type InvalidationSubscription } from "../store/invalidation.js";
import { loadPrincipal, type PrincipalLookup } from "../store/principal-query.js";
import { LruMap } from "../util/lru.js";

/** Options for {@link createPrincipalSource}. */
export interface PrincipalSourceOptions {
  /** The user store. Required. */
  database: Database;
  /**
   * Most cached lookups (one per access token seen). 0 disables the cache:
   * every call then costs one database round trip. Default: 10000.
   */
  maxEntries?: number;
  /**
   * Longest time a cached lookup is trusted, in milliseconds. Changes are
   * normally pushed within milliseconds by database notifications; this
   * bounds staleness should one be lost. Default: 30000.
   */
  maxAgeMs?: number;
  /**
   * Subscribe to the database's invalidation notifications. Turn off only
   * when the cache is off or a single writer invalidates by hand.
   * Default: true when the cache is on.
   */
  listen?: boolean;
  /** Clock in milliseconds, for tests. Default: `Date.now`. */
  now?: () => number;
}

/** A {@link PrincipalSource} over the database, with a bounded, invalidated cache. */
export interface CachedPrincipalSource extends PrincipalSource {
  /**
   * The cached answer for this token, if fresh; never touches the database.
   * Lets the hot path skip a promise and a timer when the cache is warm.
   */
  peek(userId: number, token: { jti: string; issuedAt: number }): PrincipalLookup | undefined;
  /** Applies one invalidation (they also arrive from the database on their own). */
  invalidate(event: InvalidationEvent): void;
  /** Cached entries now. */
  readonly size: number;
  /** Stops listening for notifications. The database stays open. */
  close(): Promise<void>;
}

interface Entry {
  readonly lookup: PrincipalLookup;
  readonly userId: number;
  readonly issuedAt: number;
  readonly storedAt: number;
}

/**
 * Loads callers from the database — one round trip returning the user, its
 * effective permissions and the token's revocation status — and caches the
 * result per token. The cache is bounded (LRU) and invalidated by the
 * database itself: triggers NOTIFY on any change to users, grants, group
 * memberships, groups, permissions or revoked tokens, and every server
 * instance sharing the database LISTENs (PGlite: in-process).
 *
 * @example
 * ```ts
 * const principals = await createPrincipalSource({ database });
 * const auth = createAuth({ verifier, principals, services });
 * ```
 */
export async function createPrincipalSource(options: PrincipalSourceOptions): Promise<CachedPrincipalSource> {
  const { database } = options;
  const maxEntries = options.maxEntries ?? 10_000;
  const maxAgeMs = options.maxAgeMs ?? 30_000;
  const now = options.now ?? Date.now;
  const byUser = new Map<number, Set<string>>();

  const forget = (jti: string, entry: Entry) => {
    const keys = byUser.get(entry.userId);
    if (keys === undefined) return;
    keys.delete(jti);
    if (keys.size === 0) byUser.delete(entry.userId);
  };
  const cache = new LruMap<string, Entry>(maxEntries, forget);
  // Bumped by every invalidation, so a lookup that raced with one is not
  // cached with the answer from before the change.
  let generation = 0;

  function invalidate(event: InvalidationEvent): void {
    generation++;
    if (event.kind === "all") {
      cache.clear();
      byUser.clear();
    } else if (event.kind === "user") {
      const keys = byUser.get(event.userId);
      if (keys === undefined) return;
      for (const jti of keys) cache.delete(jti);
      byUser.delete(event.userId);
    } else {
      const entry = cache.get(event.jti);
      if (entry !== undefined) {
        cache.delete(event.jti);
        forget(event.jti, entry);
      }
    }
  }

  const isFresh = (entry: Entry, userId: number, issuedAt: number) =>
    entry.userId === userId && entry.issuedAt === issuedAt && now() - entry.storedAt < maxAgeMs;

  let subscription: InvalidationSubscription | undefined;
  if (maxEntries > 0 && (options.listen ?? true)) {
    subscription = await subscribeInvalidations(database, invalidate);
  }

  return {
    invalidate,
    get size() {
      return cache.size;
    },
    async close() {
      await subscription?.close();
      subscription = undefined;
    },
    peek(userId, token) {
      const cached = cache.get(token.jti);
      return cached !== undefined && isFresh(cached, userId, token.issuedAt) ? cached.lookup : undefined;
    },
    async load(userId, token) {
      if (maxEntries === 0) return loadPrincipal(database.db, userId, token);
      const cached = cache.get(token.jti);
      if (cached !== undefined && isFresh(cached, userId, token.issuedAt)) return cached.lookup;
      const startedAt = generation;
      const storedAt = now();
      const lookup = await loadPrincipal(database.db, userId, token);
      if (generation === startedAt) {
        if (cached !== undefined) forget(token.jti, cached);
        cache.set(token.jti, { lookup, userId, issuedAt: token.issuedAt, storedAt });
        let keys = byUser.get(userId);
        if (keys === undefined) byUser.set(userId, (keys = new Set()));
        keys.add(token.jti);
      }
      return lookup;
    },
  };
}
