/**
 * Behind a connection pooler (Debian's PgBouncer 1.18, transaction pooling) and within a
 * connection budget: lookups stay correct, invalidation keeps working over a direct LISTEN
 * connection (or start-up is refused when notifications cannot arrive), migrations serialise, and
 * the pool size is configurable. Each test starts its own PgBouncer on a free loopback port.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { sql } from "drizzle-orm";
import { loadConfig } from "../src/runtime/config.js";
import { openRuntime } from "../src/runtime/runtime.js";
import {
  createPrincipalSource,
  createUser,
  grantUserPermissions,
  migrateDatabase,
  openDatabase,
  revokeUserPermissions,
  type Database,
} from "../src/exports/store.js";
import { createTestDatabase, type TestDatabase } from "../src/exports/testing.js";
import { cleanEnv } from "./helpers/cli.js";
import { describeOr, postgresUrl } from "./helpers/env.js";
import { databaseName, skipWithoutPgbouncer, startPgbouncer, type Pgbouncer } from "./helpers/pgbouncer.js";

const token = (jti: string) => ({ jti, issuedAt: Math.floor(Date.now() / 1000) + 60 });

/** Rows of a `db.execute` on postgres.js. */
async function rows<T>(database: Database, query: ReturnType<typeof sql>): Promise<T[]> {
  return (await database.db.execute(query)) as unknown as T[];
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

describeOr(skipWithoutPgbouncer, "behind PgBouncer in transaction pooling", { timeout: 120_000 }, () => {
  let bouncer: Pgbouncer;
  before(async () => {
    bouncer = await startPgbouncer({ poolMode: "transaction", poolSize: 3 });
  });
  after(() => bouncer?.close());

  it("four concurrent migrations through the pooler all succeed and apply each migration once", {
    timeout: 50_000,
  }, async () => {
    const fresh = await createTestDatabase({ driver: "postgres", url: postgresUrl!, migrate: false });
    const pooled = bouncer.url(databaseName(fresh.url!));
    const databases = await Promise.all(
      [0, 1, 2, 3].map(() => openDatabase({ url: `${pooled}?prepare=false`, max: 2 })),
    );
    try {
      const results = await withTimeout(
        Promise.allSettled(databases.map((database) => migrateDatabase(database))),
        45_000,
        "four migrations",
      );
      const failed = results.filter((r) => r.status === "rejected");
      assert.deepEqual(
        failed.map((r) => String((r as PromiseRejectedResult).reason)),
        [],
        "every migration succeeds",
      );
      const journal = await rows<{ n: string }>(fresh, sql`select count(*) as n from drizzle.__drizzle_migrations`);
      const applied = await rows<{ n: string }>(
        fresh,
        sql`select count(distinct hash) as n from drizzle.__drizzle_migrations`,
      );
      assert.equal(journal[0]!.n, applied[0]!.n, "no migration recorded twice");
      // No advisory lock left on a pooled server connection.
      const locks = await rows<{ n: string }>(
        fresh,
        sql`select count(*) as n from pg_locks where locktype = 'advisory'`,
      );
      assert.equal(Number(locks[0]!.n), 0);
    } finally {
      await Promise.all(databases.map((database) => database.close()));
      await fresh.close();
    }
  });

  it("lookups through the pooler answer every active user correctly (prepared statements off with a listen URL)", {
    timeout: 50_000,
  }, async () => {
    const fixture = await createTestDatabase({ driver: "postgres", url: postgresUrl! });
    const pooledUrl = bouncer.url(databaseName(fixture.url!));
    const users: { id: number; perm: string }[] = [];
    for (let i = 0; i < 12; i++) {
      const user = await createUser(fixture.db, { username: `pooled${i}` });
      await grantUserPermissions(fixture.db, `pooled${i}`, [`shop.p${i}`]);
      users.push({ id: user.id, perm: `shop.p${i}` });
    }
    const databases = await Promise.all(
      [0, 1].map(() => openDatabase({ url: pooledUrl, listenUrl: fixture.url!, max: 6 })),
    );
    try {
      const sources = await Promise.all(
        databases.map((database) => createPrincipalSource({ database, maxEntries: 0 })),
      );
      const wrong: string[] = [];
      for (let round = 0; round < 4; round++) {
        await Promise.all(
          Array.from({ length: 120 }, async (_, n) => {
            const user = users[n % users.length]!;
            const source = sources[n % sources.length]!;
            try {
              const lookup = await source.load(user.id, token(`jti-${round}-${n}`));
              if (lookup.status !== "ok" || !lookup.principal.permissions.has(user.perm)) {
                wrong.push(`user ${user.id}: ${lookup.status}`);
              }
            } catch (error) {
              wrong.push(`user ${user.id}: ${(error as { cause?: { code?: string } }).cause?.code ?? String(error)}`);
            }
          }),
        );
      }
      assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} of 480 lookups wrong or failed`);
      await Promise.all(sources.map((source) => source.close()));
    } finally {
      await Promise.all(databases.map((database) => database.close()));
      await fixture.close();
    }
  });

  it("without a listen URL, LISTEN through the pooler is refused at start-up (NOTIFICATIONS_UNAVAILABLE)", {
    timeout: 50_000,
  }, async () => {
    const fixture = await createTestDatabase({ driver: "postgres", url: postgresUrl! });
    const database = await openDatabase({ url: bouncer.url(databaseName(fixture.url!)), prepare: false });
    try {
      await assert.rejects(
        withTimeout(createPrincipalSource({ database }), 20_000, "createPrincipalSource").then((source) =>
          source.close(),
        ),
        (error: { code?: string }) => error.code === "NOTIFICATIONS_UNAVAILABLE",
      );
    } finally {
      await database.close();
      await fixture.close();
    }
  });

  it("with a direct listen URL, a revoke made through the pooler reaches the cache within a second", {
    timeout: 50_000,
  }, async () => {
    const fixture = await createTestDatabase({ driver: "postgres", url: postgresUrl! });
    const database = await openDatabase({ url: bouncer.url(databaseName(fixture.url!)), listenUrl: fixture.url! });
    try {
      const user = await createUser(database.db, { username: "revoked-through-pooler" });
      await grantUserPermissions(database.db, user.username, ["shop.edit"]);
      const source = await createPrincipalSource({ database });
      try {
        assert.equal(source.notifications, "listening");
        const jti = token("cached");
        const first = await source.load(user.id, jti);
        assert.ok(first.status === "ok" && first.principal.permissions.has("shop.edit"));
        await revokeUserPermissions(database.db, user.username, ["shop.edit"]);
        const deadline = Date.now() + 1000;
        for (;;) {
          const lookup = await source.load(user.id, jti);
          if (lookup.status === "ok" && !lookup.principal.permissions.has("shop.edit")) break;
          assert.ok(Date.now() < deadline, "the revoke is still not seen after 1 s");
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      } finally {
        await source.close();
      }
    } finally {
      await database.close();
      await fixture.close();
    }
  });
});

describeOr(skipWithoutPgbouncer, "the connection budget", { timeout: 60_000 }, () => {
  let fixture: TestDatabase;
  before(async () => {
    fixture = await createTestDatabase({ driver: "postgres", url: postgresUrl! });
  });
  after(() => fixture?.close());

  /** Backends of the fixture's database with this application_name, seen from a direct connection. */
  async function backends(name: string): Promise<number> {
    const found = await rows<{ n: string }>(
      fixture,
      sql`select count(*) as n from pg_stat_activity where datname = current_database() and application_name = ${name}`,
    );
    return Number(found[0]!.n);
  }

  async function saturate(database: Database): Promise<void> {
    if (database.client.kind !== "postgres") throw new Error("postgres expected");
    const pool = database.client.sql;
    await Promise.all(Array.from({ length: 8 }, () => pool`select pg_sleep(0.3)`));
  }

  it("the URL's max bounds the pool", async () => {
    const url = new URL(fixture.url!);
    url.searchParams.set("max", "3");
    url.searchParams.set("application_name", "pool-max-url");
    const database = await openDatabase({ url: url.toString() });
    try {
      await saturate(database);
      assert.equal(await backends("pool-max-url"), 3);
    } finally {
      await database.close();
    }
  });

  it("PROTOGUARD_DATABASE_POOL_MAX bounds the pool of a runtime", async () => {
    const url = new URL(fixture.url!);
    url.searchParams.set("application_name", "pool-max-env");
    const runtime = await openRuntime(
      loadConfig({
        DATABASE_URL: url.toString(),
        PROTOGUARD_DATABASE_POOL_MAX: "2",
        PROTOGUARD_JWT_SECRET: "x".repeat(32),
      }),
      { migrate: false },
    );
    try {
      await saturate(runtime.database);
      assert.equal(await backends("pool-max-env"), 2);
    } finally {
      await runtime.close();
    }
  });

  it("a bad PROTOGUARD_DATABASE_POOL_MAX or PROTOGUARD_DATABASE_PREPARE is a configuration error", () => {
    const base = { DATABASE_URL: fixture.url! };
    for (const env of [
      { ...base, PROTOGUARD_DATABASE_POOL_MAX: "0" },
      { ...base, PROTOGUARD_DATABASE_PREPARE: "maybe" },
      { PROTOGUARD_LISTEN_DATABASE_URL: fixture.url! },
    ]) {
      assert.throws(
        () => loadConfig(env),
        (error: { code?: string }) => error.code === "INVALID_CONFIG",
      );
    }
  });

  it("PROTOGUARD_LISTEN_DATABASE_URL gives LISTEN its own connection there", async () => {
    const listen = new URL(fixture.url!);
    listen.searchParams.set("application_name", "listen-direct");
    const runtime = await openRuntime(
      loadConfig({
        DATABASE_URL: fixture.url!,
        PROTOGUARD_LISTEN_DATABASE_URL: listen.toString(),
        PROTOGUARD_JWT_SECRET: "x".repeat(32),
      }),
      { migrate: false },
    );
    try {
      const source = await createPrincipalSource({ database: runtime.database });
      try {
        assert.equal(await backends("listen-direct"), 1);
      } finally {
        await source.close();
      }
    } finally {
      await runtime.close();
    }
  });
});

describeOr(skipWithoutPgbouncer, "start-up against an exhausted pooler", { timeout: 90_000 }, () => {
  it("`protoguard migrate` and `serve` fail with one line naming the pooler's reason, no stack trace", async () => {
    const fixture = await createTestDatabase({ driver: "postgres", url: postgresUrl! });
    const bouncer = await startPgbouncer({ poolMode: "session", poolSize: 1, queryWaitTimeoutSeconds: 2 });
    const url = bouncer.url(databaseName(fixture.url!));
    // Holds the pool's only server connection for its session.
    const holder = await openDatabase({ url, max: 1 });
    try {
      await holder.db.execute(sql`select 1`);
      for (const args of [["migrate"], ["serve", "--port", "0", "--workers", "1"]]) {
        const result = await runCliProcess(args, {
          DATABASE_URL: url,
          PROTOGUARD_JWT_SECRET: "x".repeat(32),
        });
        const lines = result.stderr.trim().split("\n");
        assert.equal(result.code, 1, `${args[0]}: ${result.stderr}`);
        assert.equal(lines.length, 1, `${args[0]}: one line, got ${result.stderr}`);
        assert.match(lines[0]!, /^protoguard: .*query_wait_timeout \(08P01\)$/);
      }
    } finally {
      await holder.close();
      await bouncer.close();
      await fixture.close();
    }
  });
});

/** Runs the `protoguard` executable's source in a child process (an unhandled rejection there ends it). */
async function runCliProcess(
  args: readonly string[],
  extra: Record<string, string>,
): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(import.meta.dirname, "..", "src", "cli", "bin.ts"), ...args],
    {
      env: cleanEnv(extra),
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const code = await new Promise<number | null>((resolve) => child.once("exit", (exitCode) => resolve(exitCode)));
  clearTimeout(timer);
  return { code, stderr };
}
