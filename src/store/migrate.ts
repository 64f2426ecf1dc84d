import { fileURLToPath } from "node:url";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import type { Database } from "./database.js";

/**
 * The committed `drizzle-kit generate` output, found relative to this module
 * rather than the working directory so migrations run from any cwd (the CLI,
 * tests, a service started elsewhere).
 */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL("../../drizzle", import.meta.url));

/**
 * Key of the session-level advisory lock that serializes migrations
 * ("pgmigrat" in ASCII, to be recognizable in pg_locks). Without it two
 * processes starting together both see "nothing applied yet", and the second
 * fails on "relation already exists" or on the race inside
 * CREATE SCHEMA IF NOT EXISTS.
 */
const MIGRATION_LOCK_KEY = 0x70676d6967726174n;

/**
 * Applies every pending migration from the package's `drizzle/` folder,
 * using the driver's own Drizzle migrator. Idempotent: applied migrations
 * are recorded in `drizzle.__drizzle_migrations` and skipped.
 *
 * On PostgreSQL, concurrent callers (several processes starting at once) are
 * serialized with `pg_advisory_lock`, so all of them succeed and the
 * migrations are applied once. The lock is held by one reserved pool
 * connection while the migrator uses another, so the pool needs `max >= 2`
 * (the default is 10).
 *
 * @throws {RangeError} on PostgreSQL when the pool has a single connection.
 */
export async function migrateDatabase(database: Database): Promise<void> {
  const { client } = database;
  if (client.kind === "pglite") {
    // One PGlite instance is one connection in one process: nothing to race.
    await migratePglite(drizzlePglite({ client: client.pg }), {
      migrationsFolder: MIGRATIONS_FOLDER,
    });
    return;
  }

  const { sql } = client;
  if (sql.options.max < 2) {
    throw new RangeError("migrateDatabase needs a PostgreSQL pool of at least 2 connections (max >= 2)");
  }
  // The lock must be released on the session that took it, hence a reserved
  // connection; the migrator's transaction needs `begin`, which a reserved
  // connection lacks, so it runs on the rest of the pool.
  const lockConnection = await sql.reserve();
  try {
    await lockConnection`select pg_advisory_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
    try {
      await migratePostgres(drizzlePostgres({ client: sql }), {
        migrationsFolder: MIGRATIONS_FOLDER,
      });
    } finally {
      await lockConnection`select pg_advisory_unlock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
    }
  } finally {
    lockConnection.release();
  }
}
