/**
 * Applies the example's migrations (example/drizzle) with Drizzle's own
 * migrator, into a journal of its own so that protoguard's journal
 * (`drizzle.__drizzle_migrations`) and the application's never mix: each
 * side can add migrations without renumbering the other's.
 */
import { fileURLToPath } from "node:url";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import type { Database } from "../src/store/index.js";

/** The journal table of the example's migrations, in Drizzle's `drizzle` schema. */
export const EXAMPLE_MIGRATIONS_TABLE = "__example_migrations";

// Resolved from this module so the migrations are found from any cwd.
const MIGRATIONS_FOLDER = fileURLToPath(new URL("./drizzle", import.meta.url));

// "exmigrat" in ASCII; distinct from protoguard's own migration lock.
const LOCK_KEY = 0x65786d6967726174n;

/**
 * Applies pending example migrations. Needs protoguard's tables first
 * (`migrateDatabase`): orders reference `users`. Idempotent.
 *
 * On PostgreSQL, instances starting together are serialized with an
 * advisory lock held on a reserved connection, so each migration runs once;
 * the pool therefore needs at least 2 connections (the default is 10).
 */
export async function migrateExample(database: Database): Promise<void> {
  const config = { migrationsFolder: MIGRATIONS_FOLDER, migrationsTable: EXAMPLE_MIGRATIONS_TABLE };
  const { client } = database;
  if (client.kind === "pglite") {
    await migratePglite(drizzlePglite({ client: client.pg }), config);
    return;
  }
  const { sql } = client;
  const lock = await sql.reserve();
  try {
    await lock`select pg_advisory_lock(${LOCK_KEY.toString()}::bigint)`;
    try {
      await migratePostgres(drizzlePostgres({ client: sql }), config);
    } finally {
      await lock`select pg_advisory_unlock(${LOCK_KEY.toString()}::bigint)`;
    }
  } finally {
    lock.release();
  }
}
