import { fileURLToPath } from "node:url";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { readMigrationFiles } from "drizzle-orm/migrator";
import type postgres from "postgres";
import type { Database } from "./database-handle.js";

/**
 * The committed `drizzle-kit generate` output, found relative to this module
 * rather than the working directory so migrations run from any cwd (the CLI,
 * tests, a service started elsewhere).
 */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL("../../drizzle", import.meta.url));

/**
 * Key of the transaction-level advisory lock that serializes migrations
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
 * serialized with `pg_advisory_xact_lock` taken by the one transaction that
 * reads the journal and applies what is pending, so all of them succeed and
 * the migrations are applied once, also through a transaction-pooling
 * PgBouncer. One lock serves every folder: migrations of one database are
 * applied one run at a time.
 *
 * @throws {RangeError} for a `migrationsFolder` without a journal table of its own.
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

  await migratePostgresInOneTransaction(client.sql, config);
}

/**
 * Drizzle's PostgreSQL migrator (same journal table, same rows), in one transaction that first
 * takes `pg_advisory_xact_lock`: the lock lives and dies with the transaction that migrates, so
 * it holds through a transaction-pooling PgBouncer, where a session lock is taken and released on
 * whichever server connections the pooler picks (and leaks onto a pooled one). Statements are
 * sent unprepared, so this works whatever the pool's `prepare` setting.
 */
async function migratePostgresInOneTransaction(
  sql: postgres.Sql,
  config: { migrationsFolder: string; migrationsTable: string },
): Promise<void> {
  const migrations = readMigrationFiles(config);
  const table = `"drizzle"."${config.migrationsTable.replaceAll('"', '""')}"`;
  const run = (tx: postgres.TransactionSql, text: string, params: postgres.ParameterOrJSON<never>[] = []) =>
    tx.unsafe(text, params, { prepare: false });
  await sql.begin(async (tx) => {
    await run(tx, "select pg_advisory_xact_lock($1::bigint)", [MIGRATION_LOCK_KEY.toString()]);
    await run(tx, 'create schema if not exists "drizzle"');
    await run(tx, `create table if not exists ${table} (id serial primary key, hash text not null, created_at bigint)`);
    const [last] = await run(tx, `select id, hash, created_at from ${table} order by created_at desc limit 1`);
    for (const migration of migrations) {
      if (last !== undefined && Number(last["created_at"]) >= migration.folderMillis) continue;
      for (const statement of migration.sql) await run(tx, statement);
      await run(tx, `insert into ${table} ("hash", "created_at") values ($1, $2)`, [
        migration.hash,
        migration.folderMillis,
      ]);
    }
  });
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
