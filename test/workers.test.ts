// Several server processes on one port: `startServer({ workers: 2 })` from
// an application's entry script (test/helpers/workers-app.ts) and
// `protoguard serve --workers 2`, on PostgreSQL. Workers serve calls on
// every connection, each worker's cache follows the database's
// notifications, a killed worker is replaced while calls go on, and SIGTERM
// to the primary lets an open stream finish before every process exits.
// On the embedded database more than one worker is refused up front.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService } from "../gen/example/v1/account_pb.js";
import { authErrorReason, createKeyring, createTokenIssuer, createTokenVerifier } from "../src/exports/protoguard.js";
import { runCli } from "../src/cli/commands.js";
import { ServerError, startServer } from "../src/exports/server.js";
import { createUser, setUserActive } from "../src/exports/store.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/database.js";
import { cleanEnv } from "./helpers/cli.js";
import { bearer } from "./helpers/connect.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";
import { TEST_SECRET } from "./helpers/secrets.js";

const root = join(import.meta.dirname, "..");
const TSX = ["--import", "tsx"];
/** Connections opened per check: the primary hands them to the workers in turn, so both serve. */
const CONNECTIONS = 6;

/** A child process and everything it printed. */
function run(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [...TSX, ...args], { cwd: root, env, stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  return { child, exited, output: () => out };
}

/** Waits (bounded, so a broken server fails the test instead of hanging it) for `pattern` in the output. */
async function waitFor(proc: ReturnType<typeof run>, pattern: RegExp, from = 0): Promise<RegExpExecArray> {
  for (let waited = 0; ; waited += 25) {
    const match = pattern.exec(proc.output().slice(from));
    if (match) return match;
    if (proc.child.exitCode !== null || waited > 120_000) {
      proc.child.kill("SIGKILL");
      assert.fail(`no ${pattern} in the output:\n${proc.output()}`);
    }
    await sleep(25);
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** GetProfile on `count` fresh connections: "OK" or the refusal's reason, one per connection. */
async function profileOnFreshConnections(url: string, token: string, count = CONNECTIONS): Promise<string[]> {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const session = new Http2SessionManager(url);
      try {
        const client = createClient(AccountService, createGrpcTransport({ baseUrl: url, sessionManager: session }));
        await client.getProfile({}, bearer(token));
        return "OK";
      } catch (error) {
        const err = ConnectError.from(error);
        return `${Code[err.code]}/${authErrorReason(err) ?? err.rawMessage}`;
      } finally {
        session.abort();
      }
    }),
  );
}

it("refuses more than one worker on the embedded database, from startServer and from the CLI", async () => {
  const database = await createTestDatabase();
  try {
    const keyring = await createKeyring([{ alg: "HS256", secret: TEST_SECRET }]);
    const refused = await startServer({
      runtime: { database, keyring, verifier: createTokenVerifier({ keyring }) },
      routes: () => {},
      port: 0,
      workers: 2,
    }).then(
      () => assert.fail("startServer with 2 workers on PGlite started"),
      (error: unknown) => error,
    );
    assert.ok(refused instanceof ServerError);
    assert.equal(refused.code, "WORKERS_NEED_POSTGRES");
    assert.match(refused.message, /needs PostgreSQL/);
    await assert.rejects(
      startServer({
        runtime: { database, keyring, verifier: createTokenVerifier({ keyring }) },
        routes: () => {},
        port: 0,
        workers: 0,
      }),
      RangeError,
    );
  } finally {
    await database.close();
  }

  let err = "";
  const io = { out: () => {}, err: (line: string) => void (err += `${line}\n`) };
  const env = cleanEnv({ PROTOGUARD_DATA_DIR: join(root, "never-created-by-workers-test") });
  assert.equal(await runCli(["serve", "--workers", "2"], env, io), 1);
  assert.match(err, /--workers 2 \(or PROTOGUARD_WORKERS\) needs DATABASE_URL/);
  err = "";
  assert.equal(await runCli(["serve", "--workers", "0"], env, io), 2);
  assert.match(err, /--workers must be "auto" or an integer from 1 to 1024, got "0"/);
  err = "";
  assert.equal(await runCli(["serve"], { ...env, PROTOGUARD_WORKERS: "many" }, io), 1);
  assert.match(err, /PROTOGUARD_WORKERS must be "auto" or an integer/);
});

describeOr(skipWithoutPostgres, "several workers on PostgreSQL", { timeout: 300_000 }, () => {
  let database: TestDatabase;
  let token: string;
  let env: NodeJS.ProcessEnv;
  let issue: () => Promise<string>;

  it("sets up a user and a token", async () => {
    database = await createTestDatabase({ url: postgresUrl! });
    const user = await createUser(database.db, { username: "alice", email: "alice@example.com" });
    const keyring = await createKeyring([{ alg: "HS256", secret: TEST_SECRET }]);
    const issuer = createTokenIssuer({ keyring, accessTtlSeconds: 300 });
    issue = async () => (await issuer.issueAccess(user.id)).token;
    token = await issue();
    env = cleanEnv({ DATABASE_URL: database.url!, PROTOGUARD_JWT_SECRET: TEST_SECRET, PROTOGUARD_LOG_LEVEL: "warn" });
  });

  it("startServer({ workers: 2 }): both serve, caches follow changes, a killed worker is replaced, SIGTERM drains", async () => {
    const app = run(["test/helpers/workers-app.ts"], env);
    try {
      const url = (await waitFor(app, /READY (http:\/\/127\.0\.0\.1:\d+)/))[1]!;
      let seen = app.output().length;
      const workers = async () => {
        app.child.stdin!.write("pids\n");
        const found = await waitFor(app, /PIDS (\{.*\})\n/, seen);
        seen = app.output().length;
        return JSON.parse(found[1]!) as { pids: number[]; replaced: number };
      };

      const first = await workers();
      assert.equal(first.pids.length, 2);
      assert.equal(new Set(first.pids).size, 2);
      for (const pid of first.pids) {
        assert.notEqual(pid, app.child.pid);
        assert.ok(alive(pid), `worker ${pid} is not running`);
      }
      assert.deepEqual(await profileOnFreshConnections(url, token), Array(CONNECTIONS).fill("OK"));
      // Whichever worker answers a scrape, /metrics counts the calls of all of them.
      const scrapes = await Promise.all(Array.from({ length: 4 }, () => allowedProfiles(url)));
      assert.deepEqual(scrapes, Array(4).fill(CONNECTIONS));

      // Kill one worker: calls go on on the other, and a new one takes its place.
      const [victim, survivor] = first.pids as [number, number];
      process.kill(victim, "SIGKILL");
      while (alive(victim)) await sleep(10);
      assert.deepEqual(await profileOnFreshConnections(url, token), Array(CONNECTIONS).fill("OK"));
      let now = await workers();
      for (let tries = 0; now.pids.length < 2 && tries < 400; tries++) {
        await sleep(25);
        now = await workers();
      }
      assert.equal(now.replaced, 1);
      assert.equal(now.pids.length, 2);
      assert.ok(now.pids.includes(survivor));
      assert.ok(!now.pids.includes(victim));
      assert.deepEqual(await profileOnFreshConnections(url, token), Array(CONNECTIONS).fill("OK"));

      // Every worker has the user cached now (a cache max age of ten minutes):
      // only each worker's LISTEN can make them all see the deactivation.
      await setUserActive(database.db, "alice", false);
      let answers = await profileOnFreshConnections(url, token);
      for (let tries = 0; answers.some((a) => a === "OK") && tries < 200; tries++) {
        await sleep(25);
        answers = await profileOnFreshConnections(url, token);
      }
      assert.deepEqual(answers, Array(CONNECTIONS).fill("Unauthenticated/USER_INACTIVE"));
      // Reactivation counts as a credentials change: earlier tokens stay refused.
      await setUserActive(database.db, "alice", true);
      token = await issue();
      answers = await profileOnFreshConnections(url, token);
      for (let tries = 0; answers.some((a) => a !== "OK") && tries < 200; tries++) {
        await sleep(25);
        answers = await profileOnFreshConnections(url, token);
      }
      assert.deepEqual(answers, Array(CONNECTIONS).fill("OK"));

      // A stream in flight when the primary gets SIGTERM runs to its end.
      const session = new Http2SessionManager(url);
      const client = createClient(AccountService, createGrpcTransport({ baseUrl: url, sessionManager: session }));
      const received: string[] = [];
      const stream = (async () => {
        for await (const message of client.watchNotifications({}, bearer(token))) received.push(message.text);
      })();
      while (received.length === 0) await sleep(10);
      app.child.kill("SIGTERM");
      await stream;
      session.abort();
      assert.equal(received.length, 5, `the stream was cut: ${JSON.stringify(received)}`);
      const [code] = await app.exited;
      assert.equal(code, 0, app.output());
      assert.match(app.output(), /CLOSED/);
      for (const pid of now.pids) assert.ok(!alive(pid), `worker ${pid} outlived the primary`);
    } finally {
      if (app.child.exitCode === null) app.child.kill("SIGKILL");
    }
  });

  it("protoguard serve --workers 2 says so, serves, and stops every process on SIGTERM", async () => {
    const serve = run(["example/cli.ts", "serve", "--port", "0", "--workers", "2"], env);
    try {
      const match = await waitFor(serve, /serving on (http:\/\/127\.0\.0\.1:\d+) \(.*, 2 worker processes\)/);
      assert.deepEqual(await profileOnFreshConnections(match[1]!, token), Array(CONNECTIONS).fill("OK"));
      const children = childrenOf(serve.child.pid!);
      assert.equal(children.length, 2, `workers of the primary: ${children.join(", ")}`);
      serve.child.kill("SIGTERM");
      const [code] = await serve.exited;
      assert.equal(code, 0, serve.output());
      for (const pid of children) assert.ok(!alive(pid), `worker ${pid} outlived the primary`);
    } finally {
      if (serve.child.exitCode === null) serve.child.kill("SIGKILL");
    }
  });

  it("cleans up", async () => {
    await database?.close();
  });
});

/** `protoguard_auth_decisions_total` of allowed GetProfile calls, scraped on a connection of its own. */
async function allowedProfiles(url: string): Promise<number> {
  const response = await fetch(`${url}/metrics`, { headers: { connection: "close" } });
  const text = await response.text();
  const line = text
    .split("\n")
    .find(
      (l) =>
        l.startsWith("protoguard_auth_decisions_total{") &&
        l.includes('method="/example.v1.AccountService/GetProfile"') &&
        l.includes('outcome="allow"'),
    );
  return Number(line?.split(" ").at(-1) ?? Number.NaN);
}

/** Process ids whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return children;
}
