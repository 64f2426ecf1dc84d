/**
 * One embedded database, one writer: `openDatabase({ dataDir })` and the
 * CLI's `PROTOGUARD_DATA_DIR` name the same database, and while one process
 * holds a data directory every other opener is refused with one line naming
 * it. The CLI runs as real child processes; holders that die are real
 * processes killed with SIGKILL.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess, type ChildProcessByStdio } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import type { Readable } from "node:stream";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { sql } from "drizzle-orm";
import postgres from "postgres";
import { createUser, findUserByUsername, loadPrincipal, migrateDatabase, openDatabase } from "../src/exports/store.js";
import type { Database } from "../src/exports/store.js";
import { DATA_DIR_LOCK_FILE, defaultProcessName, procStartTime } from "../src/store/data-dir-lock.js";
import { DATA_DIR_SOCKET_FILE } from "../src/store/data-dir-socket.js";
import { StoreError } from "../src/store/errors.js";
import { assertOk, cleanEnv as cleanEnvWith, type CliResult } from "./helpers/cli.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
// Every test starts PGlite (2-15 s on a loaded 2-core machine) several
// times, in this process and in CLI child processes.
const TEST_TIMEOUT = 240_000;
const HAS_PROC = procStartTime(process.pid) !== undefined;

/** The clean environment, with this test's data directory and a cheaper scrypt. */
const cleanEnv = (dataDir: string): NodeJS.ProcessEnv =>
  cleanEnvWith({ PROTOGUARD_SCRYPT_LOG_N: "10", PROTOGUARD_DATA_DIR: dataDir });

/** Runs `node --import tsx src/cli/bin.ts ...args` to completion. */
async function cli(dataDir: string, ...args: string[]): Promise<CliResult> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/bin.ts", ...args], {
    cwd: ROOT,
    env: cleanEnv(dataDir),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const [code] = (await once(child, "close")) as [number | null];
  return { code, stdout, stderr };
}

/** Opens `dataDir`, migrates, runs `fn`, and closes. */
async function withDatabase<T>(dataDir: string, fn: (database: Database) => Promise<T>): Promise<T> {
  const database = await openDatabase({ dataDir });
  try {
    await migrateDatabase(database);
    return await fn(database);
  } finally {
    await database.close();
  }
}

const lockFile = (dataDir: string) => join(dataDir, "pgdata", DATA_DIR_LOCK_FILE);

/** Rejects with a StoreError of `code` whose message matches `message`. */
function storeError(code: string, message: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof StoreError, `expected a StoreError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.match(error.message, message);
    return true;
  };
}

describe("embedded data directory", () => {
  let root: string;
  let dataDir: string;
  const children: ChildProcess[] = [];

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "protoguard-data-dir-"));
    dataDir = join(root, "data");
  });

  after(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await rm(root, { recursive: true, force: true });
  });

  it("the CLI and openDatabase({ dataDir }) share one database, PGlite in <dataDir>/pgdata", {
    timeout: TEST_TIMEOUT,
  }, async () => {
    assertOk(await cli(dataDir, "user", "create", "carol", "--password", "pw-carol"));
    assert.ok(existsSync(join(dataDir, "pgdata", "PG_VERSION")), "PGlite's files are in pgdata");
    assert.ok(existsSync(join(dataDir, "jwt-secret.dev")), "the development secret is beside them");
    assert.ok(!existsSync(lockFile(dataDir)), "the CLI removed its lock on exit");

    await withDatabase(dataDir, async ({ db }) => {
      assert.ok(await findUserByUsername(db, "carol"), "the user the CLI made exists for openDatabase");
      await createUser(db, { username: "dave" });
    });
    assert.ok(!existsSync(lockFile(dataDir)), "close() removed the lock");
    assert.ok(!existsSync(join(dataDir, "PG_VERSION")), "no second database in dataDir itself");

    // A grant fails with USER_NOT_FOUND unless the CLI sees the app's user.
    assertOk(await cli(dataDir, "user", "grant", "dave", "shop.view_order"));
    await withDatabase(dataDir, async ({ db }) => {
      const dave = await findUserByUsername(db, "dave");
      assert.ok(dave);
      const lookup = await loadPrincipal(db, dave.id);
      assert.equal(lookup.status, "ok");
      assert.deepEqual([...(lookup.status === "ok" ? lookup.principal.permissions : [])], ["shop.view_order"]);
    });
  });

  it("while held unshared, another process is refused with one line naming the holder and writes nothing", {
    timeout: TEST_TIMEOUT,
  }, async () => {
    await rm(join(dataDir, "jwt-secret.dev"), { force: true });
    // share: false, so the CLI cannot work through this holder (see the next test for one that shares).
    const holder = await openDatabase({ dataDir, processName: "data-dir test holder", share: false });
    try {
      await migrateDatabase(holder);
      const lockBefore = await readFile(lockFile(dataDir), "utf8");
      assert.equal(JSON.parse(lockBefore).pid, process.pid);

      // This process, by either path to the same PGlite files: refused at once.
      await assert.rejects(
        openDatabase({ dataDir }),
        storeError("DATA_DIR_LOCKED", new RegExp(`already open in this process \\(pid ${process.pid}\\)`)),
      );
      await assert.rejects(
        openDatabase({ dataDir: join(dataDir, "pgdata") }),
        storeError("DATA_DIR_LOCKED", /already open/),
      );

      const refused = await cli(dataDir, "user", "create", "erin", "--password", "pw-erin");
      assert.equal(refused.code, 1, refused.stderr);
      assert.equal(refused.stdout, "");
      assert.equal(
        refused.stderr,
        `protoguard: the embedded database in ${dataDir} is in use by process ${process.pid} (data-dir test holder); ` +
          "stop it, or use PostgreSQL (DATABASE_URL) for several processes\n",
      );
      assert.equal(await readFile(lockFile(dataDir), "utf8"), lockBefore, "the lock is untouched");
      assert.ok(!existsSync(join(dataDir, "jwt-secret.dev")), "no development secret was written");
      assert.equal(await findUserByUsername(holder.db, "erin"), undefined, "no user was written");
    } finally {
      await holder.close();
    }
    assert.ok(!existsSync(lockFile(dataDir)));
    assertOk(await cli(dataDir, "user", "create", "erin", "--password", "pw-erin"));
    await withDatabase(dataDir, async ({ db }) => assert.ok(await findUserByUsername(db, "erin")));
  });

  it("while held by a process that shares it, the CLI works through the holder, which sees the change", {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const holder = await openDatabase({ dataDir, processName: "sharing holder" });
    try {
      await migrateDatabase(holder);
      assert.ok(existsSync(join(dataDir, "pgdata", DATA_DIR_SOCKET_FILE)));
      assertOk(await cli(dataDir, "user", "create", "gina", "--password", "pw-gina"));
      assertOk(await cli(dataDir, "user", "grant", "gina", "shop.view_order"));
      const gina = await findUserByUsername(holder.db, "gina");
      assert.ok(gina, "the holder sees the CLI's user");
      const lookup = await loadPrincipal(holder.db, gina.id);
      assert.deepEqual([...(lookup.status === "ok" ? lookup.principal.permissions : [])], ["shop.view_order"]);
      // A second holder in another process (what a second server is) is still refused.
      const second = await cli(dataDir, "serve", "--port", "0");
      assert.equal(second.code, 1);
      assert.match(second.stderr, new RegExp(`^protoguard: .*in use by process ${process.pid} \\(sharing holder\\)`));
    } finally {
      await holder.close();
    }
    assert.ok(!existsSync(join(dataDir, "pgdata", DATA_DIR_SOCKET_FILE)), "close() removed the socket");
  });

  it("a socket client's transaction runs alone, and one left idle for 10 s is rolled back", {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const holder = await openDatabase({ dataDir, processName: "sharing holder" });
    await migrateDatabase(holder);
    const client = postgres({
      path: join(dataDir, "pgdata", DATA_DIR_SOCKET_FILE),
      user: "postgres",
      database: "postgres",
      max: 1,
      prepare: false,
      onnotice: () => {},
    });
    try {
      let holderQueryDone = 0;
      let holderQueried: Promise<unknown> = Promise.resolve();
      const abandoned = client.begin(async (tx) => {
        await tx.unsafe("create table e20_probe (x int)");
        // The holder's own query waits for this transaction rather than run inside it.
        holderQueried = (async () => {
          const found = await findUserByUsername(holder.db, "nobody");
          holderQueryDone = Date.now();
          return found;
        })();
        await sleep(12_000); // past the 10 s bound: the holder rolls back and hangs up
      });
      const begun = Date.now();
      await assert.rejects(abandoned);
      await holderQueried;
      assert.ok(holderQueryDone - begun >= 9_000, "the holder's query waited for the client's transaction");
      const tables = await holder.db.execute(sql`select 1 from pg_tables where tablename = 'e20_probe'`);
      const rows = Array.isArray(tables) ? tables : (tables as { rows: unknown[] }).rows;
      assert.equal(rows.length, 0, "the abandoned transaction was rolled back");
    } finally {
      await client.end({ timeout: 1 });
      await holder.close();
    }
  });

  /** A child process that opens `dataDir`, prints "ready", then runs `then` (never closing). */
  async function spawnHolder(name: string, then: string): Promise<ChildProcessByStdio<null, Readable, null>> {
    const script = join(root, `${name.replace(/\W/g, "-")}.mts`);
    await writeFile(
      script,
      `import { openDatabase } from ${JSON.stringify(pathToFileURL(join(ROOT, "src/store/database.ts")).href)};\n` +
        `await openDatabase({ dataDir: ${JSON.stringify(dataDir)}, processName: ${JSON.stringify(name)} });\n` +
        `process.stdout.write("ready\\n");\n` +
        `${then}\n`,
    );
    const child = spawn(process.execPath, ["--import", "tsx", script], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(child);
    return child;
  }

  it("removes the lock when a holder exits without closing", { timeout: TEST_TIMEOUT }, async () => {
    const child = await spawnHolder("exiting holder", "process.exit(3);");
    const [code] = (await once(child, "exit")) as [number | null];
    assert.equal(code, 3);
    assert.ok(!existsSync(lockFile(dataDir)), "the exit listener removed the lock");
  });

  it("recovers the lock of a holder killed with SIGKILL", { timeout: TEST_TIMEOUT }, async () => {
    const child = await spawnHolder("doomed holder", "setInterval(() => {}, 1000);");
    const exited = once(child, "exit");
    let out = "";
    child.stdout.setEncoding("utf8");
    for await (const chunk of child.stdout) {
      out += chunk as string;
      if (out.includes("ready")) break;
    }
    assert.equal(out, "ready\n");
    const stale = JSON.parse(await readFile(lockFile(dataDir), "utf8")) as { pid: number; command: string };
    assert.deepEqual([stale.pid, stale.command], [child.pid, "doomed holder"]);
    // The holder shares: the CLI works through it.
    assertOk(await cli(dataDir, "user", "create", "frank", "--password", "pw"));

    child.kill("SIGKILL");
    await exited;
    assert.ok(existsSync(lockFile(dataDir)), "SIGKILL left the lock behind");
    await withDatabase(dataDir, async ({ db }) => {
      assert.equal(JSON.parse(await readFile(lockFile(dataDir), "utf8")).pid, process.pid);
      assert.ok(await findUserByUsername(db, "carol"), "the data survived the kill");
      assert.ok(await findUserByUsername(db, "frank"), "so did what the CLI wrote through the holder");
    });
    assert.ok(!existsSync(lockFile(dataDir)));
  });

  it("recovers a lock whose pid now belongs to another process, or that was left empty", {
    timeout: TEST_TIMEOUT,
    ...(HAS_PROC ? {} : { skip: "no /proc: start times cannot be compared here" }),
  }, async () => {
    // A live process that never held the directory stands for a reused pid.
    const other = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
    children.push(other);
    await once(other, "spawn");
    const pid = other.pid!;
    const bootId = (await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim();
    const lock = (startTime: string) =>
      JSON.stringify({
        pid,
        startTime,
        bootId,
        command: "old holder",
        nonce: "n",
        createdAt: new Date(0).toISOString(),
      });

    // Its true start time: it is the holder, and refused without PGlite starting.
    await writeFile(lockFile(dataDir), lock(procStartTime(pid)!));
    await assert.rejects(
      openDatabase({ dataDir }),
      storeError("DATA_DIR_LOCKED", new RegExp(`process ${pid} \\(old holder\\)`)),
    );

    // Another start time: the holder died and the pid was reused.
    await writeFile(lockFile(dataDir), lock("1"));
    await withDatabase(dataDir, async ({ db }) => assert.ok(await findUserByUsername(db, "carol")));
    assert.ok(!existsSync(lockFile(dataDir)));
    other.kill("SIGKILL");

    // Empty: a holder killed between creating and writing it.
    await writeFile(lockFile(dataDir), "");
    const longAgo = new Date(Date.now() - 60_000);
    await utimes(lockFile(dataDir), longAgo, longAgo);
    await withDatabase(dataDir, async ({ db }) => assert.ok(await findUserByUsername(db, "carol")));
    assert.ok(!existsSync(lockFile(dataDir)));
  });

  it("an opener waits (up to 5 s) for a holder that got SIGTERM, instead of failing DATA_DIR_LOCKED", {
    timeout: TEST_TIMEOUT,
  }, async () => {
    // A server's shape: onShutdownSignals, then a slow drain (1.5 s) before the database closes.
    const script = join(root, "closing-holder.mts");
    const src = (path: string) => JSON.stringify(pathToFileURL(join(ROOT, path)).href);
    await writeFile(
      script,
      `import { openDatabase } from ${src("src/store/database.ts")};\n` +
        `import { onShutdownSignals } from ${src("src/server/shutdown.ts")};\n` +
        `const database = await openDatabase({ dataDir: ${JSON.stringify(dataDir)}, processName: "closing holder" });\n` +
        `const keepAlive = setInterval(() => {}, 1000);\n` +
        `onShutdownSignals(async () => {\n` +
        `  await new Promise((resolve) => setTimeout(resolve, 1500));\n` +
        `  await database.close();\n` +
        `  clearInterval(keepAlive);\n` +
        `});\n` +
        `process.stdout.write("ready\\n");\n`,
    );
    const child = spawn(process.execPath, ["--import", "tsx", script], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(child);
    const exited = once(child, "exit");
    let out = "";
    child.stdout.setEncoding("utf8");
    for await (const chunk of child.stdout) {
      out += chunk as string;
      if (out.includes("ready")) break;
    }
    await assert.rejects(openDatabase({ dataDir }), storeError("DATA_DIR_LOCKED", /closing holder/));
    child.kill("SIGTERM");
    // The lock says "closing" at once; give the signal a moment to arrive.
    for (let i = 0; i < 100 && !(await readFile(lockFile(dataDir), "utf8")).includes("closingSince"); i++) {
      await sleep(10);
    }
    const started = Date.now();
    await withDatabase(dataDir, async ({ db }) => assert.equal(await findUserByUsername(db, "nobody"), undefined));
    const waited = Date.now() - started;
    const [code] = (await exited) as [number | null];
    assert.equal(code, 0);
    assert.ok(waited >= 1000, `opened after ${waited} ms: it did not wait for the holder`);
  });

  it("records the command before its first option, never a flag value", () => {
    const argv = ["node", "/x/src/cli/main.ts", "user", "create", "eve", "--password", "secret"];
    assert.equal(defaultProcessName("protoguard", argv), "protoguard user create");
    assert.equal(defaultProcessName(undefined, ["node", "/app/server.mjs", "--token", "t"]), "server");
  });

  it("keeps using a directory laid out by the old openDatabase, and refuses one holding both layouts", {
    timeout: TEST_TIMEOUT,
  }, async () => {
    const legacy = join(root, "legacy");
    // What openDatabase({ dataDir: legacy }) did before: PGlite in the directory itself.
    const pg = await PGlite.create(legacy);
    try {
      const old = await openDatabase({ pglite: pg });
      await migrateDatabase(old);
      await createUser(old.db, { username: "old-app-user" });
    } finally {
      await pg.close();
    }
    await withDatabase(legacy, async ({ db }) => assert.ok(await findUserByUsername(db, "old-app-user")));
    assert.ok(!existsSync(join(legacy, "pgdata")), "no new database beside the old one");
    assert.ok(!existsSync(join(legacy, DATA_DIR_LOCK_FILE)));

    await mkdir(join(legacy, "pgdata"));
    await writeFile(join(legacy, "pgdata", "PG_VERSION"), "18\n");
    await assert.rejects(
      openDatabase({ dataDir: legacy }),
      storeError("DATA_DIR_AMBIGUOUS", /holds two embedded databases/),
    );
  });
});
