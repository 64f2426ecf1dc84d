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
import {
  loadPrincipal,
  loadPrincipalAndUser,
  revokedByCredentials,
  type UserRevocationFacts,
} from "../store/principal-query.js";
import { loadRevokedTokens, onLocalRevocation, revokedTokenExpiries } from "../store/revoked-tokens.js";
import { PrincipalCache, resolveCacheLimits } from "./cache.js";
import { RevokedTokenSet } from "./revoked-set.js";

/** Options for {@link createPrincipalSource}. */
export interface PrincipalSourceOptions {
  /** The user store. Required. */
  database: Database;
  /**
   * Most cached users (and, while notifications are down, most cached
   * tokens). 0 disables the cache: every call then costs one database round
   * trip. Default: 10000.
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
  peek(userId: number, token: { jti: string; issuedAt: number; expiresAt?: number }): PrincipalLookup | undefined;
  /**
   * Loads from the database, ignoring any cached answer (and caching the
   * fresh one): what re-checks of open calls use after an invalidation, so
   * they never judge by the answer from before the change.
   */
  reload(userId: number, token: { jti: string; issuedAt: number; expiresAt?: number }): Promise<PrincipalLookup>;
  /**
   * Applies one invalidation (they also arrive from the database on their
   * own), then tells the {@link onInvalidation} listeners. A `token` event's
   * jti counts as revoked in memory until its `revoked_tokens` row has been
   * read (no row: not revoked, as the database would answer).
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
  /**
   * Revoked access tokens held in memory now (unexpired ones; each leaves at
   * its token's `exp`). The metric `protoguard_revoked_tokens`.
   */
  readonly revokedTokens: number;
  /**
   * Whether a new token of a cached user is judged in memory now (signature,
   * user cache, revoked set): notifications are `listening` and the revoked
   * set was reloaded since they last were. Otherwise every first-seen token
   * costs its own database lookup, as when the cache is keyed by token.
   */
  readonly revocationsInMemory: boolean;
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

/** A cached answer for one token (keyed by its jti), used while the revoked set is not trusted. */
interface Cached {
  readonly lookup: PrincipalLookup;
  readonly issuedAt: number;
}

/** The token facts a source judges: `expiresAt` (seconds) is what allows judging it in memory. */
type TokenFacts = { jti: string; issuedAt: number; expiresAt?: number };

/** A user lookup under way, shared by the calls of that user's new tokens meanwhile. */
interface PendingUser {
  readonly facts: Promise<UserRevocationFacts>;
  readonly generation: number;
}

const REVOKED: PrincipalLookup = Object.freeze({ status: "revoked" });
/**
 * How long after this process changed a user's credentials the user's cached
 * facts are not used for new tokens, ms: the write may not be committed yet
 * when it is announced, and its notification comes within the heartbeat
 * bound (or notifications are declared down).
 */
const LOCAL_CHANGE_DISTRUST_MS = 3000;
/** Wait before reading the revoked set (or a notified row) again after the database failed, ms. */
const RESYNC_RETRY_MS = 1000;

/**
 * Loads callers from the database — one round trip returning the user, its
 * effective permissions and the token's revocation status — and caches the
 * user, so the user's next tokens (every refresh, every new tab) are judged
 * in memory: the user's `credentials_changed_at` cut-off plus a set of the
 * revoked, unexpired `jti`s that every instance keeps. The cache is bounded
 * (LRU) and invalidated by the database itself: triggers NOTIFY on any
 * change to users, grants, group memberships, groups, permissions or revoked
 * tokens, and every server instance sharing the database LISTENs (PGlite:
 * in-process, which sees every write since one process owns the data).
 *
 * The revoked set is loaded when notifications start and reloaded each time
 * they come back; a `token` notification adds its `jti` at once (revoked
 * until its row's expiry has been read). While notifications are down, and
 * until the set has been reloaded after they return, or with `listen: false`,
 * each new token costs its own lookup and answers are cached per token, as
 * before. A token without `exp`, or past it (within the verifier's leeway),
 * is always looked up.
 *
 * @example
 * ```ts
 * const principals = await createPrincipalSource({ database });
 * const auth = createAuth({ verifier, principals, services });
 * ```
 */
export async function createPrincipalSource(options: PrincipalSourceOptions): Promise<CachedPrincipalSource> {
  const { database } = options;
  const limits = resolveCacheLimits(options, { maxEntries: 10_000, maxAgeMs: 30_000 });
  const { now } = limits;
  // By user: what judges any token of theirs, together with `revoked`.
  const users = new PrincipalCache<number, UserRevocationFacts>(limits);
  // By token: today's per-token answers, used only while `revoked` is not trusted.
  const tokens = new PrincipalCache<string, Cached>(limits);
  const revoked = new RevokedTokenSet();
  const { maxAgeMs } = users;
  const listen = options.listen ?? true;
  let hits = 0;
  let misses = 0;

  const listeners = new Set<(event: InvalidationEvent) => void>();
  // Lookups under way, by jti (per-token mode) and by user (in-memory mode):
  // calls arriving together share one round trip instead of each making its
  // own. Joined only within the same generation, so no call gets an answer
  // from before a change it came after.
  const pending = new Map<string, PendingLookup>();
  const pendingUsers = new Map<number, PendingUser>();

  // `revoked` is trusted while notifications are listening and it has been
  // reloaded since they last started: bumped by every change of state, so a
  // reload that began before one does not count.
  let synced = false;
  let syncEpoch = 0;
  // After close(): no more reads of the set (the database may be closed too).
  let closed = false;
  const trusted = () => synced && subscription.state === "listening";

  async function resync(): Promise<void> {
    const epoch = ++syncEpoch;
    synced = false;
    if (closed || !users.enabled || subscription.state !== "listening") return;
    try {
      // After LISTEN holds: a revocation committed later is announced, one
      // committed before is in this read.
      const rows = await loadRevokedTokens(database.db, now());
      if (epoch !== syncEpoch) return;
      for (const row of rows) revoked.add(row.jti, row.expiresAtMs);
      synced = subscription.state === "listening";
    } catch {
      if (epoch !== syncEpoch) return;
      setTimeout(() => {
        if (epoch === syncEpoch) void resync();
      }, RESYNC_RETRY_MS).unref();
    }
  }

  // jtis a notification named whose expiry is being read, in one query per burst.
  let toRead = new Set<string>();
  let reading = false;
  function noteRevoked(jti: string): void {
    if (!users.enabled) return;
    revoked.add(jti);
    if (!revoked.pending(jti)) return;
    toRead.add(jti);
    if (!reading) {
      reading = true;
      setImmediate(readExpiries);
    }
  }
  function readExpiries(): void {
    if (closed) return;
    const batch = [...toRead];
    toRead = new Set();
    revokedTokenExpiries(database.db, batch).then(
      (rows) => {
        for (const row of rows) revoked.add(row.jti, row.expiresAtMs);
        // Read after the notification, so after the commit: no row, not revoked.
        for (const jti of batch) revoked.dropPending(jti);
        finish();
      },
      () => {
        // Still revoked meanwhile (pending): read again later.
        for (const jti of batch) if (revoked.pending(jti)) toRead.add(jti);
        setTimeout(finish, RESYNC_RETRY_MS).unref();
      },
    );
    function finish() {
      reading = toRead.size > 0;
      if (reading) setImmediate(readExpiries);
    }
  }

  function apply(event: InvalidationEvent): void {
    users.invalidate(event);
    tokens.invalidate(event);
    if (event.kind === "token") {
      tokens.delete(event.jti);
      noteRevoked(event.jti);
    }
    // After the caches: a listener that looks the user up again sees the change.
    for (const listener of listeners) {
      try {
        listener(event);
      } catch {
        // One listener's failure must not keep the event from the others.
      }
    }
  }

  /** The answer for this token from the user's facts and the revoked set. */
  function judge(user: UserRevocationFacts, token: TokenFacts): PrincipalLookup {
    // not_found and inactive come before revoked, as in the one statement.
    if (user.lookup.status !== "ok") return user.lookup;
    if (revokedByCredentials(user, token.issuedAt) || revoked.has(token.jti)) return REVOKED;
    return user.lookup;
  }

  /**
   * Whether this token may be judged in memory: the set is trusted, and the
   * token has not expired (an entry leaves the set at its token's `exp`, so a
   * token inside the verifier's leeway past it is looked up).
   */
  function inMemory(userId: number, token: TokenFacts): boolean {
    if (!trusted() || token.expiresAt === undefined) return false;
    const nowMs = now();
    if (!(token.expiresAt * 1000 > nowMs)) return false;
    if (distrusted.size > 0) {
      const until = distrusted.get(userId);
      if (until !== undefined) {
        if (nowMs < until) return false;
        distrusted.delete(userId);
      }
    }
    revoked.prune(nowMs);
    return true;
  }
  // Users whose credentials this process just changed, until when (ms).
  const distrusted = new Map<number, number>();

  /** One round trip: the token's answer, and the user's facts cached for the next tokens. */
  async function query(
    userId: number,
    token: TokenFacts,
  ): Promise<{ lookup: PrincipalLookup; user: UserRevocationFacts }> {
    misses++;
    // A token the next call cannot judge in memory is cached by itself.
    const perToken = !inMemory(userId, token);
    const startedUser = users.start();
    const startedToken = tokens.start();
    const result = await loadPrincipalAndUser(database.db, userId, token);
    users.store(userId, result.user, userId, startedUser);
    if (perToken) tokens.store(token.jti, { lookup: result.lookup, issuedAt: token.issuedAt }, userId, startedToken);
    // Revoked by jti, and the notification not here yet: remember it now, so
    // the next call with this token is not judged by a set that lacks it.
    if (result.lookup.status === "revoked" && result.user.lookup.status === "ok") {
      if (!revokedByCredentials(result.user, token.issuedAt) && !revoked.has(token.jti)) noteRevoked(token.jti);
    }
    return result;
  }

  const fetchAndStore = async (userId: number, token: TokenFacts) => (await query(userId, token)).lookup;

  /** The fresh cached answer for this token, without I/O. */
  function cached(userId: number, token: TokenFacts): PrincipalLookup | undefined {
    if (inMemory(userId, token)) {
      const user = users.fresh(userId);
      if (user !== undefined) return judge(user, token);
    }
    return tokens.fresh(token.jti, (entry, owner) => owner === userId && entry.issuedAt === token.issuedAt)?.lookup;
  }

  function joinToken(userId: number, token: TokenFacts): Promise<PrincipalLookup> {
    // Joined only for the same user and iat (the token claiming a jti is
    // the caller's) and the same generation (no answer from before a
    // change the call came after).
    const inFlight = pending.get(token.jti);
    if (
      inFlight !== undefined &&
      inFlight.generation === tokens.generation &&
      inFlight.userId === userId &&
      inFlight.issuedAt === token.issuedAt
    ) {
      hits++;
      return inFlight.lookup;
    }
    const lookup = fetchAndStore(userId, token);
    const entry: PendingLookup = { lookup, userId, issuedAt: token.issuedAt, generation: tokens.generation };
    pending.set(token.jti, entry);
    const settled = () => {
      if (pending.get(token.jti) === entry) pending.delete(token.jti);
    };
    lookup.then(settled, settled);
    return lookup;
  }

  async function joinUser(userId: number, token: TokenFacts): Promise<PrincipalLookup> {
    const inFlight = pendingUsers.get(userId);
    if (inFlight !== undefined && inFlight.generation === users.generation) {
      hits++;
      const user = await inFlight.facts;
      // The set may have stopped being trusted meanwhile: then this token is asked about.
      return inMemory(userId, token) ? judge(user, token) : joinToken(userId, token);
    }
    const lookup = query(userId, token);
    const entry: PendingUser = { facts: lookup.then((result) => result.user), generation: users.generation };
    pendingUsers.set(userId, entry);
    const settled = () => {
      if (pendingUsers.get(userId) === entry) pendingUsers.delete(userId);
    };
    entry.facts.then(settled, settled);
    const result = await lookup;
    // The database's answer for this token, and what was revoked since it read.
    return result.lookup.status === "ok" && revoked.has(token.jti) ? REVOKED : result.lookup;
  }

  // Declared here, used by the functions above only once it exists: an event
  // delivered during start-up reaches `apply`, which does not look at it.
  const subscription = await invalidationsFor(database, apply, {
    now: users.enabled && listen,
    onDemand: listen,
    ...(options.subscribe !== undefined && { options: options.subscribe }),
  });
  // Read-your-writes: this process's own revocations reach the set (and drop
  // the user) at once, before their notification comes back.
  const stopLocal = users.enabled
    ? onLocalRevocation((revocation) => {
        for (const row of revocation.tokens) revoked.add(row.jti, row.expiresAtMs);
        for (const userId of revocation.userIds) {
          const until = now() + LOCAL_CHANGE_DISTRUST_MS;
          // Bounded: entries older than the bound go whenever another comes.
          for (const [id, at] of distrusted) if (at <= until - LOCAL_CHANGE_DISTRUST_MS) distrusted.delete(id);
          distrusted.set(userId, until);
          apply({ kind: "user", userId });
        }
      })
    : () => {};
  if (users.enabled && listen) {
    // Down: what the set holds may miss revocations. Back: reload it first.
    subscription.onStateChange(() => void resync());
    await resync();
  }

  return {
    // A hand-made event is applied like one from the database: a `token`
    // event's jti is revoked in memory until its row has been read (no row:
    // not revoked, as the database would answer).
    invalidate: apply,
    maxAgeMs,
    get notifications() {
      return subscription.state;
    },
    onNotificationsChange: (listener) => subscription.onStateChange(listener),
    get size() {
      return users.size + tokens.size;
    },
    get revokedTokens() {
      revoked.prune(now());
      return revoked.size;
    },
    get revocationsInMemory() {
      return trusted();
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
    close() {
      closed = true;
      stopLocal();
      syncEpoch++;
      synced = false;
      return subscription.close();
    },
    reload: fetchAndStore,
    peek(userId, token) {
      const lookup = cached(userId, token);
      if (lookup !== undefined) hits++;
      return lookup;
    },
    async load(userId, token) {
      if (!users.enabled) {
        misses++;
        return loadPrincipal(database.db, userId, token);
      }
      const lookup = cached(userId, token);
      if (lookup !== undefined) {
        hits++;
        return lookup;
      }
      return inMemory(userId, token) ? joinUser(userId, token) : joinToken(userId, token);
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
