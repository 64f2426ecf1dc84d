import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { reconnectBackoffSeconds } from "./database.js";
import { type Database } from "./database-handle.js";
import { StoreError } from "./errors.js";

/**
 * The channel on which the database announces changes that affect who may
 * do what. Triggers (migration `0001_invalidation_triggers`) send on it, so
 * every writer is covered: this server, another instance, the CLI, or a
 * person with psql.
 */
export const INVALIDATION_CHANNEL = "protoguard_invalidate";

// The event's type lives on floor 1, so adapters that follow invalidations (stream watches)
// name it without reaching the store's drivers, in code and in declarations.
export type { InvalidationEvent } from "../invalidation-event.js";
import type { InvalidationEvent } from "../invalidation-event.js";

/** Parses a notification payload; unknown payloads mean "drop everything", the safe side. */
function parseInvalidation(payload: string): InvalidationEvent {
  if (payload.startsWith("user:")) {
    const userId = Number(payload.slice(5));
    if (Number.isSafeInteger(userId)) return { kind: "user", userId };
  } else if (payload.startsWith("token:")) {
    return { kind: "token", jti: payload.slice(6) };
  }
  return { kind: "all" };
}

/**
 * Whether notifications are known to arrive: `listening` once a notification sent over the
 * query pool came back on the LISTEN connection within the heartbeat bound, `down` while the
 * LISTEN connection is closed or the last heartbeat did not come back in time.
 */
export type NotificationState = "listening" | "down";

/** A running subscription; `close()` stops listening. */
export interface InvalidationSubscription {
  close(): Promise<void>;
  /** Whether notifications arrive now (PGlite: always `listening`). */
  readonly state: NotificationState;
  /**
   * Calls `listener` on every change of {@link state}; returns a function that removes it. A
   * listener must not throw.
   */
  onStateChange(listener: (state: NotificationState, reason: string) => void): () => void;
}

/** Options for {@link subscribeInvalidations}. */
export interface SubscribeOptions {
  /** First wait before listening again after the connection dropped, ms. Default 100. */
  retryMinMs?: number;
  /** Longest wait between attempts, ms. Default 2000. */
  retryMaxMs?: number;
  /**
   * Interval of the notification heartbeat, ms: a NOTIFY sent over the query pool on a channel
   * of this subscription's own, which must come back on the LISTEN connection. Default 1000.
   */
  heartbeatMs?: number;
  /**
   * How long a heartbeat (and the round trip at start-up) may take to come back before
   * notifications are declared down, ms. Default 2000.
   */
  heartbeatTimeoutMs?: number;
}

/** Defaults of {@link SubscribeOptions}. */
export const SUBSCRIBE_DEFAULTS = Object.freeze({
  retryMinMs: 100,
  retryMaxMs: 2000,
  heartbeatMs: 1000,
  heartbeatTimeoutMs: 2000,
});

/**
 * Subscribes to invalidation events: LISTEN on PostgreSQL, or PGlite's
 * in-process notifications.
 *
 * On PostgreSQL the subscription has a connection of its own, on the
 * database's `listenUrl` when it has one (a direct connection, when queries
 * go through a transaction-pooling PgBouncer). Before it resolves, a
 * notification sent over the query pool must come back on that connection
 * within `heartbeatTimeoutMs`, else it fails with `StoreError`
 * `NOTIFICATIONS_UNAVAILABLE`: behind a transaction pooler LISTEN lands on a
 * pooled server connection, and notifications would silently never arrive.
 * While running, the same round trip repeats every `heartbeatMs`.
 *
 * Notifications are `down` when the LISTEN connection drops or a heartbeat
 * does not come back in time; then `all` is reported at once and again at
 * every heartbeat until they are back (so no cache keeps an answer longer
 * than about `heartbeatMs` meanwhile), and once a heartbeat comes back again
 * a last `all` is reported and the state is `listening`. LISTEN is retried
 * with a backoff from `retryMinMs` doubling to `retryMaxMs`. A change whose
 * notification is lost is thus honoured within `heartbeatMs +
 * heartbeatTimeoutMs` (3 s by default), whatever the driver's own reconnect
 * delays.
 *
 * @throws {StoreError} `NOTIFICATIONS_UNAVAILABLE` when the start-up round trip fails.
 * @example
 * ```ts
 * const sub = await subscribeInvalidations(database, (event) => cache.invalidate(event));
 * ```
 */
export async function subscribeInvalidations(
  database: Database,
  onEvent: (event: InvalidationEvent) => void,
  options: SubscribeOptions = {},
): Promise<InvalidationSubscription> {
  const deliver = (payload: string) => onEvent(parseInvalidation(payload));
  const client = database.client;
  if (client.kind === "pglite") {
    const { pg } = client;
    const unsubscribe = await pg.listen(INVALIDATION_CHANNEL, deliver);
    // A closed PGlite has no subscription left to end (and refuses UNLISTEN).
    return {
      close: async () => (pg.closed ? undefined : unsubscribe()),
      state: "listening",
      onStateChange: () => () => {},
    };
  }
  return subscribePostgres(client, deliver, onEvent, options);
}

/** {@link subscribeInvalidations} on a PostgreSQL server: a LISTEN connection of its own, watched by a heartbeat. */
async function subscribePostgres(
  client: Extract<Database["client"], { kind: "postgres" }>,
  deliver: (payload: string) => void,
  onEvent: (event: InvalidationEvent) => void,
  options: SubscribeOptions,
): Promise<InvalidationSubscription> {
  const retryMinMs = options.retryMinMs ?? SUBSCRIBE_DEFAULTS.retryMinMs;
  const retryMaxMs = options.retryMaxMs ?? SUBSCRIBE_DEFAULTS.retryMaxMs;
  const heartbeatMs = options.heartbeatMs ?? SUBSCRIBE_DEFAULTS.heartbeatMs;
  const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? SUBSCRIBE_DEFAULTS.heartbeatTimeoutMs;
  const heartbeats = new Heartbeat(client.sql, heartbeatTimeoutMs);
  let closed = false;
  let connected = false;
  let state: NotificationState = "down";
  let retry: NodeJS.Timeout | undefined;
  let delay = retryMinMs;
  const stateListeners = new Set<(state: NotificationState, reason: string) => void>();

  const setState = (next: NotificationState, reason: string) => {
    if (state === next) return;
    state = next;
    // Down: whatever was cached may have missed a change. Back up: what was
    // cached meanwhile may have too.
    onEvent({ kind: "all" });
    for (const listener of stateListeners) {
      try {
        listener(next, reason);
      } catch {
        // One listener's failure must not keep the others from the news.
      }
    }
  };

  const settings = {
    max: 1,
    idle_timeout: null,
    max_lifetime: null,
    fetch_types: false,
    prepare: false,
    connect_timeout: 5,
    backoff: reconnectBackoffSeconds,
    onnotice: () => {},
    onnotify(channel: string, payload: string) {
      if (channel === INVALIDATION_CHANNEL) deliver(payload);
      else if (channel === heartbeats.channel) heartbeats.received(payload);
    },
    onclose() {
      connected = false;
      if (closed) return;
      setState("down", "connection closed");
      schedule();
    },
  };
  const listener =
    client.listenUrl === undefined
      ? postgres({ ...client.sql.options, ...settings } as unknown as postgres.Options<Record<string, never>>)
      : postgres(client.listenUrl, settings as unknown as postgres.Options<Record<string, never>>);

  const listen = async () => {
    await listener.unsafe(`listen "${INVALIDATION_CHANNEL}"`);
    await listener.unsafe(`listen "${heartbeats.channel}"`);
    connected = true;
  };

  // True until the start-up round trip is done: one heartbeat at a time.
  let beating = true;
  const ticker = setInterval(() => {
    if (closed) return;
    // Still down: drop everything again, so no cache keeps an answer longer
    // than a heartbeat while changes may be missed.
    if (state === "down") onEvent({ kind: "all" });
    if (beating || !connected) return;
    beating = true;
    void heartbeats.send().then((ok) => {
      beating = false;
      if (closed) return;
      if (ok && connected) setState("listening", "heartbeat returned");
      else if (!ok) setState("down", `no heartbeat within ${heartbeatTimeoutMs} ms`);
    });
  }, heartbeatMs);
  ticker.unref();

  function schedule(): void {
    if (closed || retry !== undefined) return;
    retry = setTimeout(() => {
      retry = undefined;
      listen().then(
        () => {
          delay = retryMinMs;
        },
        () => {
          delay = Math.min(delay * 2, retryMaxMs);
          schedule();
        },
      );
    }, delay);
    retry.unref();
  }

  try {
    await listen();
    if (!(await heartbeats.send())) {
      throw new StoreError(
        "NOTIFICATIONS_UNAVAILABLE",
        `invalidation notifications sent on the database did not reach the LISTEN connection within ${heartbeatTimeoutMs} ms` +
          (client.listenUrl === undefined
            ? " (behind a transaction-pooling PgBouncer? give LISTEN a direct connection: PROTOGUARD_LISTEN_DATABASE_URL, or openDatabase's listenUrl)"
            : " (does the listen URL reach the same database, directly or through a session pool?)"),
      );
    }
    state = "listening";
    beating = false;
  } catch (error) {
    closed = true;
    clearInterval(ticker);
    await listener.end({ timeout: 0 });
    throw error;
  }
  return {
    get state() {
      return state;
    },
    onStateChange(stateListener) {
      stateListeners.add(stateListener);
      return () => stateListeners.delete(stateListener);
    },
    async close() {
      closed = true;
      clearTimeout(retry);
      clearInterval(ticker);
      await listener.end({ timeout: 1 });
    },
  };
}

/**
 * Notification round trips over the query pool, answered on the LISTEN
 * connection: on a channel of this subscription's own, so heartbeats reach
 * nobody else, and older instances (which read any unknown payload as "drop
 * everything") never see them. One awaited at a time.
 */
class Heartbeat {
  readonly channel = `protoguard_hb_${randomBytes(8).toString("hex")}`;
  readonly #pool: postgres.Sql;
  readonly #timeoutMs: number;
  #sequence = 0;
  #pending: { readonly payload: string; readonly arrived: () => void } | undefined;

  constructor(pool: postgres.Sql, timeoutMs: number) {
    this.#pool = pool;
    this.#timeoutMs = timeoutMs;
  }

  /** A notification on {@link channel} arrived. */
  received(payload: string): void {
    if (this.#pending?.payload === payload) this.#pending.arrived();
  }

  /** Sends one heartbeat; resolves true when it came back in time. */
  send(): Promise<boolean> {
    const payload = String(++this.#sequence);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        if (this.#pending?.payload === payload) this.#pending = undefined;
        resolve(false);
      }, this.#timeoutMs);
      timer.unref();
      this.#pending = {
        payload,
        arrived: () => {
          this.#pending = undefined;
          clearTimeout(timer);
          resolve(true);
        },
      };
      this.#pool.unsafe("select pg_notify($1, $2)", [this.channel, payload], { prepare: false }).catch(() => {
        // The query pool is failing: the timer says so.
      });
    });
  }
}
