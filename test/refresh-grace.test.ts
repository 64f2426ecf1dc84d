/**
 * The refresh reuse grace window: a rotated refresh token presented again inside
 * PROTOGUARD_REFRESH_REUSE_GRACE_S gets the same successor pair (no new family, no revocation);
 * after the window, or with the window off, reuse revokes the family as before. 50 concurrent
 * Refresh calls with one token: one rotation, 50 identical answers; on PostgreSQL over a real
 * HTTP/2 server with a connection per call, on PGlite through the in-memory transport.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { eq } from "drizzle-orm";
import { AuthService } from "../gen/protoguard/v1/auth_pb.js";
import { createAuthService, createPasswordHasher } from "../src/exports/auth-service.js";
import type { Database } from "../src/exports/store.js";
import { createTestAuth, createTestDatabase, type TestAuth } from "../src/exports/testing.js";
import { openSuccessorPair } from "../src/lifecycle/refresh-grace.js";
import { loadConfig } from "../src/runtime/config.js";
import * as schema from "../src/store/schema.js";
import { bearer, expectError } from "./helpers/connect.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";

const T0 = 1_800_000_000_000;
const PASSWORD = "correct horse battery";
const GRACE_S = 5;

interface Fixture {
  t: TestAuth;
  auth: Client<typeof AuthService>;
  clock: { ms: number };
}

async function fixture(graceSeconds: number | undefined, database?: Database, frozen = true): Promise<Fixture> {
  const clock = { ms: T0 };
  const now = frozen ? () => clock.ms : Date.now;
  const t = await createTestAuth({
    ...(database && { database }),
    routes: () => {},
    now,
    passwordHasher: createPasswordHasher({ scrypt: { logN: 10 } }),
    authService: () => ({ now, ...(graceSeconds !== undefined && { refreshReuseGraceSeconds: graceSeconds }) }),
  });
  return { t, auth: createClient(AuthService, t.transport), clock };
}

/** Audit events of one session (refresh family), by type. */
async function auditTypes(db: Database["db"], familyId: string): Promise<string[]> {
  const rows = await db
    .select({ type: schema.auditEvents.type })
    .from(schema.auditEvents)
    .where(eq(schema.auditEvents.subject, `session:${familyId}`));
  return rows.map((r) => r.type);
}

async function rowsOfFamily(db: Database["db"], familyId: string) {
  return db.select().from(schema.refreshTokens).where(eq(schema.refreshTokens.familyId, familyId));
}

async function familyOf(db: Database["db"], refreshToken: string, t: TestAuth) {
  const verified = await t.verifier.verify(refreshToken, "refresh");
  assert.ok(verified.ok);
  const [row] = await db.select().from(schema.refreshTokens).where(eq(schema.refreshTokens.jti, verified.claims.jti));
  assert.ok(row);
  return row;
}

function graceSuite(database: () => Database | undefined) {
  let f: Fixture;
  let off: Fixture;
  let user = 0;
  const login = async (g: Fixture) => {
    const username = `tab-user-${++user}`;
    await g.t.createUser({ username, password: PASSWORD });
    return g.auth.login({ username, password: PASSWORD });
  };
  before(async () => {
    f = await fixture(GRACE_S, database());
    off = await fixture(0, database());
  });
  after(async () => {
    await f?.t.close();
    await off?.t.close();
  });

  it("a second Refresh inside the window gets the same pair: no new family, no revocation", async () => {
    const first = await login(f);
    const a = await f.auth.refresh({ refreshToken: first.refreshToken });
    f.clock.ms += (GRACE_S - 1) * 1000;
    const b = await f.auth.refresh({ refreshToken: first.refreshToken });
    assert.deepEqual(
      { accessToken: b.accessToken, refreshToken: b.refreshToken },
      { accessToken: a.accessToken, refreshToken: a.refreshToken },
    );
    const old = await familyOf(f.t.database.db, first.refreshToken, f.t);
    const rows = await rowsOfFamily(f.t.database.db, old.familyId);
    assert.equal(rows.length, 2, "one rotation");
    assert.ok(
      rows.every((r) => r.revokedAt === null),
      "nothing revoked",
    );
    assert.deepEqual(await auditTypes(f.t.database.db, old.familyId), ["token.refreshed"], "the replay is no reuse");
    // The pair works, and rotates on as usual.
    assert.equal((await f.auth.whoAmI({}, bearer(a.accessToken))).user?.username, `tab-user-${user}`);
    const c = await f.auth.refresh({ refreshToken: a.refreshToken });
    assert.notEqual(c.refreshToken, a.refreshToken);
  });

  it("the successor is stored sealed, opens only with the old token, and is dropped after the window", async () => {
    const first = await login(f);
    const a = await f.auth.refresh({ refreshToken: first.refreshToken });
    const row = await familyOf(f.t.database.db, first.refreshToken, f.t);
    assert.ok(row.successorSealed !== null);
    for (const part of [...a.refreshToken.split("."), ...a.accessToken.split(".")]) {
      assert.ok(!row.successorSealed.includes(part), "no part of the successor pair is stored in clear");
    }
    assert.deepEqual(openSuccessorPair(first.refreshToken, row.jti, row.successorSealed), {
      accessToken: a.accessToken,
      refreshToken: a.refreshToken,
    });
    assert.equal(openSuccessorPair(a.refreshToken, row.jti, row.successorSealed), undefined);
    // A purge is due at most once a minute, run by a Refresh.
    f.clock.ms += 61_000;
    const other = await login(f);
    await f.auth.refresh({ refreshToken: other.refreshToken });
    assert.equal((await familyOf(f.t.database.db, first.refreshToken, f.t)).successorSealed, null);
  });

  it("a replay after the window revokes the family, the successor pair included", async () => {
    const first = await login(f);
    const a = await f.auth.refresh({ refreshToken: first.refreshToken });
    f.clock.ms += (GRACE_S + 1) * 1000;
    await expectError(f.auth.refresh({ refreshToken: first.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(f.auth.whoAmI({}, bearer(a.accessToken)), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(f.auth.refresh({ refreshToken: a.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    const old = await familyOf(f.t.database.db, first.refreshToken, f.t);
    assert.ok(
      (await auditTypes(f.t.database.db, old.familyId)).includes("token.reuse_detected"),
      "the reuse is audited",
    );
  });

  it("a family logged out inside the window is not brought back by a replay", async () => {
    const first = await login(f);
    const a = await f.auth.refresh({ refreshToken: first.refreshToken });
    await f.auth.logout({ refreshToken: a.refreshToken });
    await expectError(f.auth.refresh({ refreshToken: first.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
  });

  it("with the window at 0, reuse revokes at once, as before", async () => {
    const first = await login(off);
    const a = await off.auth.refresh({ refreshToken: first.refreshToken });
    assert.equal(
      (await familyOf(off.t.database.db, first.refreshToken, off.t)).successorSealed,
      null,
      "nothing sealed",
    );
    await expectError(off.auth.refresh({ refreshToken: first.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(off.auth.whoAmI({}, bearer(a.accessToken)), Code.Unauthenticated, "TOKEN_REVOKED");
  });

  it("50 concurrent Refresh calls with one token: one rotation, 50 identical answers, no revocation", async () => {
    const first = await login(f);
    const answers = await Promise.all(
      Array.from({ length: 50 }, () => f.auth.refresh({ refreshToken: first.refreshToken })),
    );
    assert.equal(new Set(answers.map((r) => `${r.accessToken} ${r.refreshToken}`)).size, 1);
    const old = await familyOf(f.t.database.db, first.refreshToken, f.t);
    const rows = await rowsOfFamily(f.t.database.db, old.familyId);
    assert.equal(rows.length, 2);
    assert.ok(rows.every((r) => r.revokedAt === null));
  });
}

describe("refresh reuse grace: configuration", () => {
  it("PROTOGUARD_REFRESH_REUSE_GRACE_S defaults to 5, takes 0..60", () => {
    assert.equal(loadConfig({}).refreshReuseGraceSeconds, 5);
    assert.equal(loadConfig({ PROTOGUARD_REFRESH_REUSE_GRACE_S: "0" }).refreshReuseGraceSeconds, 0);
    assert.throws(() => loadConfig({ PROTOGUARD_REFRESH_REUSE_GRACE_S: "61" }), /PROTOGUARD_REFRESH_REUSE_GRACE_S/);
  });
  it("createAuthService refuses a window outside 0..60", async () => {
    await using t = await createTestAuth({ routes: () => {} });
    const parts = { database: t.database, issuer: t.issuer, verifier: t.verifier };
    assert.throws(() => createAuthService({ ...parts, refreshReuseGraceSeconds: -1 }), RangeError);
    assert.throws(() => createAuthService({ ...parts, refreshReuseGraceSeconds: 1.5 }), RangeError);
  });
});

describe("refresh reuse grace on PGlite", () => {
  graceSuite(() => undefined);
});

describeOr(skipWithoutPostgres, "refresh reuse grace on PostgreSQL", { timeout: 180_000 }, () => {
  let database: Database | undefined;
  before(async () => {
    database = await createTestDatabase({ driver: "postgres", url: postgresUrl! });
  });
  after(async () => {
    await database?.close();
  });
  describe("suite", () => graceSuite(() => database));

  it("50 concurrent Refresh calls over 50 HTTP/2 connections to a real server: one rotation, 50 identical answers", async () => {
    const f = await fixture(GRACE_S, database, false);
    const routes = (router: Parameters<Parameters<typeof connectNodeAdapter>[0]["routes"]>[0]) =>
      router.service(
        AuthService,
        createAuthService({
          database: f.t.database,
          issuer: f.t.issuer,
          verifier: f.t.verifier,
          passwordHasher: f.t.passwordHasher,
          refreshReuseGraceSeconds: GRACE_S,
        }),
      );
    const server = http2.createServer(
      connectNodeAdapter({ routes, interceptors: [f.t.auth.interceptor], requestGate: f.t.auth.requestGate }),
    );
    const sessions = new Set<http2.ServerHttp2Session>();
    let connections = 0;
    server.on("session", (session) => {
      connections++;
      sessions.add(session);
      session.on("close", () => sessions.delete(session));
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const managers = Array.from({ length: 50 }, () => new Http2SessionManager(baseUrl));
    try {
      await f.t.createUser({ username: "two-tabs", password: PASSWORD });
      const clients = managers.map((sessionManager) =>
        createClient(AuthService, createGrpcTransport({ baseUrl, sessionManager })),
      );
      const first = await clients[0]!.login({ username: "two-tabs", password: PASSWORD });
      // Every connection open before the race, so the calls really arrive together.
      await Promise.all(managers.map((m) => m.connect()));
      const answers = await Promise.all(clients.map((c) => c.refresh({ refreshToken: first.refreshToken })));
      assert.equal(connections, 50, "one HTTP/2 connection per client");
      assert.equal(new Set(answers.map((r) => `${r.accessToken} ${r.refreshToken}`)).size, 1, "50 identical answers");
      const old = await familyOf(f.t.database.db, first.refreshToken, f.t);
      const rows = await rowsOfFamily(f.t.database.db, old.familyId);
      assert.equal(rows.length, 2, "exactly one rotation");
      assert.ok(
        rows.every((r) => r.revokedAt === null),
        "no revocation",
      );
      assert.equal((await clients[1]!.whoAmI({}, bearer(answers[0]!.accessToken))).user?.username, "two-tabs");
    } finally {
      for (const m of managers) m.abort();
      for (const session of sessions) session.destroy();
      await new Promise((done) => server.close(done));
      await f.t.close();
    }
  });
});
