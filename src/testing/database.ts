import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { openDatabase, type Database } from "../store/database.js";
import { migrateDatabase } from "../store/migrate.js";

/** Options of {@link createTestDatabase}. */
export interface TestDatabaseOptions {
  /**
   * Which engine to run on. Default `"postgres"` when `url` is given,
   * otherwise `"pglite"`.
   */
  driver?: "pglite" | "postgres";
  /**
   * Required for `"postgres"`: a URL of an existing database on the server
   * (e.g. `postgres://postgres@127.0.0.1:5432/postgres`), used only as a
   * maintenance connection to create and drop the throwaway database. The
   * helper reads no environment variables: pass `process.env.DATABASE_URL`
   * yourself.
   */
  url?: string;
  /** Apply migrations before returning. Default true. */
  migrate?: boolean;
}

/**
 * A throwaway database for one test file. `close()` (or `await using`)
 * releases it, and on PostgreSQL drops it.
 */
export type TestDatabase = Database &
  AsyncDisposable & {
    /** On PostgreSQL, the URL of the throwaway database (e.g. to open more pools on it). */
    readonly url?: string;
  };

/**
 * Creates an isolated, migrated database for tests:
 * - `pglite`: a fresh in-memory PGlite (2–5 s to start; share one per file);
 * - `postgres`: a brand-new database `protoguard_test_<random hex>` on the
 *   server behind `options.url`; `close()` drops it `WITH (FORCE)`, so runs
 *   never see each other's rows and leave nothing behind.
 *
 * @throws {TypeError} for `driver: "postgres"` without a `url`.
 */
export async function createTestDatabase(options: TestDatabaseOptions = {}): Promise<TestDatabase> {
  const driver = options.driver ?? (options.url === undefined ? "pglite" : "postgres");
  const migrate = options.migrate ?? true;

  if (driver === "pglite") {
    const database = await openDatabase({});
    if (migrate) await migrateOrClose(database);
    return withDispose(database, undefined, () => database.close());
  }

  if (options.url === undefined) {
    throw new TypeError('createTestDatabase({ driver: "postgres" }) needs a url to a maintenance database');
  }
  const maintenanceUrl = options.url;
  const name = `protoguard_test_${randomBytes(8).toString("hex")}`;
  // The name is generated from hex digits only, so quoting it is enough.
  await withMaintenance(maintenanceUrl, (sql) => sql.unsafe(`create database "${name}"`));
  const dropDatabase = () =>
    withMaintenance(maintenanceUrl, (sql) => sql.unsafe(`drop database if exists "${name}" with (force)`));

  const target = new URL(maintenanceUrl);
  target.pathname = `/${name}`;
  const url = target.toString();
  let database: Database;
  try {
    database = await openDatabase({ url });
    if (migrate) await migrateOrClose(database);
  } catch (error) {
    await dropDatabase();
    throw error;
  }
  let closing: Promise<void> | undefined;
  return withDispose(database, url, () =>
    (closing ??= database.close().finally(dropDatabase)),
  );
}

async function migrateOrClose(database: Database): Promise<void> {
  try {
    await migrateDatabase(database);
  } catch (error) {
    await database.close();
    throw error;
  }
}

async function withMaintenance(url: string, run: (sql: postgres.Sql) => Promise<unknown>): Promise<void> {
  const sql = postgres(url, { max: 1, connect_timeout: 5, onnotice: () => {} });
  try {
    await run(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

function withDispose(database: Database, url: string | undefined, close: () => Promise<void>): TestDatabase {
  return {
    db: database.db,
    driver: database.driver,
    client: database.client,
    ...(url === undefined ? {} : { url }),
    close,
    [Symbol.asyncDispose]: close,
  };
}
