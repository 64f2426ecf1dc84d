/** What an open protoguard database is: the Drizzle handle every store function takes, and the driver under it. */
import type { PGlite } from "@electric-sql/pglite";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import type postgres from "postgres";
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
  | {
      readonly kind: "postgres";
      readonly sql: postgres.Sql;
      /**
       * Where the invalidation subscription LISTENs: `OpenDatabaseOptions.listenUrl`, or
       * undefined to listen over `url` itself.
       */
      readonly listenUrl?: string;
    }
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

/**
 * A {@link Database} over a postgres.js pool it owns: `close` ends the pool (once, however
 * often it is called). `listenUrl` is where invalidations LISTEN, when not over the pool itself.
 */
export function postgresDatabase(sql: postgres.Sql, listenUrl?: string): Database {
  const db: DrizzleDb = drizzle({ client: sql, schema });
  let closing: Promise<void> | undefined;
  return {
    db,
    driver: "postgres",
    client: { kind: "postgres", sql, ...(listenUrl !== undefined && { listenUrl }) },
    close: () => (closing ??= sql.end({ timeout: 5 })),
  };
}
