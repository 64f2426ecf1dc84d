/**
 * Applies the example's migrations (example/drizzle) with protoguard's runner, into a journal of
 * its own so that protoguard's journal (`drizzle.__drizzle_migrations`) and the application's
 * never mix: each side can add migrations without renumbering the other's.
 */
import { fileURLToPath } from "node:url";
import { migrateDatabase, type Database } from "../src/exports/store.js";

/** The journal table of the example's migrations, in Drizzle's `drizzle` schema. */
export const EXAMPLE_MIGRATIONS_TABLE = "__example_migrations";

// Resolved from this module so the migrations are found from any cwd.
const MIGRATIONS_FOLDER = fileURLToPath(new URL("./drizzle", import.meta.url));

/**
 * Applies pending example migrations. Needs protoguard's tables first
 * (`migrateDatabase(database)`): orders reference `users`. Idempotent, and safe for instances
 * starting together on PostgreSQL (see `migrateDatabase`).
 */
export async function migrateExample(database: Database): Promise<void> {
  await migrateDatabase(database, { migrationsFolder: MIGRATIONS_FOLDER, migrationsTable: EXAMPLE_MIGRATIONS_TABLE });
}
