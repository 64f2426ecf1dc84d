import type { Database } from "./database.js";

/**
 * The channel on which the database announces changes that affect who may
 * do what. Triggers (migration `0001_invalidation_triggers`) send on it, so
 * every writer is covered: this server, another instance, the CLI, or a
 * person with psql.
 */
export const INVALIDATION_CHANNEL = "protoguard_invalidate";

/** One change announced on {@link INVALIDATION_CHANNEL}. */
export type InvalidationEvent =
  /** A user row, its grants or its group memberships changed. */
  | { readonly kind: "user"; readonly userId: number }
  /** An access token's jti was revoked. */
  | { readonly kind: "token"; readonly jti: string }
  /**
   * Something that may affect many users changed (a group's or a
   * permission's rows), or notifications may have been missed (the listening
   * connection was re-established): drop everything.
   */
  | { readonly kind: "all" };

/** Parses a notification payload; unknown payloads mean "drop everything", the safe side. */
export function parseInvalidation(payload: string): InvalidationEvent {
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

/**
 * Subscribes to invalidation events: LISTEN on PostgreSQL (a dedicated
 * connection, re-established by postgres.js after a drop, and each
 * re-establishment is reported as `all` since notifications sent meanwhile
 * are lost), or PGlite's in-process notifications.
 *
 * @example
 * ```ts
 * const sub = await subscribeInvalidations(database, (event) => cache.invalidate(event));
 * ```
 */
export async function subscribeInvalidations(
  database: Database,
  onEvent: (event: InvalidationEvent) => void,
): Promise<InvalidationSubscription> {
  const deliver = (payload: string) => onEvent(parseInvalidation(payload));
  const client = database.client;
  if (client.kind === "postgres") {
    let listening = false;
    const meta = await client.sql.listen(INVALIDATION_CHANNEL, deliver, () => {
      if (listening) onEvent({ kind: "all" });
      listening = true;
    });
    return { close: () => meta.unlisten() };
  }
  const unsubscribe = await client.pg.listen(INVALIDATION_CHANNEL, deliver);
  return { close: () => unsubscribe() };
}
