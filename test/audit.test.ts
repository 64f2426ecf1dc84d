/**
 * The audit log: the hash chain (append, verify, tamper, prune) on PGlite and
 * PostgreSQL, concurrent appends from two postgres.js pools, and the events
 * that the public API and the CLI record.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { createClient, createRouterTransport, type Client } from "@connectrpc/connect";
import { eq, sql } from "drizzle-orm";
import postgres from "postgres";
import { AuthService } from "../gen/protoguard/v1/auth_pb.js";
import type { AuditContext, AuditEventType } from "../src/audit-event.js";
import { peerAddressKey } from "../src/connect/peer.js";
import { requestIdKey } from "../src/connect/request-id.js";
import { createAuthService, enableTotp } from "../src/lifecycle/auth-service.js";
import { createPasswordHasher } from "../src/lifecycle/passwords.js";
import { generateTotp } from "../src/lifecycle/totp.js";
import type { AuditEventJson } from "../src/store/audit.js";
import type { Database, DrizzleDb } from "../src/store/database-handle.js";
import { openDatabase } from "../src/store/database.js";
import { createServiceAccount } from "../src/store/service-accounts.js";
import { createUser } from "../src/store/users.js";
import { createKeyring } from "../src/token/keys.js";
import { createTokenIssuer } from "../src/token/issuer.js";
import { createTokenVerifier } from "../src/token/verifier.js";
import { assertOk, cleanEnv, runCliCaptured } from "./helpers/cli.js";
import { failure } from "./helpers/connect.js";
import { TEST_SECRET as SECRET } from "./helpers/secrets.js";
import {
  appendAuditEvent,
  listAuditEvents,
  pruneAuditEvents,
  recordAuditEvent,
  verifyAuditChain,
} from "../src/exports/store.js";
import { postgresDatabase } from "../src/store/database-handle.js";
import { auditChain, auditEvents } from "../src/store/schema.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/database.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";

const SUITE_TIMEOUT = 120_000;
const CLI_CONTEXT: AuditContext = { actor: { kind: "cli", osUser: "tester" } };

function chainSuite(open: () => Promise<TestDatabase>): void {
  let database: TestDatabase;
  before(async () => {
    database = await open();
  });
  after(() => database.close());

  async function reset(): Promise<void> {
    await database.db.delete(auditEvents);
    await database.db
      .update(auditChain)
      .set({ headId: 0, headHash: "0".repeat(64), anchorId: 0, anchorHash: "0".repeat(64) })
      .where(eq(auditChain.id, 1));
  }

  async function fill(n: number, start = Date.now()): Promise<number[]> {
    const ids: number[] = [];
    for (let i = 0; i < n; i += 1) {
      ids.push(
        await appendAuditEvent(
          database.db,
          {
            type: "user.created",
            subject: `user:u${i}`,
            detail: { i, nested: { b: 1, a: [1, "x"] } },
            context: CLI_CONTEXT,
          },
          new Date(start + i * 1000),
        ),
      );
    }
    return ids;
  }

  it("verifies an empty chain and a written one", async () => {
    await reset();
    assert.deepEqual(await verifyAuditChain(database.db), { ok: true, rows: 0, anchorId: 0, headId: 0 });
    const ids = await fill(5);
    const result = await verifyAuditChain(database.db);
    assert.equal(result.ok, true);
    assert.equal(result.rows, 5);
    const rows = await listAuditEvents(database.db);
    assert.deepEqual(
      rows.map((r) => r.id),
      ids,
    );
    assert.equal(rows[0]!.prevHash, "0".repeat(64));
    for (let i = 1; i < rows.length; i += 1) assert.equal(rows[i]!.prevHash, rows[i - 1]!.hash);
    assert.equal(rows[0]!.actor, "cli:tester");
    assert.equal(rows[0]!.actorUsername, "tester");
  });

  it("names the row whose content was altered", async () => {
    await reset();
    const ids = await fill(4);
    await database.db.execute(sql`update audit_events set subject = 'user:mallory' where id = ${ids[2]!}`);
    const result = await verifyAuditChain(database.db);
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.id, ids[2]);
    assert.equal(!result.ok && result.problem, "altered");
  });

  it("names the row after one that was removed", async () => {
    await reset();
    const ids = await fill(4);
    await database.db.execute(sql`delete from audit_events where id = ${ids[1]!}`);
    const result = await verifyAuditChain(database.db);
    assert.equal(!result.ok && result.id, ids[2]);
    assert.equal(!result.ok && result.problem, "unlinked");
  });

  it("notices the last rows removed", async () => {
    await reset();
    const ids = await fill(3);
    await database.db.execute(sql`delete from audit_events where id = ${ids[2]!}`);
    const result = await verifyAuditChain(database.db);
    assert.equal(!result.ok && result.id, ids[2]);
    assert.equal(!result.ok && result.problem, "missing");
  });

  it("names the first of two rows whose contents were swapped", async () => {
    await reset();
    const ids = await fill(4);
    // Swap every column but the id: the rows are now out of chain order.
    await database.db.execute(sql`
      with a as (select * from audit_events where id = ${ids[1]!}), b as (select * from audit_events where id = ${ids[2]!})
      update audit_events e set time = s.time, type = s.type, actor = s.actor, actor_username = s.actor_username,
        subject = s.subject, detail = s.detail, prev_hash = s.prev_hash, hash = s.hash
      from (select ${ids[1]!}::bigint as target, b.* from b union all select ${ids[2]!}::bigint, a.* from a) s
      where e.id = s.target`);
    const result = await verifyAuditChain(database.db);
    assert.equal(!result.ok && result.id, ids[1]);
  });

  it("prunes old rows and still verifies, recording the pruning", async () => {
    await reset();
    const now = Date.now();
    const ids = await fill(6, now - 10 * 86_400_000);
    // Rows 0..2 are 10, 10-1s, 10-2s days old … all six are older than 5 days: keep the last two by time.
    const cutoff = new Date(now - 10 * 86_400_000 + 3500);
    const pruned = await pruneAuditEvents(database.db, cutoff, CLI_CONTEXT);
    assert.deepEqual(pruned, { deleted: 4, anchorId: ids[3] });
    const rows = await listAuditEvents(database.db);
    assert.deepEqual(
      rows.map((r) => r.type),
      ["user.created", "user.created", "audit.pruned"],
    );
    assert.equal(rows[2]!.detail["deleted"], 4);
    const result = await verifyAuditChain(database.db);
    assert.equal(result.ok, true);
    assert.equal(result.ok && result.anchorId, ids[3]);
    // Nothing more to prune: no second audit.pruned row.
    assert.deepEqual(await pruneAuditEvents(database.db, cutoff), { deleted: 0, anchorId: ids[3] });
    // Tampering with the first kept row is still found.
    await database.db.execute(sql`update audit_events set detail = '{"i": 99}' where id = ${ids[4]!}`);
    const tampered = await verifyAuditChain(database.db);
    assert.equal(!tampered.ok && tampered.id, ids[4]);
  });

  it("records inside the caller's transaction, and not at all when it rolls back", async () => {
    await reset();
    await assert.rejects(
      database.db.transaction(async (tx) => {
        await recordAuditEvent(tx, { type: "user.deleted", subject: "user:gone", context: CLI_CONTEXT });
        throw new Error("roll back");
      }),
      /roll back/,
    );
    assert.equal((await listAuditEvents(database.db)).length, 0);
    await recordAuditEvent(database.db, { type: "user.deleted", subject: "user:gone", context: CLI_CONTEXT });
    assert.equal((await verifyAuditChain(database.db)).ok, true);
  });

  it("stores odd strings and detail values so that they verify", async () => {
    await reset();
    await recordAuditEvent(database.db, {
      type: "login.failed",
      subject: "user:a\u0000b\uD800",
      detail: {
        username: "x".repeat(1000),
        n: 1.5,
        big: 10n,
        skip: undefined,
        when: new Date(0),
        list: [undefined, "\u0000"],
      },
      context: { actor: { kind: "anonymous" }, userAgent: "u".repeat(2000), peerAddress: "203.0.113.9" },
    });
    const [row] = await listAuditEvents(database.db);
    assert.equal(row!.subject, "user:a\uFFFDb\uFFFD");
    assert.equal(row!.userAgent!.length, 512);
    assert.deepEqual(row!.detail, {
      username: "x".repeat(1000),
      n: 1.5,
      big: "10",
      when: new Date(0).toISOString(),
      list: [null, "\uFFFD"],
    });
    assert.equal((await verifyAuditChain(database.db)).ok, true);
  });

  it("filters by type, time and user", async () => {
    await reset();
    const start = Date.now() - 60_000;
    await appendAuditEvent(
      database.db,
      { type: "user.created", subject: "user:alice", context: CLI_CONTEXT },
      new Date(start),
    );
    await appendAuditEvent(
      database.db,
      {
        type: "login.succeeded",
        subject: "user:alice",
        context: { actor: { kind: "user", id: 7, username: "alice" } },
      },
      new Date(start + 10_000),
    );
    await appendAuditEvent(
      database.db,
      { type: "login.failed", detail: { username: "bob" }, context: { actor: { kind: "anonymous" } } },
      new Date(start + 20_000),
    );
    assert.equal((await listAuditEvents(database.db, { types: ["login.succeeded", "login.failed"] })).length, 2);
    assert.equal((await listAuditEvents(database.db, { since: new Date(start + 5_000) })).length, 2);
    assert.equal((await listAuditEvents(database.db, { username: "alice" })).length, 2);
    assert.equal((await listAuditEvents(database.db, { username: "bob" })).length, 1);
    assert.equal((await listAuditEvents(database.db, { username: "tester" })).length, 0);
  });
}

describe("audit chain on PGlite", { timeout: SUITE_TIMEOUT }, () => {
  chainSuite(() => createTestDatabase({ driver: "pglite" }));
});

describeOr(skipWithoutPostgres, "audit chain on PostgreSQL", { timeout: SUITE_TIMEOUT }, () => {
  chainSuite(() => createTestDatabase({ url: postgresUrl! }));

  it("keeps one chain while two pools append at once", async () => {
    await using database = await createTestDatabase({ url: postgresUrl! });
    const second = postgresDatabase(postgres(database.url!, { max: 4, onnotice: () => {} }));
    try {
      const writers = [database, second].flatMap((d, w) =>
        Array.from({ length: 4 }, (_, k) =>
          (async () => {
            for (let i = 0; i < 25; i += 1) {
              await d.db.transaction(async (tx) => {
                await recordAuditEvent(tx, {
                  type: "token.refreshed",
                  subject: `session:${w}-${k}-${i}`,
                  context: { actor: { kind: "user", id: w * 100 + k } },
                });
              });
            }
          })(),
        ),
      );
      await Promise.all(writers);
      const result = await verifyAuditChain(second.db);
      assert.deepEqual(result.ok && result.rows, 200);
    } finally {
      await second.close();
    }
  });
});

// ---------------------------------------------------------------------------
// Events recorded through the public API: AuthService over the in-memory transport
// ---------------------------------------------------------------------------

const PASSWORD = "audit-secret-password-Zq9";
const PEER = "198.51.100.23";
const AGENT = "audit-test-agent/1.0";

function authSuite(open: () => Promise<TestDatabase>): void {
  let database: TestDatabase;
  let client: Client<typeof AuthService>;
  const clock = { offsetMs: 0 };
  let requestSeq = 0;

  before(async () => {
    database = await open();
    const keyring = await createKeyring([{ alg: "HS256", secret: SECRET }]);
    const hasher = createPasswordHasher({ scrypt: { logN: 10 } });
    await createUser(database.db, { username: "alice", passwordHash: await hasher.hash(PASSWORD) });
    await createUser(database.db, { username: "totpuser", passwordHash: await hasher.hash(PASSWORD) });
    const service = createAuthService({
      database,
      issuer: createTokenIssuer({ keyring }),
      verifier: createTokenVerifier({ keyring }),
      passwordHasher: hasher,
      loginAdmission: { burst: 3, perMinute: 0 },
      // A replay is reuse at once: the grace window has its own tests (refresh-grace.test.ts).
      refreshReuseGraceSeconds: 0,
      now: () => Date.now() + clock.offsetMs,
    });
    // What startServer sets for each call: the client address and a request id.
    const transport = createRouterTransport((router) => router.service(AuthService, service), {
      router: {
        interceptors: [
          (next) => (req) => {
            req.contextValues.set(peerAddressKey, req.header.get("x-test-peer") ?? PEER);
            req.contextValues.set(requestIdKey, `req-${++requestSeq}`);
            return next(req);
          },
        ],
      },
    });
    client = createClient(AuthService, transport);
  });
  after(() => database.close());

  const from = (peer: string) => ({ headers: { "user-agent": AGENT, "x-test-peer": peer } });

  async function rowsOf(type: AuditEventType) {
    return listAuditEvents(database.db, { types: [type] });
  }

  it("records login success and failures with the typed username, never the password", async () => {
    const ok = await client.login({ username: "alice", password: PASSWORD }, from("198.51.100.1"));
    await failure(client.login({ username: "alice", password: `${PASSWORD}-wrong` }, from("198.51.100.2")));
    // Fullwidth letters: recorded in NFKC form, as the login looks them up.
    await failure(client.login({ username: "ｎｏｂｏｄｙ", password: PASSWORD }, from("198.51.100.3")));

    const [success] = await rowsOf("login.succeeded");
    assert.ok(success);
    const me = await listAuditEvents(database.db, { username: "alice" });
    assert.ok(me.length >= 2);
    assert.equal(success.subject, "user:alice");
    assert.match(success.actor, /^user:\d+$/);
    assert.equal(success.actorUsername, "alice");
    assert.equal(success.peerAddress, "198.51.100.1");
    assert.equal(success.userAgent, AGENT);
    assert.match(success.requestId!, /^req-\d+$/);
    const refresh = await createTokenVerifier({
      keyring: await createKeyring([{ alg: "HS256", secret: SECRET }]),
    }).verify(ok.refreshToken, "refresh");
    assert.ok(refresh.ok);

    const failed = await rowsOf("login.failed");
    assert.deepEqual(
      failed.map((r) => [r.subject, r.actor, r.detail["reason"], r.peerAddress]),
      [
        ["user:alice", "anonymous", "wrong password", "198.51.100.2"],
        ["user:nobody", "anonymous", "unknown user", "198.51.100.3"],
      ],
    );
    assert.equal(failed[1]!.detail["username"], "nobody");
  });

  it("records a TOTP failure apart from a password failure", async () => {
    const { secret } = await enableTotp(database, "totpuser");
    const now = Date.now();
    const valid = new Set([-30_000, 0, 30_000].map((d) => generateTotp(secret, now + d)));
    const wrong = ["000000", "111111", "222222"].find((c) => !valid.has(c))!;
    await failure(client.login({ username: "totpuser", password: PASSWORD, otpCode: wrong }, from("198.51.100.4")));
    const [row] = await rowsOf("login.totp_failed");
    assert.ok(row);
    assert.equal(row.subject, "user:totpuser");
    assert.match(String(row.detail["reason"]), /^TOTP/);
    assert.ok(!JSON.stringify(row).includes(wrong), "the code typed is not recorded");
  });

  it("records refresh, reuse detection (family revoked) and logout with the token's user as actor", async () => {
    const first = await client.login({ username: "alice", password: PASSWORD }, from("198.51.100.5"));
    const second = await client.refresh({ refreshToken: first.refreshToken }, from("198.51.100.6"));
    const [refreshed] = await rowsOf("token.refreshed");
    assert.ok(refreshed);
    assert.match(refreshed.actor, /^user:\d+$/);
    assert.match(refreshed.subject!, /^session:[0-9a-f]{32}$/);
    assert.equal(refreshed.peerAddress, "198.51.100.6");

    await failure(client.refresh({ refreshToken: first.refreshToken }, from("203.0.113.66")));
    const [reuse] = await rowsOf("token.reuse_detected");
    assert.ok(reuse);
    assert.equal(reuse.subject, refreshed.subject);
    assert.equal(reuse.detail["familyRevoked"], true);
    assert.equal(reuse.peerAddress, "203.0.113.66");

    const third = await client.login({ username: "alice", password: PASSWORD }, from("198.51.100.7"));
    await client.logout({ refreshToken: third.refreshToken }, from("198.51.100.7"));
    const [out] = await rowsOf("session.logged_out");
    assert.ok(out);
    assert.equal(out.actor, refreshed.actor);
    assert.equal(out.userAgent, AGENT);
    assert.ok(second.accessToken.length > 0);
  });

  it("a login flood from one address writes one admission row a minute, with its count", async () => {
    const flood = "192.0.2.99";
    const outcomes = await Promise.allSettled(
      Array.from({ length: 60 }, (_, i) => client.login({ username: `flood-${i}`, password: "x" }, from(flood))),
    );
    assert.equal(outcomes.filter((o) => o.status === "rejected").length, 60);
    // The refusals are counted in memory: nothing is written during the minute.
    assert.equal((await rowsOf("admission.refused")).length, 0);
    // The next minute's first refusal writes the last minute's count.
    clock.offsetMs += 61_000;
    await failure(client.login({ username: "flood-late", password: "x" }, from(flood)));
    let rows: Awaited<ReturnType<typeof rowsOf>> = [];
    for (let i = 0; i < 100 && rows.length === 0; i += 1) {
      await sleep(50);
      rows = await rowsOf("admission.refused");
    }
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.subject, `address:${flood}`);
    assert.equal(rows[0]!.detail["count"], 57, "60 attempts, 3 admitted");
    assert.equal(rows[0]!.peerAddress, flood);
    // The three admitted ones are ordinary failures.
    const failedFlood = (await rowsOf("login.failed")).filter((r) => r.peerAddress === flood);
    assert.equal(failedFlood.length, 3);
  });

  it("records a service account's client-credentials exchange, never the secret", async () => {
    const secret = "robot-secret-Q8d-long-enough";
    const hasher = createPasswordHasher({ scrypt: { logN: 10 } });
    const robot = await createServiceAccount(database.db, {
      name: "robot",
      clientId: "svc_robot",
      secretHash: await hasher.hash(secret),
    });
    await client.serviceToken({ clientId: "svc_robot", clientSecret: secret }, from("198.51.100.40"));
    await failure(client.serviceToken({ clientId: "svc_robot", clientSecret: `${secret}-no` }, from("198.51.100.41")));
    await failure(client.serviceToken({ clientId: "svc_nobody", clientSecret: secret }, from("198.51.100.42")));
    const ok = (await rowsOf("login.succeeded")).filter((r) => r.subject === "client:svc_robot");
    assert.equal(ok.length, 1);
    assert.equal(ok[0]!.actor, `service:${robot.id}`);
    assert.equal(ok[0]!.peerAddress, "198.51.100.40");
    const failed = (await rowsOf("login.failed")).filter((r) => r.subject?.startsWith("client:"));
    assert.deepEqual(
      failed.map((r) => [r.subject, r.detail["reason"], r.peerAddress]),
      [
        ["client:svc_robot", "wrong client secret", "198.51.100.41"],
        ["client:svc_nobody", "unknown client id", "198.51.100.42"],
      ],
    );
    assert.ok(!JSON.stringify(await listAuditEvents(database.db, { limit: 10_000 })).includes(secret));
  });

  it("never records a password, and the chain verifies", async () => {
    const all = await listAuditEvents(database.db, { limit: 10_000 });
    assert.ok(all.length > 5);
    assert.ok(!JSON.stringify(all).includes(PASSWORD));
    assert.equal((await verifyAuditChain(database.db)).ok, true);
  });
}

describe("audited AuthService on PGlite", { timeout: SUITE_TIMEOUT }, () => {
  authSuite(() => createTestDatabase({ driver: "pglite" }));
});

describeOr(skipWithoutPostgres, "audited AuthService on PostgreSQL", { timeout: SUITE_TIMEOUT }, () => {
  authSuite(() => createTestDatabase({ url: postgresUrl! }));
});

// ---------------------------------------------------------------------------
// Every CLI write, through the CLI's main function; audit list, verify, prune
// ---------------------------------------------------------------------------

const CLI_PASSWORD = "cli-password-Yx7-secret";

function parseNdjson(stdout: string): AuditEventJson[] {
  return stdout
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as AuditEventJson);
}

function cliSuite(
  setup: () => Promise<{
    env: NodeJS.ProcessEnv;
    withStore<T>(fn: (db: DrizzleDb) => Promise<T>): Promise<T>;
    close(): Promise<void>;
  }>,
): void {
  let env: NodeJS.ProcessEnv;
  let withStore: <T>(fn: (db: DrizzleDb) => Promise<T>) => Promise<T>;
  let close: () => Promise<void>;
  const osUser = userInfo().username;
  const secrets: string[] = [CLI_PASSWORD];

  before(async () => {
    ({ env, withStore, close } = await setup());
  });
  after(() => close());

  const cli = (...args: string[]) => runCliCaptured(args, env);

  it("records every write with actor cli:<OS user> and the right subject", async () => {
    const steps: [string[], AuditEventType, string | null][] = [
      [["user", "create", "carol", "--password", CLI_PASSWORD, "--staff"], "user.created", "user:carol"],
      [["user", "grant", "carol", "shop.view_order"], "permission.granted", "user:carol"],
      [["user", "revoke", "carol", "shop.view_order"], "permission.revoked", "user:carol"],
      [["user", "set-password", "carol", "--password", `${CLI_PASSWORD}-2`], "password.changed", "user:carol"],
      [["otp", "enable", "carol"], "totp.enabled", "user:carol"],
      [["token", "carol"], "token.issued", "user:carol"],
      [["group", "create", "staff"], "group.created", "group:staff"],
      [["group", "grant", "staff", "shop.change_order"], "permission.granted", "group:staff"],
      [["group", "add", "staff", "carol"], "group.members_added", "group:staff"],
      [["group", "revoke", "staff", "shop.change_order"], "permission.revoked", "group:staff"],
      [["group", "remove", "staff", "carol"], "group.members_removed", "group:staff"],
      [["group", "delete", "staff"], "group.deleted", "group:staff"],
      [["user", "link", "carol", "https://idp.example", "sub-1"], "identity.linked", "user:carol"],
      [["user", "unlink", "https://idp.example", "sub-1"], "identity.unlinked", null],
      [["service", "create", "billing"], "service.created", "service:billing"],
      [["service", "grant", "billing", "shop.view_order"], "permission.granted", "service:billing"],
      [["service", "revoke", "billing", "shop.view_order"], "permission.revoked", "service:billing"],
      [["service", "rotate", "billing"], "service.secret_rotated", "service:billing"],
      [["service", "deactivate", "billing"], "service.deactivated", "service:billing"],
      [["service", "activate", "billing"], "service.activated", "service:billing"],
      [["service", "delete", "billing"], "service.deleted", "service:billing"],
      [["user", "deactivate", "carol"], "user.deactivated", "user:carol"],
      [["user", "activate", "carol"], "user.activated", "user:carol"],
      [["user", "delete", "carol"], "user.deleted", "user:carol"],
    ];
    // One CLI run per step (each opens the database: seconds on PGlite), then one listing.
    for (const [args] of steps) {
      const result = await cli(...args);
      assertOk(result);
      // What the command printed that is a credential (tokens, TOTP URI, client secrets) must not be recorded.
      for (const match of result.stdout.matchAll(/"(?:client_secret|access_token|refresh_token)":\s*"([^"]+)"/g))
        secrets.push(match[1]!);
      for (const match of result.stdout.matchAll(/secret=([A-Z2-7]+)/g)) secrets.push(match[1]!);
    }
    // A write that fails records nothing: the audit row rolls back with it.
    assert.equal((await cli("user", "grant", "nosuchuser", "shop.view_order")).code, 1);
    const rows = parseNdjson((await cli("audit", "list", "--json")).stdout);
    assert.deepEqual(
      rows.map((r) => [r.type, r.subject]),
      steps.map(([, type, subject]) => [type, subject]),
      "each write records one row, in order",
    );
    for (const row of rows) {
      assert.equal(row.actor, `cli:${osUser}`);
      assert.equal(row.actorUsername, osUser);
    }
    // Ending a session names it; the listing gives the id.
    assertOk(await cli("user", "create", "dave", "--password", CLI_PASSWORD));
    assertOk(await cli("token", "dave"));
    const [session] = JSON.parse((await cli("session", "list", "dave", "--json")).stdout) as { id: string }[];
    assertOk(await cli("session", "revoke", session!.id));
    const [ended] = parseNdjson((await cli("audit", "list", "--json", "--type", "session.revoked")).stdout);
    assert.equal(ended?.subject, `session:${session!.id}`);
    assert.equal(ended?.actor, `cli:${osUser}`);
  });

  it("lists with filters, as text and NDJSON, and never shows a password or secret", async () => {
    const all = await cli("audit", "list", "--json");
    assertOk(all);
    for (const secret of secrets) assert.ok(!all.stdout.includes(secret), "no credential in the audit log");
    const services = parseNdjson((await cli("audit", "list", "--json", "--type", "service.*")).stdout);
    assert.equal(services.length, 5);
    const grants = parseNdjson(
      (await cli("audit", "list", "--json", "--type", "permission.granted,permission.revoked")).stdout,
    );
    assert.equal(grants.length, 6);
    const carol = parseNdjson((await cli("audit", "list", "--json", "--user", "carol")).stdout);
    assert.ok(carol.length >= 9 && carol.every((r) => r.subject === "user:carol"));
    const recent = parseNdjson((await cli("audit", "list", "--json", "--since", "1h")).stdout);
    assert.equal(recent.length, all.stdout.trim().split("\n").length);
    assert.equal(parseNdjson((await cli("audit", "list", "--json", "--since", "2999-01-01")).stdout).length, 0);
    const limited = parseNdjson(
      (await cli("audit", "list", "--json", "--limit", "2", "--after", String(recent[0]!.id))).stdout,
    );
    assert.deepEqual(
      limited.map((r) => r.id),
      [recent[1]!.id, recent[2]!.id],
    );
    const text = await cli("audit", "list", "--type", "user.created");
    assertOk(text);
    assert.match(text.stdout, new RegExp(`^\\d+ \\S+ user\\.created cli:${osUser} user:carol `));
    assert.equal((await cli("audit", "list", "--type", "nonsense")).code, 2);
    assert.equal((await cli("audit", "list", "--since", "yesterday")).code, 2);
  });

  it("verify passes, then exits 1 naming the row altered, or the one after a row removed", async () => {
    const ok = await cli("audit", "verify");
    assertOk(ok);
    assert.match(ok.stdout, /^audit chain intact: \d+ rows from the start to row \d+/);
    const rows = parseNdjson((await cli("audit", "list", "--json")).stdout);
    const victim = rows[3]!;
    await withStore((db) =>
      db.execute(sql`update audit_events set actor = 'cli:someone-else' where id = ${victim.id}`),
    );
    const altered = await cli("audit", "verify");
    assert.equal(altered.code, 1);
    assert.match(altered.stderr, new RegExp(`audit row ${victim.id} was altered`));
    await withStore((db) => db.execute(sql`update audit_events set actor = ${victim.actor} where id = ${victim.id}`));
    assertOk(await cli("audit", "verify"));
    await withStore((db) => db.execute(sql`delete from audit_events where id = ${victim.id}`));
    const removed = await cli("audit", "verify");
    assert.equal(removed.code, 1);
    assert.match(removed.stderr, new RegExp(`audit row ${rows[4]!.id} does not follow row ${rows[2]!.id}`));
  });

  it("prune removes old events and the rest still verifies", async () => {
    // Start over with a sound chain: old events, then new ones.
    await withStore(async (db) => {
      await db.delete(auditEvents);
      await db
        .update(auditChain)
        .set({ headId: 0, headHash: "0".repeat(64), anchorId: 0, anchorHash: "0".repeat(64) })
        .where(eq(auditChain.id, 1));
      for (let i = 0; i < 5; i += 1) {
        await appendAuditEvent(
          db,
          { type: "user.created", subject: `user:old${i}`, context: CLI_CONTEXT },
          new Date(Date.now() - (200 - i) * 86_400_000),
        );
      }
    });
    assertOk(await cli("group", "create", "fresh"));
    const pruned = await cli("audit", "prune");
    assertOk(pruned);
    assert.equal(pruned.stdout.trim(), "pruned 5 audit events older than 90 days");
    const rows = parseNdjson((await cli("audit", "list", "--json")).stdout);
    assert.deepEqual(
      rows.map((r) => r.type),
      ["group.created", "audit.pruned"],
    );
    assert.equal(rows[1]!.actor, `cli:${osUser}`);
    const verified = await cli("audit", "verify");
    assertOk(verified);
    assert.match(verified.stdout, /^audit chain intact: 2 rows from the anchor after pruned row \d+/);
    const keep = await runCliCaptured(["audit", "prune"], { ...env, PROTOGUARD_AUDIT_RETENTION_DAYS: "0" });
    assert.equal(keep.stdout.trim(), "retention is 0 days (keep for ever): nothing pruned");
  });
}

describe("audited CLI on PGlite", { timeout: 4 * SUITE_TIMEOUT }, () => {
  cliSuite(async () => {
    const dir = await mkdtemp(join(tmpdir(), "protoguard-audit-cli-"));
    const dataDir = join(dir, "data");
    return {
      env: cleanEnv({ PROTOGUARD_DATA_DIR: dataDir }),
      async withStore(fn) {
        const database: Database = await openDatabase({ dataDir: join(dataDir, "pgdata") });
        try {
          return await fn(database.db);
        } finally {
          await database.close();
        }
      },
      close: () => rm(dir, { recursive: true, force: true }),
    };
  });
});

describeOr(skipWithoutPostgres, "audited CLI on PostgreSQL", { timeout: SUITE_TIMEOUT }, () => {
  cliSuite(async () => {
    const database = await createTestDatabase({ url: postgresUrl! });
    return {
      env: cleanEnv({ DATABASE_URL: database.url!, PROTOGUARD_JWT_SECRET: SECRET }),
      withStore: (fn) => fn(database.db),
      close: () => database.close(),
    };
  });
});
