import { createHash, randomBytes } from "node:crypto";
import { lstat, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { readFileSync, readlinkSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import postgres from "postgres";
import { openDatabase } from "../store/database.js";
import { postgresDatabase, type Database } from "../store/database-handle.js";
import { MIGRATIONS_FOLDER, migrateDatabase } from "../store/migrate.js";

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
  url?: string | undefined;
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
 * PGlite's start parameters with a smaller buffer pool. The default 128 MB
 * `shared_buffers` is zeroed at every start, which is most of the start-up
 * time of a copied data directory; a test database holds a few hundred rows.
 */
const TEST_PGLITE_START_PARAMS: readonly string[] = [...PGlite.defaultStartParams, "-c", "shared_buffers=16MB"];

/**
 * Creates an isolated database for tests, migrated unless `migrate: false`:
 * - `pglite`: a new in-memory PGlite, started from a snapshot of a
 *   migrated data directory (well under a second on an idle machine). The
 *   snapshot is built once (initdb and the migrations: a few seconds), kept
 *   for the process, and cached in `<tmpdir>/protoguard-test-<uid>/` for
 *   later processes, keyed by the migrations and the PGlite version. Each
 *   fixture is its own PostgreSQL instance, so nothing is shared between
 *   fixtures, and `close()` ends it. To start faster, these instances run with a 16 MB
 *   buffer pool and without the `template0`/`template1` databases, which
 *   nothing can use on PGlite anyway.
 * - `postgres`: a brand-new database
 *   `protoguard_test_<host>_<pid>_<created>_<random>` on the server behind
 *   `options.url`; `close()` drops it `WITH (FORCE)`, so runs never see each
 *   other's rows and leave nothing behind. Should nobody close it, it never
 *   keeps the process alive (idle connections end after a second) and is
 *   dropped when the process has nothing else to do (`beforeExit`). The
 *   first call of a process also drops the test databases of runs that were
 *   killed: made on this machine by a process that is gone, or more than an
 *   hour old. A migrated one is
 *   created as a copy of `protoguard_template_<hash of the migrations>`,
 *   which the first caller on that server builds (under an advisory lock, so
 *   concurrent processes build it once) and which is kept for later runs; a
 *   changed migration gives a new hash and so a new template.
 *
 * @throws {TypeError} for `driver: "postgres"` without a `url`.
 */
export async function createTestDatabase(options: TestDatabaseOptions = {}): Promise<TestDatabase> {
  const driver = options.driver ?? (options.url === undefined ? "pglite" : "postgres");
  const migrate = options.migrate ?? true;

  if (driver === "pglite") {
    const pg = migrate ? await migratedPglite() : await PGlite.create({ startParams: [...TEST_PGLITE_START_PARAMS] });
    // openDatabase leaves a PGlite passed in open; this fixture owns it.
    const database = await openDatabase({ pglite: pg });
    let closing: Promise<void> | undefined;
    return withDispose(database, undefined, () => (closing ??= pg.closed ? Promise.resolve() : pg.close()));
  }

  if (options.url === undefined) {
    throw new TypeError('createTestDatabase({ driver: "postgres" }) needs a url to a maintenance database');
  }
  const maintenanceUrl = options.url;
  const name = testDatabaseName();
  await sweepStaleOnce(maintenanceUrl);
  const template = migrate ? await postgresTemplate(maintenanceUrl) : undefined;
  // Names are made of hex digits only, so quoting them is enough.
  await withMaintenance(maintenanceUrl, (sql) =>
    sql.unsafe(`create database "${name}"${template === undefined ? "" : ` template "${template}"`}`),
  );
  const dropDatabase = () =>
    withMaintenance(maintenanceUrl, (sql) => sql.unsafe(`drop database if exists "${name}" with (force)`));

  const url = databaseUrl(maintenanceUrl, name);
  let database: Database;
  try {
    database = openTestPool(url);
  } catch (error) {
    await dropDatabase();
    throw error;
  }
  let closing: Promise<void> | undefined;
  const close = () => {
    unclosed.delete(close);
    return (closing ??= database.close().finally(dropDatabase));
  };
  // Forgotten close(): once nothing else keeps the process alive (the pool's
  // idle connections end after IDLE_SECONDS), drop the database anyway, so a
  // test file still ends by itself and leaves nothing behind.
  unclosed.add(close);
  if (!dropAtExitInstalled) {
    dropAtExitInstalled = true;
    process.on("beforeExit", () => {
      for (const forgotten of unclosed) void forgotten().catch(() => {});
    });
  }
  return withDispose(database, url, close);
}

/** PostgreSQL test databases not closed yet, by their close. */
const unclosed = new Set<() => Promise<void>>();
let dropAtExitInstalled = false;

/**
 * Seconds after which an idle connection of a test database's pool is
 * closed, so that a pool nobody closed does not keep `node --test` waiting.
 */
const IDLE_SECONDS = 1;

/** A postgres.js pool on a test database that lets the process end when idle. */
function openTestPool(url: string): Database {
  const sql = postgres(url, { max: 10, connect_timeout: 5, idle_timeout: IDLE_SECONDS, onnotice: () => {} });
  return postgresDatabase(sql);
}

/**
 * Test databases older than this, from another machine (or one whose owner
 * cannot be checked), count as left by a killed run.
 */
const STALE_AFTER_MS = 60 * 60 * 1000;

/**
 * This machine, process namespace and boot, in six hex digits: only on the
 * same one does a pid in a database name say whether its owner still runs.
 */
const HOST_KEY = createHash("sha256")
  .update(JSON.stringify([hostname(), readQuietly("/proc/sys/kernel/random/boot_id"), pidNamespace()]))
  .digest("hex")
  .slice(0, 6);

/**
 * `protoguard_test_<host>_<pid>_<created>_<random>`: who made it and when
 * (pid and seconds in base 36), so the next run can tell a killed run's
 * database from a running one's.
 */
function testDatabaseName(): string {
  const created = Math.floor(Date.now() / 1000).toString(36);
  return `protoguard_test_${HOST_KEY}_${process.pid.toString(36)}_${created}_${randomBytes(4).toString("hex")}`;
}

const NAME_PATTERN = /^protoguard_test_([0-9a-f]{6})_([0-9a-z]+)_([0-9a-z]+)_[0-9a-f]{8}$/;
/** The names createTestDatabase gave before they said who made them. */
const LEGACY_NAME_PATTERN = /^protoguard_test_[0-9a-f]{16}$/;

/** Whether a test database, by its name (and, for old names, its age), belongs to a run that is gone. */
function isStale(name: string, createdMs: number | undefined, now: number): boolean {
  const parts = NAME_PATTERN.exec(name);
  if (parts === null) {
    return LEGACY_NAME_PATTERN.test(name) && createdMs !== undefined && now - createdMs > STALE_AFTER_MS;
  }
  const [, host, pid, created] = parts as unknown as [string, string, string, string];
  if (host === HOST_KEY && !isAlive(Number.parseInt(pid, 36))) return true;
  return now - Number.parseInt(created, 36) * 1000 > STALE_AFTER_MS;
}

function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

/** Per process and server: the sweep, once. */
const sweeps = new Map<string, Promise<void>>();

function sweepStaleOnce(maintenanceUrl: string): Promise<void> {
  let pending = sweeps.get(maintenanceUrl);
  if (pending === undefined) {
    // Never fails a test: the sweep is housekeeping.
    pending = sweepStale(maintenanceUrl).catch(() => {});
    sweeps.set(maintenanceUrl, pending);
  }
  return pending;
}

/**
 * Drops the `protoguard_test_*` databases of runs that are gone: made on
 * this machine by a process that no longer exists, or older than an hour.
 * Without FORCE: a database someone is still connected to stays.
 */
async function sweepStale(maintenanceUrl: string): Promise<void> {
  await withMaintenance(maintenanceUrl, async (sql) => {
    const rows = await sql<{ datname: string; oid: number }[]>`
      select datname, oid::int as oid from pg_database where datname like 'protoguard\_test\_%'`;
    const now = Date.now();
    for (const { datname, oid } of rows) {
      const createdMs = LEGACY_NAME_PATTERN.test(datname) ? await legacyCreatedMs(sql, oid) : undefined;
      if (!isStale(datname, createdMs, now)) continue;
      // Names matched the patterns above: letters, digits and underscores only.
      await sql.unsafe(`drop database if exists "${datname}"`).catch(() => {});
    }
  });
}

/** When a database's directory was made, where the server lets us look (superuser or pg_read_server_files). */
async function legacyCreatedMs(sql: postgres.Sql, oid: number): Promise<number | undefined> {
  try {
    const [row] = await sql<{ modification: Date | null }[]>`
      select (pg_stat_file('base/' || ${oid}::text || '/PG_VERSION', true)).modification`;
    return row?.modification?.getTime();
  } catch {
    return undefined;
  }
}

function readQuietly(file: string): string {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return "";
  }
}

function pidNamespace(): string {
  try {
    return readlinkSync("/proc/self/ns/pid");
  } catch {
    return "";
  }
}

/**
 * The migrated PGlite data directory as an uncompressed tarball, once per
 * process. A failed attempt is forgotten so the next call retries.
 */
let pgliteSnapshot: Promise<Blob> | undefined;

/**
 * A new, migrated in-memory PGlite started from a copy of the snapshot. The
 * first call of a process gets the snapshot from the on-disk cache or builds
 * it, and is handed the instance it loaded or built (taken before anyone
 * wrote to it); later calls copy the snapshot.
 */
async function migratedPglite(): Promise<PGlite> {
  if (pgliteSnapshot === undefined) {
    const pending = loadOrBuildSnapshot();
    // Set before any await, so concurrent callers wait for this one.
    const snapshot = pending.then(({ snapshot }) => snapshot);
    pgliteSnapshot = snapshot;
    snapshot.catch(() => {
      if (pgliteSnapshot === snapshot) pgliteSnapshot = undefined;
    });
    return (await pending).first;
  }
  return PGlite.create({ loadDataDir: await pgliteSnapshot, startParams: [...TEST_PGLITE_START_PARAMS] });
}

/**
 * The snapshot from the cache file when there is a usable one, else a new
 * one (written to the cache for the next process), plus an instance
 * started from it.
 */
async function loadOrBuildSnapshot(): Promise<{ snapshot: Blob; first: PGlite }> {
  const file = await snapshotCacheFile();
  if (file !== undefined) {
    const bytes = await readFile(file).catch(() => undefined);
    if (bytes !== undefined) {
      const snapshot = new Blob([bytes]);
      try {
        return {
          snapshot,
          first: await PGlite.create({ loadDataDir: snapshot, startParams: [...TEST_PGLITE_START_PARAMS] }),
        };
      } catch {
        // An unreadable cache file: build a new one over it.
      }
    }
  }
  const pg = await PGlite.create({ startParams: [...TEST_PGLITE_START_PARAMS] });
  let snapshot: Blob;
  try {
    await migrateDatabase(await openDatabase({ pglite: pg }));
    // Each copy unpacks every file of the snapshot, and the two template
    // databases are two thirds of them: a test database never runs
    // CREATE DATABASE (one PGlite instance serves one database), so they go.
    // One statement per call: DROP DATABASE refuses a multi-statement string.
    await pg.exec("update pg_database set datistemplate = false where datname in ('template0', 'template1')");
    await pg.exec("drop database template0");
    await pg.exec("drop database template1");
    await pg.exec("checkpoint");
    snapshot = await pg.dumpDataDir("none");
  } catch (error) {
    await pg.close();
    throw error;
  }
  if (file !== undefined) {
    // Written whole under a unique name, then renamed: a reader never sees
    // half a file, and concurrent writers of the same key write the same.
    const partial = `${file}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`;
    await writeFile(partial, new Uint8Array(await snapshot.arrayBuffer()), { mode: 0o600 })
      .then(() => rename(partial, file))
      .catch(() => rm(partial, { force: true })); // the cache is an optimization only
  }
  return { snapshot, first: pg };
}

/** Bump when the snapshot's content changes in a way the key does not capture. */
const SNAPSHOT_FORMAT = 1;

/**
 * Where the snapshot for the current migrations, PGlite version and start
 * parameters is cached across processes: `<tmpdir>/protoguard-test-<uid>/
 * pglite-<hash>.tar`. Undefined (no caching) when that directory cannot be
 * made private to this user, so no other local user can plant a snapshot.
 */
async function snapshotCacheFile(): Promise<string | undefined> {
  try {
    const uid = process.getuid?.();
    const dir = join(tmpdir(), `protoguard-test-${uid ?? "user"}`);
    await mkdir(dir, { mode: 0o700, recursive: true });
    const info = await lstat(dir);
    if (!info.isDirectory() || (uid !== undefined && info.uid !== uid) || (info.mode & 0o077) !== 0) return undefined;
    const require = createRequire(import.meta.url);
    const pglitePackage = join(dirname(require.resolve("@electric-sql/pglite")), "..", "package.json");
    const { version } = JSON.parse(await readFile(pglitePackage, "utf8")) as { version: string };
    const key = createHash("sha256")
      .update(JSON.stringify([SNAPSHOT_FORMAT, version, TEST_PGLITE_START_PARAMS, await migrationsHash()]))
      .digest("hex")
      .slice(0, 24);
    return join(dir, `pglite-${key}.tar`);
  } catch {
    return undefined;
  }
}

/**
 * Key of the advisory lock under which a template is built ("pgtempl8" in
 * ASCII, beside migrate.ts's "pgmigrat").
 */
const TEMPLATE_LOCK_KEY = 0x706774656d706c38n;

/** Per process and server: the template's name once it is known to exist. */
const postgresTemplates = new Map<string, Promise<string>>();

/**
 * Makes sure the server behind `maintenanceUrl` has a database migrated to
 * the current migrations, to copy with `CREATE DATABASE … TEMPLATE`, and
 * returns its name.
 *
 * The template is built under a temporary name and renamed once complete, so
 * a process killed halfway leaves no half-migrated template behind, and it
 * is closed to connections (`ALLOW_CONNECTIONS false`): PostgreSQL refuses
 * to copy a database anyone is connected to.
 */
function postgresTemplate(maintenanceUrl: string): Promise<string> {
  let pending = postgresTemplates.get(maintenanceUrl);
  if (pending === undefined) {
    pending = buildPostgresTemplate(maintenanceUrl);
    postgresTemplates.set(maintenanceUrl, pending);
    pending.catch(() => postgresTemplates.delete(maintenanceUrl));
  }
  return pending;
}

async function buildPostgresTemplate(maintenanceUrl: string): Promise<string> {
  const template = `protoguard_template_${(await migrationsHash()).slice(0, 16)}`;
  const building = `${template}_building`;
  const exists = async (sql: postgres.Sql) =>
    (await sql`select 1 from pg_database where datname = ${template}`).length > 0;
  await withMaintenance(maintenanceUrl, async (sql) => {
    if (await exists(sql)) return;
    // max: 1, so every statement below runs in the session holding the lock.
    await sql`select pg_advisory_lock(${TEMPLATE_LOCK_KEY.toString()}::bigint)`;
    try {
      if (await exists(sql)) return; // another process built it while we waited
      await sql.unsafe(`drop database if exists "${building}" with (force)`);
      await sql.unsafe(`create database "${building}"`);
      const database = await openDatabase({ url: databaseUrl(maintenanceUrl, building), max: 2 });
      try {
        await migrateDatabase(database);
      } finally {
        await database.close();
      }
      await sql.unsafe(`alter database "${building}" with allow_connections false`);
      await sql.unsafe(`alter database "${building}" rename to "${template}"`);
    } finally {
      await sql`select pg_advisory_unlock(${TEMPLATE_LOCK_KEY.toString()}::bigint)`;
    }
  });
  return template;
}

/** SHA-256 over the names and contents of every file in the migrations folder. */
async function migrationsHash(): Promise<string> {
  const hash = createHash("sha256");
  const entries = await readdir(MIGRATIONS_FOLDER, { recursive: true, withFileTypes: true });
  const files = entries
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
  for (const file of files) {
    hash.update(`${relative(MIGRATIONS_FOLDER, file)}\0`);
    hash.update(await readFile(file));
    hash.update("\0");
  }
  return hash.digest("hex");
}

function databaseUrl(maintenanceUrl: string, name: string): string {
  const target = new URL(maintenanceUrl);
  target.pathname = `/${name}`;
  return target.toString();
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
