import { PGlite } from "@electric-sql/pglite";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import * as schema from "./schema.js";

/**
 * A Drizzle database over protoguard's schema, whichever driver is behind it.
 * Both `drizzle-orm/postgres-js` and `drizzle-orm/pglite` databases (and
 * transactions opened on them) fit this type, so store code is written once.
 */
export type DrizzleDb = PgDatabase<PgQueryResultHKT, typeof schema>;

/**
 * The driver-level client under a {@link Database}, for the few things Drizzle
 * does not cover (LISTEN/NOTIFY for cache invalidation, advisory locks).
 */
export type DatabaseClient =
  | { readonly kind: "postgres"; readonly sql: postgres.Sql }
  | { readonly kind: "pglite"; readonly pg: PGlite };

/** An open protoguard database: a Drizzle handle plus what it runs on. */
export interface Database {
  /** The query handle every store function takes. */
  readonly db: DrizzleDb;
  /** Which driver is in use: a PostgreSQL server (postgres.js) or embedded PGlite. */
  readonly driver: "postgres" | "pglite";
  /** The underlying driver client; an escape hatch for LISTEN/NOTIFY. */
  readonly client: DatabaseClient;
  /**
   * Closes the pool (postgres) or the PGlite instance this database opened.
   * A PGlite instance passed in by the caller is left open: the caller owns
   * it. Safe to call more than once.
   */
  close(): Promise<void>;
}

/** Where {@link openDatabase} connects. */
export interface OpenDatabaseOptions {
  /**
   * A PostgreSQL connection URL (`postgres://user:pass@host:5432/db`). When
   * given, postgres.js is used and `dataDir` / `pglite` are ignored.
   */
  url?: string;
  /**
   * PGlite data directory, used when no `url` is given. Default: none, which
   * means an in-memory database (`memory://`) that is gone on close.
   */
  dataDir?: string;
  /** An already created PGlite instance to use instead of opening one. */
  pglite?: PGlite;
  /** postgres.js pool size. Default 10. Ignored for PGlite (one connection). */
  max?: number;
}

/** Default postgres.js pool size. */
const DEFAULT_POOL_SIZE = 10;
/**
 * Seconds to wait for a TCP connection. postgres.js defaults to 30 s, far
 * beyond any RPC deadline; an unreachable database should fail fast so
 * callers answer UNAVAILABLE quickly.
 */
const CONNECT_TIMEOUT_SECONDS = 5;

/**
 * Opens protoguard's database: PostgreSQL through postgres.js when
 * `options.url` is set, otherwise PGlite (embedded Postgres in WASM), either
 * the given `options.pglite` instance, one in `options.dataDir`, or in memory.
 * It does not migrate; call `migrateDatabase` for that. The library never
 * reads the environment: callers turn `DATABASE_URL` and the like into
 * options.
 *
 * Defaults: pool size 10, connect timeout 5 s, server notices silenced,
 * PGlite in memory.
 *
 * @throws {RangeError} if `max` is not a positive integer.
 */
export async function openDatabase(options: OpenDatabaseOptions = {}): Promise<Database> {
  if (options.url !== undefined) {
    const max = options.max ?? DEFAULT_POOL_SIZE;
    if (!Number.isInteger(max) || max < 1) {
      throw new RangeError(`invalid pool size ${String(options.max)}: expected a positive integer`);
    }
    const sql = postgres(options.url, {
      max,
      connect_timeout: CONNECT_TIMEOUT_SECONDS,
      // Notices ("relation already exists, skipping" from idempotent DDL)
      // would otherwise go to console.log.
      onnotice: () => {},
    });
    const db: DrizzleDb = drizzlePostgres({ client: sql, schema });
    let closing: Promise<void> | undefined;
    return {
      db,
      driver: "postgres",
      client: { kind: "postgres", sql },
      close: () => (closing ??= sql.end({ timeout: 5 })),
    };
  }

  const owned = options.pglite === undefined;
  const pg = options.pglite ?? (await PGlite.create(options.dataDir ?? "memory://"));
  const db: DrizzleDb = drizzlePglite({ client: pg, schema });
  let closing: Promise<void> | undefined;
  return {
    db,
    driver: "pglite",
    client: { kind: "pglite", pg },
    close: () => (closing ??= owned && !pg.closed ? pg.close() : Promise.resolve()),
  };
}
