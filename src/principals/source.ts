import type { PrincipalSource } from "../decide/decide.js";
import type { Database } from "../store/database-handle.js";
import {
  subscribeInvalidations,
  type InvalidationEvent,
  type InvalidationSubscription,
  type NotificationState,
  type SubscribeOptions,
} from "../store/invalidation.js";
import type { PrincipalLookup } from "../principal.js";
import { loadPrincipal } from "../store/principal-query.js";
import { PrincipalCache, resolveCacheLimits } from "./cache.js";

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
   * Default: true. With the cache on, the subscription starts at once; with
   * it off, when the first {@link CachedPrincipalSource.onInvalidation}
   * listener (the auth layer's stream re-checks) needs it.
   */
  listen?: boolean;
  /**
   * Reconnect and heartbeat settings of the subscription (see `subscribeInvalidations`).
   * Default: its defaults (a heartbeat every 1 s, down after 2 s without one).
   */
  subscribe?: SubscribeOptions;
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
  /**
   * Loads from the database, ignoring any cached answer (and caching the
   * fresh one): what re-checks of open calls use after an invalidation, so
   * they never judge by the answer from before the change.
   */
  reload(userId: number, token: { jti: string; issuedAt: number }): Promise<PrincipalLookup>;
  /**
   * Applies one invalidation (they also arrive from the database on their
   * own), then tells the {@link onInvalidation} listeners.
   */
  invalidate(event: InvalidationEvent): void;
  /**
   * Calls `listener` after every invalidation has been applied to the cache,
   * whether it came from the database or from {@link invalidate}; returns a
   * function that removes it. One database subscription serves every
   * listener. A listener must not throw (what it throws is ignored).
   */
  onInvalidation(listener: (event: InvalidationEvent) => void): () => void;
  /**
   * Whether invalidation notifications arrive: `listening`; `down` (the LISTEN connection is
   * closed or a heartbeat did not come back; every cache fed by {@link onInvalidation} is
   * flushed at each heartbeat meanwhile); `off` when there is no subscription (yet).
   */
  readonly notifications: NotificationState | "off";
  /**
   * Calls `listener` whenever {@link notifications} changes, with a short reason; returns a
   * function that removes it. A listener must not throw.
   */
  onNotificationsChange(listener: (state: NotificationState | "off", reason: string) => void): () => void;
  /** Longest time a cached lookup is trusted, in milliseconds (the resolved `maxAgeMs`). */
  readonly maxAgeMs: number;
  /** Cached entries now. */
  readonly size: number;
  /** Lookups answered from the cache since creation (`peek` or `load`). */
  readonly hits: number;
  /**
   * Lookups that went to the database since creation (`load` on a miss or
   * with the cache off, and `reload`): `hits / (hits + misses)` is the hit rate.
   */
  readonly misses: number;
  /** Stops listening for notifications. The database stays open. */
  close(): Promise<void>;
}

/** A database lookup under way, for the calls that arrive with the same token meanwhile. */
interface PendingLookup {
  readonly lookup: Promise<PrincipalLookup>;
  readonly userId: number;
  readonly issuedAt: number;
  /** The invalidation generation it started in. */
  readonly generation: number;
}

/** A cached answer for one token (keyed by its jti). */
interface Cached {
  readonly lookup: PrincipalLookup;
  readonly issuedAt: number;
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
  const cache = new PrincipalCache<string, Cached>(
    resolveCacheLimits(options, { maxEntries: 10_000, maxAgeMs: 30_000 }),
  );
  const { maxAgeMs } = cache;
  let hits = 0;
  let misses = 0;

  const listeners = new Set<(event: InvalidationEvent) => void>();
  // Lookups under way, by jti: calls arriving together with a new token
  // share one round trip instead of each making its own. Joined only within
  // the same generation, so no call gets an answer from before a change it
  // came after.
  const pending = new Map<string, PendingLookup>();

  function invalidate(event: InvalidationEvent): void {
    cache.invalidate(event);
    if (event.kind === "token") cache.delete(event.jti);
    // After the cache: a listener that looks the user up again sees the change.
    for (const listener of listeners) {
      try {
        listener(event);
      } catch {
        // One listener's failure must not keep the event from the others.
      }
    }
  }

  async function fetchAndStore(userId: number, token: { jti: string; issuedAt: number }): Promise<PrincipalLookup> {
    misses++;
    const started = cache.start();
    const lookup = await loadPrincipal(database.db, userId, token);
    cache.store(token.jti, { lookup, issuedAt: token.issuedAt }, userId, started);
    return lookup;
  }

  /** The fresh cached answer for this token: the same user and iat as when it was stored. */
  const cached = (userId: number, token: { jti: string; issuedAt: number }) =>
    cache.fresh(token.jti, (entry, owner) => owner === userId && entry.issuedAt === token.issuedAt)?.lookup;

  function joinPending(userId: number, token: { jti: string; issuedAt: number }): Promise<PrincipalLookup> {
    // Joined only for the same user and iat (the token claiming a jti is
    // the caller's) and the same generation (no answer from before a
    // change the call came after).
    const inFlight = pending.get(token.jti);
    if (
      inFlight !== undefined &&
      inFlight.generation === cache.generation &&
      inFlight.userId === userId &&
      inFlight.issuedAt === token.issuedAt
    ) {
      hits++;
      return inFlight.lookup;
    }
    const lookup = fetchAndStore(userId, token);
    const entry: PendingLookup = { lookup, userId, issuedAt: token.issuedAt, generation: cache.generation };
    pending.set(token.jti, entry);
    const settled = () => {
      if (pending.get(token.jti) === entry) pending.delete(token.jti);
    };
    lookup.then(settled, settled);
    return lookup;
  }

  const subscription = await invalidationsFor(database, invalidate, {
    now: cache.enabled && (options.listen ?? true),
    onDemand: options.listen ?? true,
    ...(options.subscribe !== undefined && { options: options.subscribe }),
  });

  return {
    invalidate,
    maxAgeMs,
    get notifications() {
      return subscription.state;
    },
    onNotificationsChange: (listener) => subscription.onStateChange(listener),
    get size() {
      return cache.size;
    },
    get hits() {
      return hits;
    },
    get misses() {
      return misses;
    },
    onInvalidation(listener) {
      listeners.add(listener);
      subscription.ensure();
      return () => listeners.delete(listener);
    },
    close: () => subscription.close(),
    reload: fetchAndStore,
    peek(userId, token) {
      const lookup = cached(userId, token);
      if (lookup !== undefined) hits++;
      return lookup;
    },
    async load(userId, token) {
      if (!cache.enabled) {
        misses++;
        return loadPrincipal(database.db, userId, token);
      }
      const lookup = cached(userId, token);
      if (lookup !== undefined) {
        hits++;
        return lookup;
      }
      return joinPending(userId, token);
    },
  };
}

/** A subscription to the database's invalidations, started at once or when first needed. */
interface LazySubscription {
  /** Starts it if it is wanted and not running; a failure is retried by the next call. */
  ensure(): void;
  /** Whether notifications arrive; `off` while there is no subscription (yet). */
  readonly state: NotificationState | "off";
  /** Calls `listener` on every change of {@link state}; returns a function that removes it. */
  onStateChange(listener: (state: NotificationState | "off", reason: string) => void): () => void;
  close(): Promise<void>;
}

async function invalidationsFor(
  database: Database,
  invalidate: (event: InvalidationEvent) => void,
  when: { now: boolean; onDemand: boolean; options?: SubscribeOptions },
): Promise<LazySubscription> {
  let closed = false;
  const stateListeners = new Set<(state: NotificationState | "off", reason: string) => void>();
  const started = (sub: InvalidationSubscription): InvalidationSubscription => {
    sub.onStateChange((state, reason) => {
      for (const listener of stateListeners) {
        try {
          listener(state, reason);
        } catch {
          // Ignored, as documented.
        }
      }
    });
    return sub;
  };
  let subscription: InvalidationSubscription | undefined = when.now
    ? started(await subscribeInvalidations(database, invalidate, when.options))
    : undefined;
  let subscribing: Promise<void> | undefined;
  return {
    get state() {
      return subscription?.state ?? "off";
    },
    onStateChange(listener) {
      stateListeners.add(listener);
      return () => stateListeners.delete(listener);
    },
    ensure() {
      if (!when.onDemand || closed || subscription !== undefined || subscribing !== undefined) return;
      subscribing = subscribeInvalidations(database, invalidate, when.options).then(
        async (sub) => {
          subscribing = undefined;
          if (closed) await sub.close();
          else subscription = started(sub);
        },
        () => {
          // Listeners are still re-checked on their own schedule; a later
          // listener tries again.
          subscribing = undefined;
        },
      );
    },
    async close() {
      closed = true;
      await subscribing;
      await subscription?.close();
      subscription = undefined;
    },
  };
}
