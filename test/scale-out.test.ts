// Two `protoguard serve` processes on one PostgreSQL database. A change made
// through the database by anyone (the CLI, or one instance's own writes)
// must reach every instance's user cache within a second. The cache max age
// is ten minutes here, so only the LISTEN/NOTIFY invalidation can explain a
// prompt change of answer.
import { after, before, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import postgres from "postgres";
import { AccountService } from "../gen/example/v1/account_pb.js";
import { ProductService } from "../gen/example/v1/product_pb.js";
import { AuthService } from "../gen/protoguard/v1/auth_pb.js";
import { authErrorReason, createKeyring, createTokenIssuer } from "../src/exports/protoguard.js";
import { INVALIDATION_CHANNEL } from "../src/store/invalidation.js";
import { runCli } from "../src/cli/commands.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/database.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";
import { bearer } from "./helpers/connect.js";
import { TEST_SECRET as SECRET } from "./helpers/secrets.js";

const databaseUrl = postgresUrl;
const root = join(import.meta.dirname, "..");
/** This repository's CLI: the package's, with the example as the app `serve` runs. */
const CLI = ["--import", "tsx", join(root, "example/cli.ts")];
/** The promise of the issue: a change takes effect everywhere within this. */
const DEADLINE_MS = 1000;
const POLL_MS = 25;
const PERMISSION = "products.change_product";

const OK = "OK";
const PERMISSION_MISSING = "PERMISSION_DENIED/PERMISSION_MISSING";
const TOKEN_REVOKED = "UNAUTHENTICATED/TOKEN_REVOKED";
const USER_INACTIVE = "UNAUTHENTICATED/USER_INACTIVE";

/** "OK", or the code and protoguard reason of the failure, e.g. "UNAUTHENTICATED/TOKEN_REVOKED". */
async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return OK;
  } catch (error) {
    const err = ConnectError.from(error);
    const code = Code[err.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
    const reason = authErrorReason(err);
    return reason === undefined ? `${code} (${err.rawMessage})` : `${code}/${reason}`;
  }
}

interface Instance {
  readonly name: string;
  readonly child: ChildProcess;
  readonly url: string;
  readonly exited: Promise<unknown[]>;
  readonly output: () => string;
  readonly session: Http2SessionManager;
  readonly products: Client<typeof ProductService>;
  readonly account: Client<typeof AccountService>;
  readonly auth: Client<typeof AuthService>;
}

/**
 * The environment of every process: ours alone, so a PROTOGUARD_* variable
 * of the shell running the tests (say, PROTOGUARD_CACHE_ENTRIES=0) cannot
 * change what is measured.
 */
function environment(url: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("PROTOGUARD_") && key !== "PORT") env[key] = value;
  }
  return {
    ...env,
    DATABASE_URL: url,
    PROTOGUARD_JWT_SECRET: SECRET,
    PROTOGUARD_SCRYPT_LOG_N: "12",
    // Ten minutes: far beyond the one-second promise, so expiry cannot be
    // what makes an instance see a change.
    PROTOGUARD_CACHE_MAX_AGE_MS: "600000",
    // Decision logs of hundreds of polls say nothing this test reads.
    PROTOGUARD_LOG_LEVEL: "warn",
    // The example's products live in this throwaway database: ask for them,
    // as an operator must before demo data goes into a DATABASE_URL database.
    PROTOGUARD_EXAMPLE_SEED: "1",
  };
}

/**
 * Runs `protoguard <args>` to completion through `runCli` (what the
 * executable wraps) in this process, expects exit 0, returns stdout. A child
 * process per admin command would cost ~2 s of CPU each; the executable's
 * own wiring is cli.test.ts's subject, the two `serve` processes are this
 * file's.
 */
async function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<string> {
  let out = "";
  let err = "";
  const code = await runCli(args, env, {
    out: (line) => void (out += `${line}\n`),
    err: (line) => void (err += `${line}\n`),
  });
  assert.equal(code, 0, `protoguard ${args.join(" ")} failed:\n${err}`);
  return out;
}

/** Starts `protoguard serve --port 0` and waits for the banner that names the port it got. */
async function startInstance(name: string, env: NodeJS.ProcessEnv): Promise<Instance> {
  const child = spawn(process.execPath, [...CLI, "serve", "--port", "0"], {
    cwd: root,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = once(child, "exit");
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  let url: string | undefined;
  for (let waited = 0; (url = /serving on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1]) === undefined; waited += 50) {
    if (child.exitCode !== null || waited > 60_000) {
      child.kill("SIGKILL");
      assert.fail(`instance ${name} did not start:\n${out}`);
    }
    await sleep(50);
  }
  // A session manager of our own, so the connection can be dropped at the end.
  const session = new Http2SessionManager(url);
  const transport = createGrpcTransport({ baseUrl: url, sessionManager: session });
  return {
    name,
    child,
    url,
    exited,
    output: () => out,
    session,
    products: createClient(ProductService, transport),
    account: createClient(AccountService, transport),
    auth: createClient(AuthService, transport),
  };
}

/** One call whose answer should change, on one instance. */
interface Probe {
  readonly label: string;
  readonly call: () => Promise<unknown>;
}

describeOr(skipWithoutPostgres, "two protoguard serve instances on one PostgreSQL database", {}, () => {
  let database: TestDatabase;
  let env: NodeJS.ProcessEnv;
  let listener: postgres.Sql | undefined;
  /** Every invalidation notification this process saw, with when (performance.now()). */
  const notifications: { at: number; payload: string }[] = [];
  let a: Instance;
  let b: Instance;
  const instances: Instance[] = [];
  const tokens: Record<"editor" | "alice" | "bob" | "carol", { access_token: string; refresh_token: string }> =
    {} as never;
  let editorId: number;

  const updateProduct = (instance: Instance, token: string) => () =>
    instance.products.updateProduct({ productId: 1, name: "Espresso machine" }, bearer(token));
  const getProfile = (instance: Instance, token: string) => () => instance.account.getProfile({}, bearer(token));

  /**
   * Checks that every probe still gives the old answer, makes the change
   * while polling every probe every 25 ms, and returns how long after the
   * change was committed each probe first gave the new answer.
   *
   * "Committed" is the earliest sign of it this process has: its own
   * LISTEN connection receiving the notification (sent at commit), or the
   * writer finishing (the CLI exiting, the RPC answering), which cannot
   * precede the commit. The second keeps the measure honest if the
   * triggers send nothing at all.
   */
  async function measure(what: string, change: () => Promise<unknown>, probes: Probe[], from: string, to: string) {
    // Right before the change the instances still give the old answer;
    // the caches are warm, so this is what a cache hit says.
    for (const probe of probes) assert.equal(await outcome(probe.call()), from, `${probe.label}, before: ${what}`);

    const seen = notifications.length;
    let doneAt: number | undefined;
    let failed: unknown;
    const changing = change().then(
      () => void (doneAt = performance.now()),
      (error: unknown) => void (failed = error ?? new Error("the change failed")),
    );
    const committedAt = () => Math.min(notifications[seen]?.at ?? Infinity, doneAt ?? Infinity);
    const startedAt = performance.now();

    const poll = async (probe: Probe): Promise<number> => {
      for (;;) {
        if (failed !== undefined) throw failed;
        const answer = await outcome(probe.call());
        const at = performance.now();
        if (answer === to) return at;
        assert.equal(answer, from, `${probe.label} answered something else while waiting for: ${what}`);
        const since = at - committedAt();
        if (since > DEADLINE_MS) {
          assert.fail(`${probe.label} still answered ${from} ${Math.round(since)} ms after: ${what}`);
        }
        if (at - startedAt > 60_000) assert.fail(`${what}: the change did not complete within 60 s`);
        await sleep(POLL_MS);
      }
    };
    const flippedAt = await Promise.all(probes.map(poll));
    await changing;
    if (failed !== undefined) throw failed;

    const committed = committedAt();
    return probes.map((probe, i) => {
      // The instance may hear the notification a hair before this process does.
      const delay = Math.max(0, Math.round(flippedAt[i]! - committed));
      console.log(`${what}: invalidation reached ${probe.label} after ${delay} ms`);
      assert.ok(delay < DEADLINE_MS, `${probe.label}: ${delay} ms`);
      return delay;
    });
  }

  before(
    async () => {
      database = await createTestDatabase({ driver: "postgres", url: databaseUrl! });
      env = environment(database.url!);
      listener = postgres(database.url!, { max: 1, onnotice: () => {} });
      await listener.listen(INVALIDATION_CHANNEL, (payload) => notifications.push({ at: performance.now(), payload }));

      // Accounts are an admin's job: the CLI, against the shared database;
      // independent commands run together.
      const created = await Promise.all([
        ...(["editor", "alice", "bob", "carol"] as const).map((user) =>
          cli(env, "user", "create", user, "--password", `${user}-password`),
        ),
        cli(env, "group", "create", "catalog"),
      ]);
      editorId = Number(/with id (\d+)/.exec(created[0]!)?.[1]);
      await Promise.all([
        cli(env, "user", "grant", "editor", PERMISSION),
        cli(env, "group", "add", "catalog", "carol"),
        ...(["editor", "alice", "bob", "carol"] as const).map(async (user) => {
          tokens[user] = JSON.parse(await cli(env, "token", user)) as (typeof tokens)[typeof user];
        }),
      ]);

      [a, b] = await Promise.all([startInstance("instance A", env), startInstance("instance B", env)]);
      instances.push(a, b);
      // Each start seeds the example, whose no-op insert into permissions
      // still fires the statement trigger: an "all" that flushes both caches.
      // Let those arrive first, or they could drop what the warm-up caches.
      await sleep(250);

      // Warm both caches with every token the cases below use.
      for (const instance of instances) {
        assert.equal(await outcome(updateProduct(instance, tokens.editor.access_token)()), OK);
        assert.equal(await outcome(getProfile(instance, tokens.alice.access_token)()), OK);
        assert.equal(await outcome(getProfile(instance, tokens.bob.access_token)()), OK);
        assert.equal(await outcome(updateProduct(instance, tokens.carol.access_token)()), PERMISSION_MISSING);
      }
    },
    { timeout: 180_000 },
  );

  after(async () => {
    for (const instance of instances) {
      instance.session.abort();
      if (instance.child.exitCode === null && instance.child.signalCode === null) instance.child.kill("SIGKILL");
    }
    try {
      await listener?.end({ timeout: 5 });
    } finally {
      await database?.close();
    }
  });

  it("answers from the caches: a write the database does not announce stays invisible", async (t) => {
    const [role] = await listener!<
      { super: boolean }[]
    >`select rolsuper as super from pg_roles where rolname = current_user`;
    if (role?.super !== true) return t.skip("silencing the triggers (session_replication_role) needs a superuser");
    /** Runs `statement` with the triggers off, so no notification is sent. */
    const silently = (statement: (sql: postgres.TransactionSql) => Promise<unknown>) =>
      listener!.begin(async (sql) => {
        await sql`set local session_replication_role = replica`;
        await statement(sql);
      });
    const grant = { user_id: editorId, permission_id: 0 };
    await silently(async (sql) => {
      const [row] = await sql<{ permission_id: number }[]>`
          delete from user_permissions where user_id = ${editorId} returning permission_id`;
      grant.permission_id = row!.permission_id;
    });
    try {
      const seen = notifications.length;
      // The database now says no: the grant is gone...
      const [left] = await listener!<{ n: number }[]>`
          select count(*)::int as n from user_permissions where user_id = ${editorId}`;
      assert.equal(left?.n, 0);
      // ...yet the cached user keeps its old answer for longer than the
      // deadline, on both, for its cached token and for a token neither
      // instance has seen (judged in memory from the cached user): nothing but
      // a notification drops a cached user.
      const issuer = createTokenIssuer({ keyring: await createKeyring([{ alg: "HS256", secret: SECRET }]) });
      const fresh = (await issuer.issueAccess(editorId)).token;
      const until = performance.now() + DEADLINE_MS + 200;
      while (performance.now() < until) {
        for (const instance of instances) {
          assert.equal(await outcome(updateProduct(instance, tokens.editor.access_token)()), OK, instance.name);
          assert.equal(await outcome(updateProduct(instance, fresh)()), OK, instance.name);
        }
        await sleep(100);
      }
      assert.equal(notifications.length, seen, "a silenced write was announced");
    } finally {
      await silently((sql) => sql`insert into user_permissions ${sql(grant)}`);
    }
  });

  it("a permission revoked by `protoguard user revoke` is refused by both within 1 s", async () => {
    await measure(
      "user revoke editor",
      () => cli(env, "user", "revoke", "editor", PERMISSION),
      [
        { label: "instance B", call: updateProduct(b, tokens.editor.access_token) },
        { label: "instance A", call: updateProduct(a, tokens.editor.access_token) },
      ],
      OK,
      PERMISSION_MISSING,
    );
  });

  it("an access token revoked by Logout on instance A is refused by instance B within 1 s", async () => {
    await measure(
      "Logout on instance A",
      () => a.auth.logout({ refreshToken: tokens.alice.refresh_token }),
      [
        { label: "instance B", call: getProfile(b, tokens.alice.access_token) },
        { label: "instance A", call: getProfile(a, tokens.alice.access_token) },
      ],
      OK,
      TOKEN_REVOKED,
    );
  });

  it("a user deactivated by `protoguard user deactivate` is refused by both within 1 s", async () => {
    await measure(
      "user deactivate bob",
      () => cli(env, "user", "deactivate", "bob"),
      [
        { label: "instance B", call: getProfile(b, tokens.bob.access_token) },
        { label: "instance A", call: getProfile(a, tokens.bob.access_token) },
      ],
      OK,
      USER_INACTIVE,
    );
  });

  it("a permission granted to a group by `protoguard group grant` is honoured by both within 1 s", async () => {
    await measure(
      "group grant catalog",
      () => cli(env, "group", "grant", "catalog", PERMISSION),
      [
        { label: "instance B", call: updateProduct(b, tokens.carol.access_token) },
        { label: "instance A", call: updateProduct(a, tokens.carol.access_token) },
      ],
      PERMISSION_MISSING,
      OK,
    );
  });

  it("both instances stop on SIGTERM with exit 0", { timeout: 30_000 }, async () => {
    for (const instance of instances) instance.child.kill("SIGTERM");
    for (const instance of instances) {
      const [code, signal] = await instance.exited;
      assert.deepEqual({ code, signal }, { code: 0, signal: null }, `${instance.name}:\n${instance.output()}`);
    }
  });
});
