import { ProtoguardError } from "../errors.js";
import type { Database } from "./database-handle.js";

/** Why {@link pingDatabase} failed when the database did not answer at all. */
export class DatabaseTimeoutError extends ProtoguardError<"DATABASE_TIMEOUT"> {
  constructor(message: string) {
    super("DATABASE_TIMEOUT", message);
  }
}

/**
 * One trivial query (`select 1`) over the database's query pool, failing after `timeoutMs`: the
 * path every lookup takes (a full pool, a stalled pooler or an unreachable server all show here).
 * Sent unprepared, as any pooler needs. A query still queued when the time is up is cancelled.
 *
 * @throws {DatabaseTimeoutError} `DATABASE_TIMEOUT` when no answer came in time; the driver's
 *   own error when it failed.
 */
export async function pingDatabase(database: Database, timeoutMs: number): Promise<void> {
  const { client } = database;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new DatabaseTimeoutError(`the database did not answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  if (client.kind === "pglite") {
    try {
      await Promise.race([client.pg.query("select 1"), timeout]);
    } finally {
      clearTimeout(timer);
    }
    return;
  }
  const query = client.sql.unsafe("select 1", [], { prepare: false });
  try {
    await Promise.race([query, timeout]);
  } catch (error) {
    if (error instanceof DatabaseTimeoutError) {
      query.catch(() => {});
      void Promise.resolve(query.cancel()).catch(() => {});
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
