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

/** Drizzle's default journal table (in the `drizzle` schema): protoguard's own journal. */
const PROTOGUARD_MIGRATIONS_TABLE = "__drizzle_migrations";

/** Options of {@link migrateDatabase}, for applying an application's own migrations. */
export interface MigrateOptions {
  /**
   * Folder of `drizzle-kit generate` output to apply. Default: protoguard's own migrations
   * (`MIGRATIONS_FOLDER`).
   */
  migrationsFolder?: string;
  /**
   * Journal table, in Drizzle's `drizzle` schema, recording what was applied. Default
   * `__drizzle_migrations`, protoguard's journal. Required with `migrationsFolder`, and must
   * differ from protoguard's: one journal per folder, so either side can add migrations without
   * renumbering the other's.
   */
  migrationsTable?: string;
}

/**
 * Applies every pending migration from the package's `drizzle/` folder (or, with `options`, an
 * application's own folder into its own journal), using the driver's own Drizzle migrator.
 * Idempotent: applied migrations are recorded in the journal table and skipped. An application
 * whose tables reference protoguard's (`users`) runs this once without options first.
 *
 * On PostgreSQL, concurrent callers (several processes starting at once) are
 * serialized with `pg_advisory_lock`, so all of them succeed and the
 * migrations are applied once. One lock serves every folder: migrations of
 * one database are applied one run at a time. The lock is held by one reserved
 * pool connection while the migrator uses another, so the pool needs `max >= 2`
 * (the default is 10).
 *
 * @throws {RangeError} on PostgreSQL when the pool has a single connection, and for a
 *   `migrationsFolder` without a journal table of its own.
 * @example
 * ```ts
 * await migrateDatabase(database); // protoguard's tables
 * await migrateDatabase(database, { migrationsFolder: "./drizzle", migrationsTable: "__app_migrations" });
 * ```
 */
export async function migrateDatabase(database: Database, options: MigrateOptions = {}): Promise<void> {
  const config = migratorConfig(options);
  const { client } = database;
  if (client.kind === "pglite") {
    // One PGlite instance is one connection in one process: nothing to race.
    await migratePglite(drizzlePglite({ client: client.pg }), config);
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
      await migratePostgres(drizzlePostgres({ client: sql }), config);
    } finally {
      await lockConnection`select pg_advisory_unlock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
    }
  } finally {
    lockConnection.release();
  }
}

/** The Drizzle migrator's configuration for `options`, refusing a folder that would share protoguard's journal. */
function migratorConfig({ migrationsFolder, migrationsTable }: MigrateOptions): {
  migrationsFolder: string;
  migrationsTable: string;
} {
  if (migrationsFolder === undefined) {
    return { migrationsFolder: MIGRATIONS_FOLDER, migrationsTable: migrationsTable ?? PROTOGUARD_MIGRATIONS_TABLE };
  }
  if (migrationsTable === undefined || migrationsTable === PROTOGUARD_MIGRATIONS_TABLE) {
    throw new RangeError(
      "migrateDatabase: migrationsFolder needs a migrationsTable of its own, not protoguard's journal",
    );
  }
  return { migrationsFolder, migrationsTable };
}
