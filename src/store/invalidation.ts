import postgres from "postgres";
import type { Database } from "./database.js";

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

/** A running subscription; `close()` stops listening. */
export interface InvalidationSubscription {
  close(): Promise<void>;
}

/** Options for {@link subscribeInvalidations}. */
export interface SubscribeOptions {
  /** First wait before listening again after the connection dropped, ms. Default 100. */
  retryMinMs?: number;
  /** Longest wait between attempts, ms. Default 5000. */
  retryMaxMs?: number;
}

/**
 * Subscribes to invalidation events: LISTEN on PostgreSQL, or PGlite's
 * in-process notifications.
 *
 * On PostgreSQL the subscription has a connection of its own. When it
 * drops, notifications sent meanwhile are lost, so `all` is reported at
 * once, and LISTEN is retried with backoff until it holds again (reported
 * with another `all`). postgres.js's own `listen` tries to re-listen only
 * once, and a database that is still down would leave caches deaf for good.
 *
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
    return { close: async () => (pg.closed ? undefined : unsubscribe()) };
  }

  const retryMinMs = options.retryMinMs ?? 100;
  const retryMaxMs = options.retryMaxMs ?? 5000;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let delay = retryMinMs;
  const listener = postgres({
    ...client.sql.options,
    max: 1,
    idle_timeout: null,
    max_lifetime: null,
    fetch_types: false,
    onnotice: () => {},
    onnotify(channel: string, payload: string) {
      if (channel === INVALIDATION_CHANNEL) deliver(payload);
    },
    onclose() {
      if (closed) return;
      onEvent({ kind: "all" });
      schedule();
    },
  } as unknown as postgres.Options<Record<string, never>>);

  const listen = () => listener.unsafe(`listen "${INVALIDATION_CHANNEL}"`);
  function schedule(): void {
    if (closed || retry !== undefined) return;
    retry = setTimeout(() => {
      retry = undefined;
      listen().then(
        () => {
          delay = retryMinMs;
          onEvent({ kind: "all" });
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
  } catch (error) {
    await listener.end({ timeout: 0 });
    throw error;
  }
  return {
    async close() {
      closed = true;
      clearTimeout(retry);
      await listener.end({ timeout: 1 });
    },
  };
}
