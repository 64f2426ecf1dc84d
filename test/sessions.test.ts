/**
 * Sessions (refresh-token families) as users see and end them: AuthService.ListSessions and
 * RevokeSession through real h2c servers (startServer), on PGlite with one server and on
 * PostgreSQL with two instances on one database, where revoking through one ends the session's
 * calls and open streams on the other.
 */
import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { GuardedService, StaffOnlyService } from "../gen/guardtest/v1/guarded_pb.js";
import { AuthService } from "../gen/protoguard/v1/auth_pb.js";
import { createAuthService } from "../src/lifecycle/auth-service.js";
import { createPasswordHasher } from "../src/lifecycle/passwords.js";
import {
  authErrorReason,
  createAuth,
  createKeyring,
  createTokenIssuer,
  createTokenVerifier,
} from "../src/exports/protoguard.js";
import { createPrincipalSource } from "../src/exports/store.js";
import { startServer, type RunningServer } from "../src/exports/server.js";
import { listSessions, revokeSession } from "../src/store/sessions.js";
import { openDatabase } from "../src/store/database.js";
import type { Database } from "../src/store/database-handle.js";
import { createServiceAccount } from "../src/store/service-accounts.js";
import { listAuditEvents } from "../src/store/audit.js";
import { createUser } from "../src/store/users.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/database.js";
import { StoreError } from "../src/store/errors.js";
import { bearer } from "./helpers/connect.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";
import { createStreamProbe, streamingRoutes } from "./helpers/stream-service.js";

const SUITE_TIMEOUT = 120_000;
/** The bound between a revocation and the end of an open stream. */
const WITHIN_MS = 1000;
const hasher = createPasswordHasher({ scrypt: { logN: 12 } });

/** The code and protoguard reason a call failed with, or "OK". */
async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return "OK";
  } catch (error) {
    const err = ConnectError.from(error);
    return `${Code[err.code]}/${authErrorReason(err) ?? err.rawMessage}`;
  }
}

interface Fixture {
  /** Where AuthService is served. */
  readonly one: RunningServer;
  /** Another instance on the same database (the same server on PGlite). */
  readonly two: RunningServer;
  readonly database: Database;
}

function sessionSuite(open: () => Promise<{ fixture: Fixture; close: () => Promise<void> }>): void {
  let fixture: Fixture;
  let close: (() => Promise<void>) | undefined;
  let auth: Client<typeof AuthService>;
  let guarded: Client<typeof GuardedService>;
  let staffOnly: Client<typeof StaffOnlyService>;

  before(async () => {
    ({ fixture, close } = await open());
    auth = createClient(AuthService, createGrpcTransport({ baseUrl: fixture.one.url }));
    const other = createGrpcTransport({ baseUrl: fixture.two.url });
    guarded = createClient(GuardedService, other);
    staffOnly = createClient(StaffOnlyService, other);
    const db = fixture.database.db;
    const passwordHash = await hasher.hash("correct horse");
    await createUser(db, { username: "alice", passwordHash, isStaff: true });
    await createUser(db, { username: "bob", passwordHash });
    await createServiceAccount(db, { name: "robot", clientId: "robot-id", secretHash: await hasher.hash("s3cret") });
  });
  after(() => close?.());

  const login = (username: string, userAgent: string) =>
    auth.login({ username, password: "correct horse" }, { headers: { "user-agent": userAgent } });

  it("lists the caller's live sessions with peer, user agent and times; marks the current one", async () => {
    const before = Date.now();
    const laptop = await login("alice", "laptop-browser/1.0");
    const phone = await login("alice", "phone-app/2.0");
    await login("bob", "bob-agent");
    const { sessions } = await auth.listSessions({}, bearer(laptop.accessToken));
    assert.equal(sessions.length, 2);
    const current = sessions.filter((s) => s.current);
    assert.equal(current.length, 1);
    assert.equal(current[0]!.userAgent.split(" ")[0], "laptop-browser/1.0");
    const other = sessions.find((s) => !s.current)!;
    assert.equal(other.userAgent.split(" ")[0], "phone-app/2.0");
    for (const session of sessions) {
      assert.equal(session.peerAddress, "127.0.0.1");
      assert.match(session.id, /^[0-9a-f]{32}$/);
      const created = timestampDate(session.createdAt!).getTime();
      assert.ok(created >= before - 1000 && created <= Date.now() + 1000);
      assert.equal(timestampDate(session.lastRefreshedAt!).getTime(), created);
      assert.ok(timestampDate(session.accessExpiresAt!).getTime() > Date.now());
    }
    // Seen from the phone, the phone's session is the current one.
    const fromPhone = await auth.listSessions({}, bearer(phone.accessToken));
    assert.equal(fromPhone.sessions.find((s) => s.current)?.id, other.id);
    // Bob sees only his own.
    const bobs = await auth.listSessions({}, bearer((await login("bob", "bob-agent")).accessToken));
    assert.equal(bobs.sessions.length, 2);
    assert.ok(bobs.sessions.every((s) => s.id !== other.id && s.id !== current[0]!.id));
    // Anonymous: UNAUTHENTICATED; a service account: PERMISSION_DENIED (people only).
    assert.equal(await outcome(auth.listSessions({})), "Unauthenticated/TOKEN_MISSING");
    const robot = await auth.serviceToken({ clientId: "robot-id", clientSecret: "s3cret" });
    assert.equal(await outcome(auth.listSessions({}, bearer(robot.accessToken))), "PermissionDenied/PRINCIPAL_KIND");
  });

  it("a refresh keeps the session, moves its last refresh and access expiry, and stays current", async () => {
    const first = await login("bob", "before-refresh");
    const listed = (await auth.listSessions({}, bearer(first.accessToken))).sessions.find((s) => s.current)!;
    await sleep(1100);
    const next = await auth.refresh(
      { refreshToken: first.refreshToken },
      { headers: { "user-agent": "after-refresh/1" } },
    );
    const sessions = (await auth.listSessions({}, bearer(next.accessToken))).sessions;
    const same = sessions.find((s) => s.id === listed.id)!;
    assert.ok(same.current, "the refreshed token's session is current");
    assert.equal(timestampDate(same.createdAt!).getTime(), timestampDate(listed.createdAt!).getTime());
    assert.ok(timestampDate(same.lastRefreshedAt!).getTime() > timestampDate(listed.createdAt!).getTime());
    assert.ok(timestampDate(same.accessExpiresAt!).getTime() > timestampDate(listed.accessExpiresAt!).getTime());
    assert.equal(same.userAgent.split(" ")[0], "after-refresh/1");
    // The old access token of the session still marks it current (it was issued in it).
    const fromOld = (await auth.listSessions({}, bearer(first.accessToken))).sessions;
    assert.equal(fromOld.find((s) => s.current)?.id, listed.id);
  });

  it("another user's session id and an unknown one are NOT_FOUND; nothing is revoked", async () => {
    const alice = await login("alice", "alice-agent");
    const bob = await login("bob", "bob-agent");
    const aliceSession = (await auth.listSessions({}, bearer(alice.accessToken))).sessions.find((s) => s.current)!;
    const refused = await outcome(auth.revokeSession({ sessionId: aliceSession.id }, bearer(bob.accessToken)));
    assert.equal(refused, "NotFound/session not found");
    assert.equal(
      await outcome(auth.revokeSession({ sessionId: "0".repeat(32) }, bearer(bob.accessToken))),
      "NotFound/session not found",
    );
    assert.equal(
      await outcome(auth.revokeSession({ sessionId: "" }, bearer(bob.accessToken))),
      "NotFound/session not found",
    );
    assert.equal(await outcome(guarded.authenticatedUnary({ text: "x" }, bearer(alice.accessToken))), "OK");
  });

  it("revoking a session refuses its next call (on the other instance) and its refresh, and ends its streams", async () => {
    const keep = await login("alice", "keep");
    const doomed = await login("alice", "doomed");
    const doomedId = (await auth.listSessions({}, bearer(doomed.accessToken))).sessions.find((s) => s.current)!.id;
    assert.equal(await outcome(guarded.authenticatedUnary({ text: "x" }, bearer(doomed.accessToken))), "OK");
    // An open stream of the doomed session on the other instance.
    const stream = staffOnly.inheritedServerStream({ text: "t" }, bearer(doomed.accessToken));
    const iterator = stream[Symbol.asyncIterator]();
    assert.equal((await iterator.next()).done, false);
    const ended = (async () => {
      try {
        for (;;) if ((await iterator.next()).done) return { at: Date.now(), error: undefined };
      } catch (error) {
        return { at: Date.now(), error: ConnectError.from(error) };
      }
    })();

    const revokedAt = Date.now();
    await auth.revokeSession({ sessionId: doomedId }, bearer(keep.accessToken));
    const end = await ended;
    assert.ok(end.error, "the stream ended with an error");
    assert.equal(end.error.code, Code.Unauthenticated);
    assert.equal(authErrorReason(end.error), "TOKEN_REVOKED");
    assert.ok(end.at - revokedAt < WITHIN_MS, `stream ended ${end.at - revokedAt} ms after the revocation`);

    // Its next call is refused on the other instance within the bound, its refresh fails.
    let answer = "";
    for (const until = Date.now() + WITHIN_MS; Date.now() < until; await sleep(25)) {
      answer = await outcome(guarded.authenticatedUnary({ text: "x" }, bearer(doomed.accessToken)));
      if (answer !== "OK") break;
    }
    assert.equal(answer, "Unauthenticated/TOKEN_REVOKED");
    assert.equal(await outcome(auth.refresh({ refreshToken: doomed.refreshToken })), "Unauthenticated/TOKEN_REVOKED");
    // The other session goes on, and the list no longer shows the ended one.
    assert.equal(await outcome(guarded.authenticatedUnary({ text: "x" }, bearer(keep.accessToken))), "OK");
    const left = (await auth.listSessions({}, bearer(keep.accessToken))).sessions;
    assert.ok(!left.some((s) => s.id === doomedId));
    assert.ok(left.some((s) => s.current));
    // Revoking it again is a no-op for its owner.
    assert.equal(await outcome(auth.revokeSession({ sessionId: doomedId }, bearer(keep.accessToken))), "OK");
    // The ending is audited with the user as actor, in its transaction.
    const [audited] = await listAuditEvents(fixture.database.db, { types: ["session.revoked"] });
    assert.equal(audited?.subject, `session:${doomedId}`);
    assert.match(audited?.actor ?? "", /^user:\d+$/);
    assert.equal(audited?.actorUsername, "alice");
  });

  it("revoking the current session is a logout of the caller", async () => {
    const self = await login("bob", "self");
    const id = (await auth.listSessions({}, bearer(self.accessToken))).sessions.find((s) => s.current)!.id;
    await auth.revokeSession({ sessionId: id }, bearer(self.accessToken));
    let answer = "";
    for (const until = Date.now() + WITHIN_MS; Date.now() < until; await sleep(25)) {
      answer = await outcome(auth.listSessions({}, bearer(self.accessToken)));
      if (answer !== "OK") break;
    }
    assert.equal(answer, "Unauthenticated/TOKEN_REVOKED");
  });

  it("store: listSessions and revokeSession by owner", async () => {
    const db = fixture.database.db;
    const alice = (await login("alice", "store")).accessToken;
    const aliceId = (await auth.whoAmI({}, bearer(alice))).user!.id;
    const sessions = await listSessions(db, aliceId, new Date(), "no-such-jti");
    assert.ok(sessions.length > 0 && sessions.every((s) => !s.current && s.userId === aliceId));
    const newestFirst = sessions.map((s) => s.lastRefreshedAt.getTime());
    assert.deepEqual(
      newestFirst,
      [...newestFirst].sort((a, b) => b - a),
    );
    await assert.rejects(
      revokeSession(db, sessions[0]!.id, new Date(), aliceId + 1000),
      (e) => e instanceof StoreError && e.code === "SESSION_NOT_FOUND",
    );
    assert.equal(await revokeSession(db, sessions[0]!.id, new Date()), aliceId);
    assert.equal((await listSessions(db, aliceId, new Date())).length, sessions.length - 1);
  });
}

async function serve(database: Database, withAuth: boolean): Promise<RunningServer> {
  const keyring = await createKeyring([{ alg: "HS256", secret: "k".repeat(32) }]);
  const issuer = createTokenIssuer({ keyring });
  const verifier = createTokenVerifier({ keyring });
  const probe = createStreamProbe();
  const authService = createAuthService({ database, issuer, verifier, passwordHasher: hasher });
  return startServer({
    runtime: { database, keyring, verifier },
    routes: (router) => {
      streamingRoutes(probe)(router);
      if (withAuth) router.service(AuthService, authService);
    },
    port: 0,
    logger: pino({ level: "silent" }),
  });
}

describeOr(undefined, "sessions on PGlite (one server)", { timeout: SUITE_TIMEOUT }, () => {
  sessionSuite(async () => {
    const database: TestDatabase = await createTestDatabase({ driver: "pglite" });
    const server = await serve(database, true);
    return {
      fixture: { one: server, two: server, database },
      close: async () => {
        await server.close();
        await database.close();
      },
    };
  });
});

describeOr(
  skipWithoutPostgres,
  "sessions on PostgreSQL (two instances on one database)",
  { timeout: SUITE_TIMEOUT },
  () => {
    sessionSuite(async () => {
      const database: TestDatabase = await createTestDatabase({ driver: "postgres", url: postgresUrl! });
      const second = await openDatabase({ url: database.url! });
      const one = await serve(database, true);
      const two = await serve(second, false);
      return {
        fixture: { one, two, database },
        close: async () => {
          await two.close();
          await one.close();
          await second.close();
          await database.close();
        },
      };
    });
  },
);

describeOr(
  undefined,
  "sessions through the interceptor alone (in-memory transport)",
  { timeout: SUITE_TIMEOUT },
  () => {
    let database: TestDatabase;
    let principals: Awaited<ReturnType<typeof createPrincipalSource>>;
    let auth: Client<typeof AuthService>;
    before(async () => {
      database = await createTestDatabase({ driver: "pglite" });
      await createUser(database.db, { username: "erin", passwordHash: await hasher.hash("correct horse") });
      const keyring = await createKeyring([{ alg: "HS256", secret: "m".repeat(32) }]);
      const verifier = createTokenVerifier({ keyring });
      const issuer = createTokenIssuer({ keyring });
      principals = await createPrincipalSource({ database });
      const guard = createAuth({ services: [AuthService], verifier, principals });
      const service = createAuthService({ database, issuer, verifier, passwordHasher: hasher });
      // No request gate: the interceptor alone decides, and must hand the verdict on.
      const transport = createRouterTransport((router) => router.service(AuthService, service), {
        router: { interceptors: [guard.interceptor] },
      });
      auth = createClient(AuthService, transport);
    });
    after(async () => {
      await principals?.close();
      await database?.close();
    });

    it("marks the current session without a gate, and records no peer where the transport has none", async () => {
      const one = await auth.login({ username: "erin", password: "correct horse" });
      await auth.login({ username: "erin", password: "correct horse" });
      const { sessions } = await auth.listSessions({}, bearer(one.accessToken));
      assert.equal(sessions.length, 2);
      assert.equal(sessions.filter((s) => s.current).length, 1);
      assert.ok(sessions.every((s) => s.peerAddress === ""));
      const current = sessions.find((s) => s.current)!;
      await auth.revokeSession({ sessionId: current.id }, bearer(one.accessToken));
      assert.equal(await outcome(auth.listSessions({}, bearer(one.accessToken))), "Unauthenticated/TOKEN_REVOKED");
    });
  },
);
