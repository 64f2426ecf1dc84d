import { PGlite } from "@electric-sql/pglite";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import postgres from "postgres";
import { acquireDataDirLock, isDataDirHeldHere, type DataDirLock } from "./data-dir-lock.js";
import { connectToDataDirHolder, shareDataDir, type DataDirShare } from "./data-dir-socket.js";
import { StoreError } from "./errors.js";
import * as schema from "./schema.js";
import { postgresDatabase, type Database, type DrizzleDb } from "./database-handle.js";

/** Where {@link openDatabase} connects. */
export interface OpenDatabaseOptions {
  /**
   * A PostgreSQL connection URL (`postgres://user:pass@host:5432/db`). When
   * given, postgres.js is used and `dataDir` / `pglite` are ignored.
   */
  url?: string | undefined;
  /**
   * protoguard's data directory, used when no `url` is given: PGlite keeps
   * its files in `<dataDir>/pgdata`, and the CLI its development secret
   * beside them, so `openDatabase({ dataDir })` and the CLI with
   * `PROTOGUARD_DATA_DIR` set to the same path share one database. A
   * directory that holds PGlite's files itself (`<dataDir>/PG_VERSION`, as
   * `openDatabase` laid it out before) is used as it is. Created if missing.
   *
   * One process at a time: while a process has the directory open, others
   * (and a second open in the same process) fail with a `StoreError`
   * `DATA_DIR_LOCKED` naming it. The lock is a file in the PGlite directory,
   * removed on `close()` or when the process exits; one left by a killed
   * process is recovered.
   *
   * Default: none, which means an in-memory database (`memory://`) that is
   * gone on close, and no lock.
   */
  dataDir?: string | undefined;
  /**
   * How this process is described to another that finds `dataDir` in use
   * ("in use by process 1234 (protoguard serve)"). Default: the script's
   * file name and up to two arguments after it, stopping at the first option
   * so that no flag value is recorded.
   */
  processName?: string | undefined;
  /**
   * An already created PGlite instance to use instead of opening one (it
   * wins over `dataDir`). Not locked: the caller owns it.
   */
  pglite?: PGlite;
  /**
   * postgres.js pool size: the most connections this process opens on `url` for queries (the
   * invalidation subscription has one more of its own). Default: the URL's `max` parameter
   * (`postgres://…/db?max=4`), else 10. Ignored for PGlite (one connection).
   */
  max?: number | undefined;
  /**
   * Use named prepared statements (postgres.js's `prepare`). A transaction-pooling PgBouncer
   * (1.18, Debian's) hands each transaction to any server connection, where a statement
   * prepared on another one does not exist: set `false` behind one. Default: the URL's `prepare`
   * parameter (`?prepare=false`), else `false` when {@link listenUrl} is set (which says `url`
   * goes through a pooler), else `true`.
   */
  prepare?: boolean | undefined;
  /**
   * A direct (or session-pooled) connection URL for the LISTEN connection of cache
   * invalidation, when `url` goes through a transaction-pooling PgBouncer: there LISTEN lands on
   * a pooled server connection and notifications never arrive. Must reach the same database as
   * `url` (the start-up notification round trip checks it). Default: none, LISTEN over `url`.
   */
  listenUrl?: string | undefined;
  /**
   * With `dataDir`: serve the embedded database to other local processes
   * while this one holds it, on a Unix socket in the PGlite directory
   * (`<dataDir>/pgdata/.s.PGSQL.5432`, mode 0600), so that the CLI works
   * beside a running server (see `joinHolder`). Default true; not on Windows.
   */
  share?: boolean | undefined;
  /**
   * With `dataDir`: when another process holds the directory and shares it
   * (`share`), connect to it over its socket instead of failing with
   * `DATA_DIR_LOCKED`; the result is then a `postgres` driver Database whose
   * writes the holder's caches see at once. The CLI sets this for every
   * command but `serve`. Default false, so a second server on one directory
   * is still refused.
   */
  joinHolder?: boolean | undefined;
}

/** Subdirectory of a data directory where PGlite keeps its files. */
export const PGLITE_DIR = "pgdata";

/** Default postgres.js pool size. */
const DEFAULT_POOL_SIZE = 10;
/**
 * Seconds to wait for a TCP connection. postgres.js defaults to 30 s, far
 * beyond any RPC deadline; an unreachable database should fail fast so
 * callers answer UNAVAILABLE quickly.
 */
const CONNECT_TIMEOUT_SECONDS = 5;

/**
 * Seconds postgres.js waits before reconnecting after failed attempts (its own backoff grows
 * to 20 s, so a pool could stay down 20 s after the database came back): 50 ms doubling, at
 * most 2 s, with jitter.
 */
export function reconnectBackoffSeconds(retries: number): number {
  return Math.min(0.05 * 2 ** retries, 2) * (0.75 + Math.random() / 4);
}

/**
 * The pool size and statement preparation for `options`: the option, else the URL's parameter,
 * else the default.
 *
 * @throws {RangeError} if `max` (option or URL) is not a positive integer.
 */
function poolSettings(url: string, options: OpenDatabaseOptions): { max: number; prepare: boolean } {
  let params: URLSearchParams | undefined;
  try {
    params = new URL(url).searchParams;
  } catch {
    params = undefined; // postgres.js reports a malformed URL itself
  }
  const rawMax = params?.get("max");
  const max = options.max ?? (rawMax === null || rawMax === undefined ? DEFAULT_POOL_SIZE : Number(rawMax));
  if (!Number.isInteger(max) || max < 1) {
    throw new RangeError(`invalid pool size ${String(options.max ?? rawMax)}: expected a positive integer`);
  }
  const rawPrepare = params?.get("prepare");
  const prepare =
    options.prepare ??
    (rawPrepare === null || rawPrepare === undefined
      ? options.listenUrl === undefined
      : !["false", "disable", "0", "off"].includes(rawPrepare.toLowerCase()));
  return { max, prepare };
}

/**
 * Opens protoguard's database: PostgreSQL through postgres.js when
 * `options.url` is set, otherwise PGlite (embedded Postgres in WASM), either
 * the given `options.pglite` instance, one in `options.dataDir`, or in memory.
 * It does not migrate; call `migrateDatabase` for that. The library never
 * reads the environment: callers turn `DATABASE_URL` and the like into
 * options.
 *
 * Defaults: pool size 10 (or the URL's `max`), prepared statements unless
 * `listenUrl` is set (or the URL says `prepare=false`), connect timeout 5 s,
 * reconnect backoff at most 2 s, server notices silenced, PGlite in memory.
 *
 * @throws {RangeError} if `max` is not a positive integer.
 * @throws {StoreError} `DATA_DIR_LOCKED` if another process, or this one,
 *   has `dataDir` open; `DATA_DIR_AMBIGUOUS` if `dataDir` holds PGlite
 *   files both itself and in `pgdata`.
 */
export async function openDatabase(options: OpenDatabaseOptions = {}): Promise<Database> {
  if (options.url !== undefined) {
    const { max, prepare } = poolSettings(options.url, options);
    const sql = postgres(options.url, {
      max,
      prepare,
      connect_timeout: CONNECT_TIMEOUT_SECONDS,
      backoff: reconnectBackoffSeconds,
      // Notices ("relation already exists, skipping" from idempotent DDL)
      // would otherwise go to console.log.
      onnotice: () => {},
    });
    // postgres.js fetches the array types on every new connection, in a
    // promise of its own that nobody awaits: a pooler ending that connection
    // (PgBouncer's query_wait_timeout) rejects it unhandled, which ends the
    // process. The types are the same for every connection and kept in the
    // pool's shared parsers, so once one connection has them, later ones skip it.
    sql.unsafe("select 1", [], { prepare: false }).then(
      () => void ((sql.options as { fetch_types: boolean }).fetch_types = false),
      () => {},
    );
    return postgresDatabase(sql, options.listenUrl);
  }

  if (options.pglite !== undefined || options.dataDir === undefined) {
    const owned = options.pglite === undefined;
    const pg = options.pglite ?? (await PGlite.create("memory://"));
    return pgliteDatabase(pg, () => (owned && !pg.closed ? pg.close() : Promise.resolve()));
  }

  const dir = pgliteDirectory(options.dataDir);
  await mkdir(dir, { recursive: true });
  // Before PGlite starts: a refused opener must not touch the files.
  let lock: DataDirLock;
  try {
    lock = await acquireDataDirLock(dir, {
      displayDir: options.dataDir,
      processName: options.processName,
    });
  } catch (error) {
    const joined = options.joinHolder === true ? await joinHolder(dir, error) : undefined;
    if (joined !== undefined) return joined;
    throw error;
  }
  let pg: PGlite;
  let share: DataDirShare | undefined;
  try {
    pg = await PGlite.create(dir);
    if (options.share ?? true) share = await shareDataDir(pg, dir);
  } catch (error) {
    lock.release();
    throw error;
  }
  return pgliteDatabase(pg, async () => {
    lock.markClosing();
    try {
      await share?.close();
      if (!pg.closed) await pg.close();
    } finally {
      lock.release();
    }
  });
}

/** The holder of `dir` over its socket, when `error` says another process holds it and it shares. */
async function joinHolder(dir: string, error: unknown): Promise<Database | undefined> {
  if (!(error instanceof StoreError && error.code === "DATA_DIR_LOCKED") || isDataDirHeldHere(dir)) return undefined;
  return connectToDataDirHolder(dir);
}

function pgliteDatabase(pg: PGlite, close: () => Promise<void>): Database {
  const db: DrizzleDb = drizzlePglite({ client: pg, schema });
  let closing: Promise<void> | undefined;
  return { db, driver: "pglite", client: { kind: "pglite", pg }, close: () => (closing ??= close()) };
}

/**
 * Where PGlite keeps its files for a data directory: `<dataDir>/pgdata`,
 * unless `dataDir` holds them itself, the way `openDatabase` laid them out
 * before it agreed with the CLI; such a directory keeps working in place.
 */
function pgliteDirectory(dataDir: string): string {
  const nested = join(dataDir, PGLITE_DIR);
  if (!existsSync(join(dataDir, "PG_VERSION"))) return nested;
  if (existsSync(join(nested, "PG_VERSION"))) {
    // Both layouts were written (an app on the old openDatabase and the CLI
    // on one path): picking either would hide the other's users.
    throw new StoreError(
      "DATA_DIR_AMBIGUOUS",
      `${dataDir} holds two embedded databases, one in ${dataDir} itself and one in ${nested}; ` +
        "move the one you do not need elsewhere",
    );
  }
  return dataDir;
}
