/**
 * Open streams follow the auth state: a server-, client- or bidi-streaming
 * call admitted at its start ends with the refusal a new call would get
 * within a second of its token's exp (+ leeway), a logout, a deactivation,
 * a deletion or a lost permission — through the in-memory transport, on a
 * real h2c server in every protocol, and across two instances on one
 * PostgreSQL database. Handlers see the reason on `authSignal(ctx)` and
 * `ctx.signal`, and the call ends even though they ignore both.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
  type Client,
  type Transport,
} from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { eq } from "drizzle-orm";
import { pino } from "pino";
import { GuardedService, StaffOnlyService } from "../gen/guardtest/v1/guarded_pb.js";
import { createAuthService } from "../src/lifecycle/auth-service.js";
import { issueSession } from "../src/lifecycle/sessions.js";
import {
  authErrorReason,
  createAuth,
  createKeyring,
  createTokenIssuer,
  createTokenVerifier,
  type DecisionEvent,
} from "../src/exports/protoguard.js";
import { createPrincipalSource } from "../src/exports/store.js";
import { startServer, type RunningServer } from "../src/exports/server.js";
import { openDatabase } from "../src/store/database.js";
import { type Database } from "../src/store/database-handle.js";
import { revokeFamily } from "../src/store/refresh-tokens.js";
import { users } from "../src/store/schema.js";
import {
  createUser,
  deleteUser,
  grantUserPermissions,
  revokeUserPermissions,
  setUserActive,
} from "../src/store/users.js";
import { createTestAuth, createTestDatabase, type TestAuth, type TestDatabase } from "../src/exports/testing.js";
import { createStreamProbe, streamingRoutes, type StreamProbe } from "./helpers/stream-service.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";
import { AuthService } from "../gen/protoguard/v1/auth_pb.js";

/** The bound the issue sets between an event and the end of the call. */
const WITHIN_MS = 1000;
/** How long a test waits for an ending before it fails instead of hanging. */
const GIVE_UP_MS = 8000;

interface Ending {
  readonly error: ConnectError | undefined;
  readonly at: number;
  readonly received: number;
}

/** Reads a response stream in the background; `first` once a message arrived, `ended` with how it ended. */
function follow(stream: AsyncIterable<unknown>): { first: Promise<void>; ended: Promise<Ending> } {
  let received = 0;
  let opened!: () => void;
  const first = new Promise<void>((resolve) => (opened = resolve));
  const ended = (async (): Promise<Ending> => {
    try {
      for await (const _ of stream) {
        received++;
        opened();
      }
      return { error: undefined, at: Date.now(), received };
    } catch (error) {
      opened();
      return { error: ConnectError.from(error), at: Date.now(), received };
    }
  })();
  return { first, ended };
}

/** Settles a promise as the ending of a call, giving up after {@link GIVE_UP_MS}. */
async function ending(promise: Promise<Ending>): Promise<Ending> {
  let timer: NodeJS.Timeout | undefined;
  const giveUp = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the call did not end within ${GIVE_UP_MS} ms`)), GIVE_UP_MS);
  });
  try {
    return await Promise.race([promise, giveUp]);
  } finally {
    clearTimeout(timer);
  }
}

/** Asserts how and when a call ended. */
function assertEnded(end: Ending, eventAt: number, code: Code, reason: string): void {
  assert.ok(end.error, `the call ended without an error after ${end.received} messages`);
  assert.equal(end.error.code, code, `code: ${end.error.message}`);
  assert.equal(authErrorReason(end.error), reason);
  const latency = end.at - eventAt;
  assert.ok(latency < WITHIN_MS, `ended ${latency} ms after the event (bound ${WITHIN_MS} ms)`);
}

/** Asserts that the handler saw the same reason on authSignal(ctx) and ctx.signal. */
function assertHandlerSaw(probe: StreamProbe, method: string, code: Code, reason: string): void {
  const seen = probe.aborts.filter((a) => a.method === method);
  assert.equal(seen.length, 1, `one abort seen by ${method}`);
  for (const value of [seen[0]!.authReason, seen[0]!.ctxReason]) {
    assert.ok(value instanceof ConnectError, "the signal's reason is a ConnectError");
    assert.equal(value.code, code);
    assert.equal(authErrorReason(value), reason);
  }
}

/** A client-stream request that sends `first` and then stays open until `close()`. */
function openRequests(first: string): { messages: AsyncIterable<{ text: string }>; close: () => void } {
  let close!: () => void;
  const closed = new Promise<void>((resolve) => (close = resolve));
  async function* messages() {
    yield { text: first };
    await closed;
  }
  return { messages: messages(), close };
}

/** A bidi request stream that sends on demand and stays open until `close()`. */
function bidiRequests(): {
  messages: AsyncIterable<{ text: string }>;
  send: (text: string) => void;
  close: () => void;
} {
  const queue: ({ text: string } | null)[] = [];
  let wake: (() => void) | undefined;
  const push = (item: { text: string } | null) => {
    queue.push(item);
    wake?.();
  };
  async function* messages() {
    for (;;) {
      while (queue.length === 0) await new Promise<void>((resolve) => (wake = resolve));
      const item = queue.shift()!;
      if (item === null) return;
      yield item;
    }
  }
  return { messages: messages(), send: (text) => push({ text }), close: () => push(null) };
}

const unStaff = (database: Database, userId: number) =>
  database.db.update(users).set({ isStaff: false }).where(eq(users.id, userId));
const unSuperuser = (database: Database, userId: number) =>
  database.db.update(users).set({ isSuperuser: false }).where(eq(users.id, userId));

/** Usernames are unique per database; suites share one. */
let userSerial = 0;

/**
 * The scenarios every front-end must pass: (b)–(e) on a server stream, and
 * a client stream and a bidi stream. `setup` gives a transport to a server
 * over `database` and the probe its handlers report to.
 */
function scenarios(
  context: () => {
    database: Database;
    issuer: ReturnType<typeof createTokenIssuer>;
    transport: Transport;
    probe: StreamProbe;
  },
) {
  const fresh = (prefix: string) => `${prefix}${++userSerial}`;
  const client = () => createClient(GuardedService, context().transport);
  const headersFor = async (userId: number) => ({
    authorization: `Bearer ${(await context().issuer.issueAccess(userId)).token}`,
  });

  async function openServerStream(c: Client<typeof GuardedService>, headers: Record<string, string>) {
    const call = follow(c.permissionServerStream({ text: "tick" }, { headers }));
    await call.first;
    return call;
  }

  it("(b) logout of the token's session ends a server stream: UNAUTHENTICATED TOKEN_REVOKED", async () => {
    const { database, issuer, probe } = context();
    const user = await createUser(database.db, { username: fresh("logout") });
    await grantUserPermissions(database.db, user.username, ["shop.view_order"]);
    const session = await issueSession(database.db, issuer, user.id);
    probe.aborts.length = 0;
    const call = await openServerStream(client(), { authorization: `Bearer ${session.accessToken}` });
    const eventAt = Date.now();
    await revokeFamily(database.db, session.familyId, new Date());
    assertEnded(await ending(call.ended), eventAt, Code.Unauthenticated, "TOKEN_REVOKED");
    assertHandlerSaw(probe, "permissionServerStream", Code.Unauthenticated, "TOKEN_REVOKED");
  });

  it("(c) deactivation ends a server stream: UNAUTHENTICATED USER_INACTIVE", async () => {
    const { database, probe } = context();
    const user = await createUser(database.db, { username: fresh("inactive") });
    await grantUserPermissions(database.db, user.username, ["shop.view_order"]);
    probe.aborts.length = 0;
    const call = await openServerStream(client(), await headersFor(user.id));
    const eventAt = Date.now();
    await setUserActive(database.db, user.username, false);
    assertEnded(await ending(call.ended), eventAt, Code.Unauthenticated, "USER_INACTIVE");
    assertHandlerSaw(probe, "permissionServerStream", Code.Unauthenticated, "USER_INACTIVE");
  });

  it("(d) deletion ends a server stream: UNAUTHENTICATED USER_INACTIVE", async () => {
    const { database, probe } = context();
    const user = await createUser(database.db, { username: fresh("deleted") });
    await grantUserPermissions(database.db, user.username, ["shop.view_order"]);
    probe.aborts.length = 0;
    const call = await openServerStream(client(), await headersFor(user.id));
    const eventAt = Date.now();
    await deleteUser(database.db, user.username);
    assertEnded(await ending(call.ended), eventAt, Code.Unauthenticated, "USER_INACTIVE");
    assertHandlerSaw(probe, "permissionServerStream", Code.Unauthenticated, "USER_INACTIVE");
  });

  it("(e) losing the required permission ends a server stream: PERMISSION_DENIED PERMISSION_MISSING; others' streams go on", async () => {
    const { database, probe } = context();
    const user = await createUser(database.db, { username: fresh("demoted") });
    const bystander = await createUser(database.db, { username: fresh("bystander") });
    await grantUserPermissions(database.db, user.username, ["shop.view_order"]);
    await grantUserPermissions(database.db, bystander.username, ["shop.view_order"]);
    probe.aborts.length = 0;
    const abort = new AbortController();
    const other = follow(
      client().permissionServerStream(
        { text: "tick" },
        { headers: await headersFor(bystander.id), signal: abort.signal },
      ),
    );
    await other.first;
    const call = await openServerStream(client(), await headersFor(user.id));
    const eventAt = Date.now();
    await revokeUserPermissions(database.db, user.username, ["shop.view_order"]);
    assertEnded(await ending(call.ended), eventAt, Code.PermissionDenied, "PERMISSION_MISSING");
    assertHandlerSaw(probe, "permissionServerStream", Code.PermissionDenied, "PERMISSION_MISSING");
    // The other user's stream was not touched and still delivers.
    const before = probe.emitted;
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(probe.emitted > before, "the bystander's stream still emits");
    abort.abort();
    const otherEnd = await ending(other.ended);
    assert.notEqual(authErrorReason(otherEnd.error ?? new ConnectError("")), "PERMISSION_MISSING");
  });

  it("a client stream ends when staff is withdrawn: PERMISSION_DENIED STAFF_REQUIRED", async () => {
    const { database, probe } = context();
    const user = await createUser(database.db, { username: fresh("staff"), isStaff: true });
    probe.aborts.length = 0;
    const requests = openRequests("one");
    const started = Date.now();
    const response = client().staffClientStream(requests.messages, { headers: await headersFor(user.id) });
    const ended = response.then(
      (): Ending => ({ error: undefined, at: Date.now(), received: 1 }),
      (error: unknown): Ending => ({ error: ConnectError.from(error), at: Date.now(), received: 0 }),
    );
    // The handler is reading the open request stream once it has registered its observer.
    while (probe.aborts.length === 0 && Date.now() - started < 200) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    const eventAt = Date.now();
    await unStaff(database, user.id);
    try {
      assertEnded(await ending(ended), eventAt, Code.PermissionDenied, "STAFF_REQUIRED");
      assertHandlerSaw(probe, "staffClientStream", Code.PermissionDenied, "STAFF_REQUIRED");
    } finally {
      requests.close();
    }
  });

  it("a bidi stream ends when superuser is withdrawn: PERMISSION_DENIED SUPERUSER_REQUIRED", async () => {
    const { database, probe } = context();
    const user = await createUser(database.db, { username: fresh("root"), isSuperuser: true });
    probe.aborts.length = 0;
    const requests = bidiRequests();
    requests.send("hello");
    const call = follow(client().superuserBidiStream(requests.messages, { headers: await headersFor(user.id) }));
    await call.first;
    const eventAt = Date.now();
    await unSuperuser(database, user.id);
    try {
      assertEnded(await ending(call.ended), eventAt, Code.PermissionDenied, "SUPERUSER_REQUIRED");
      assertHandlerSaw(probe, "superuserBidiStream", Code.PermissionDenied, "SUPERUSER_REQUIRED");
    } finally {
      requests.close();
    }
  });
}

/** (a): a short-lived token, a verifier with 1 s of leeway. */
function expiryScenario(
  context: () => {
    database: Database;
    transport: Transport;
    probe: StreamProbe;
    issuer: ReturnType<typeof createTokenIssuer>;
  },
) {
  it("(a) a server stream ends at the token's exp + leeway: UNAUTHENTICATED TOKEN_EXPIRED", async () => {
    const { database, issuer, transport, probe } = context();
    const user = await createUser(database.db, { username: `expiring${Date.now()}`, isStaff: true });
    const token = await issuer.issueAccess(user.id);
    probe.aborts.length = 0;
    const call = follow(
      createClient(StaffOnlyService, transport).inheritedServerStream(
        { text: "tick" },
        { headers: { authorization: `Bearer ${token.token}` } },
      ),
    );
    await call.first;
    const expiresAtMs = (token.expiresAt + LEEWAY_SECONDS) * 1000;
    const end = await ending(call.ended);
    assert.ok(end.at >= expiresAtMs - 50, `ended ${expiresAtMs - end.at} ms before exp + leeway`);
    assertEnded(end, expiresAtMs, Code.Unauthenticated, "TOKEN_EXPIRED");
    assertHandlerSaw(probe, "inheritedServerStream", Code.Unauthenticated, "TOKEN_EXPIRED");
    assert.ok(end.received >= 10, `the stream delivered while the token was valid (${end.received})`);
  });
}

const LEEWAY_SECONDS = 1;
const SHORT_TTL_SECONDS = 2;

describe("open streams follow the auth state: createTestAuth, in-memory transport (PGlite)", {
  timeout: 120_000,
}, () => {
  const probe = createStreamProbe();
  let t: TestAuth;
  let shortIssuer: ReturnType<typeof createTokenIssuer>;
  let shortTransport: Transport;
  const decisions: DecisionEvent[] = [];
  before(async () => {
    t = await createTestAuth({ routes: streamingRoutes(probe), onDecision: (e) => decisions.push(e) });
    // (a) needs a short-lived token and a small leeway, which createTestAuth
    // does not take: the same store and keys behind an auth of its own.
    shortIssuer = createTokenIssuer({ keyring: t.keyring, accessTtlSeconds: SHORT_TTL_SECONDS });
    const auth = createAuth({
      services: [GuardedService, StaffOnlyService],
      verifier: createTokenVerifier({ keyring: t.keyring, leewaySeconds: LEEWAY_SECONDS }),
      principals: t.principals,
    });
    shortTransport = createRouterTransport(streamingRoutes(probe), {
      router: { interceptors: [auth.interceptor], requestGate: auth.requestGate },
    });
  });
  after(() => t?.close());

  scenarios(() => ({ database: t.database, issuer: t.issuer, transport: t.transport, probe }));
  expiryScenario(() => ({ database: t.database, issuer: shortIssuer, transport: shortTransport, probe }));

  it("re-checks are reported at stage `recheck`, and ended calls leave the registry", async () => {
    const rechecks = decisions.filter((e) => e.stage === "recheck");
    assert.ok(rechecks.some((e) => e.verdict.outcome === "deny" && e.verdict.reason === "TOKEN_REVOKED"));
    assert.ok(rechecks.some((e) => e.verdict.outcome === "deny" && e.verdict.reason === "PERMISSION_MISSING"));
    const deadline = Date.now() + 2000;
    while (t.auth.watchedStreams !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(t.auth.watchedStreams, 0);
  });

  it("with no notification at all, the sweep still ends a stream within intervalMs", async () => {
    const SWEEP_MS = 300;
    // Never listens: stands for a notification that was lost.
    const deaf = await createPrincipalSource({ database: t.database, listen: false });
    try {
      const auth = createAuth({
        services: [GuardedService, StaffOnlyService],
        verifier: t.verifier,
        principals: deaf,
        revalidateStreams: { intervalMs: SWEEP_MS },
      });
      const transport = createRouterTransport(streamingRoutes(probe), {
        router: { interceptors: [auth.interceptor], requestGate: auth.requestGate },
      });
      const user = await t.createUser({ username: "unheard", isStaff: true });
      const call = follow(
        createClient(StaffOnlyService, transport).inheritedServerStream(
          { text: "tick" },
          { headers: await t.authHeaders(user) },
        ),
      );
      await call.first;
      const eventAt = Date.now();
      await setUserActive(t.database.db, user.username, false);
      const end = await ending(call.ended);
      assertEnded({ ...end, at: end.at - SWEEP_MS }, eventAt, Code.Unauthenticated, "USER_INACTIVE");
    } finally {
      await deaf.close();
    }
  });

  it("revalidateStreams: false leaves an open stream alone", async () => {
    const auth = createAuth({
      services: [GuardedService, StaffOnlyService],
      verifier: t.verifier,
      principals: t.principals,
      revalidateStreams: false,
    });
    const transport = createRouterTransport(streamingRoutes(probe), {
      router: { interceptors: [auth.interceptor], requestGate: auth.requestGate },
    });
    const user = await t.createUser({ username: "unwatched", isStaff: true });
    const abort = new AbortController();
    const call = follow(
      createClient(StaffOnlyService, transport).inheritedServerStream(
        { text: "tick" },
        { headers: await t.authHeaders(user), signal: abort.signal },
      ),
    );
    await call.first;
    await setUserActive(t.database.db, user.username, false);
    await new Promise((r) => setTimeout(r, 600));
    abort.abort();
    const end = await ending(call.ended);
    assert.equal(end.error?.code, Code.Canceled, "the stream ran until the client cancelled it");
    assert.ok(end.received >= 5);
    assert.equal(auth.watchedStreams, 0);
  });
});

describe("open streams follow the auth state: real h2c server (startServer, PGlite)", { timeout: 120_000 }, () => {
  const probe = createStreamProbe();
  let database: TestDatabase;
  let server: RunningServer;
  const keyring = () => createKeyring([{ alg: "HS256", secret: "s".repeat(32) }]);
  let issuer: ReturnType<typeof createTokenIssuer>;
  before(async () => {
    database = await createTestDatabase();
    const keys = await keyring();
    issuer = createTokenIssuer({ keyring: keys, accessTtlSeconds: SHORT_TTL_SECONDS });
    server = await startServer({
      runtime: {
        database,
        keyring: keys,
        verifier: createTokenVerifier({ keyring: keys, leewaySeconds: LEEWAY_SECONDS }),
      },
      routes: streamingRoutes(probe),
      port: 0,
      logger: pino({ level: "silent" }),
    });
  });
  after(async () => {
    await server?.close();
    await database?.close();
  });

  describe("gRPC over h2c", () => {
    const transport = () => createGrpcTransport({ baseUrl: server.url });
    scenarios(() => ({ database, issuer, transport: transport(), probe }));
    expiryScenario(() => ({ database, issuer, transport: transport(), probe }));
  });
  describe("Connect over h2c", () => {
    scenarios(() => ({
      database,
      issuer,
      transport: createConnectTransport({ baseUrl: server.url, httpVersion: "2" }),
      probe,
    }));
  });
  describe("gRPC-Web over HTTP/1.1 (server streams)", () => {
    const transport = () => createGrpcWebTransport({ baseUrl: server.url, httpVersion: "1.1" });
    it("a server stream ends on deactivation with USER_INACTIVE", async () => {
      const user = await createUser(database.db, { username: "web-user", isStaff: true });
      const token = (await issuer.issueAccess(user.id)).token;
      const call = follow(
        createClient(StaffOnlyService, transport()).inheritedServerStream(
          { text: "t" },
          { headers: { authorization: `Bearer ${token}` } },
        ),
      );
      await call.first;
      const eventAt = Date.now();
      await setUserActive(database.db, user.username, false);
      assertEnded(await ending(call.ended), eventAt, Code.Unauthenticated, "USER_INACTIVE");
    });
  });
});

const url = postgresUrl;
describeOr(
  skipWithoutPostgres,
  "open streams follow the auth state across instances on PostgreSQL",
  { timeout: 120_000 },
  () => {
    const probe = createStreamProbe();
    let database: TestDatabase;
    let second: Database;
    let one: RunningServer;
    let two: RunningServer;
    let issuer: ReturnType<typeof createTokenIssuer>;
    before(async () => {
      database = await createTestDatabase({ driver: "postgres", url: url! });
      second = await openDatabase({ url: database.url! });
      const keys = await createKeyring([{ alg: "HS256", secret: "p".repeat(32) }]);
      issuer = createTokenIssuer({ keyring: keys });
      const verifier = createTokenVerifier({ keyring: keys });
      const logger = pino({ level: "silent" });
      const authService = createAuthService({ database, issuer, verifier });
      one = await startServer({
        runtime: { database, keyring: keys, verifier },
        routes: (router) => {
          streamingRoutes(probe)(router);
          router.service(AuthService, authService);
        },
        port: 0,
        logger,
      });
      two = await startServer({
        runtime: { database: second, keyring: keys, verifier },
        routes: streamingRoutes(probe),
        port: 0,
        logger,
      });
    });
    after(async () => {
      await two?.close();
      await one?.close();
      await second?.close();
      await database?.close();
    });

    it("Logout through one server ends the token's stream on the other within 1 s: TOKEN_REVOKED", async () => {
      const user = await createUser(database.db, { username: "roaming", isStaff: true });
      const session = await issueSession(database.db, issuer, user.id);
      const call = follow(
        createClient(StaffOnlyService, createGrpcTransport({ baseUrl: two.url })).inheritedServerStream(
          { text: "t" },
          { headers: { authorization: `Bearer ${session.accessToken}` } },
        ),
      );
      await call.first;
      const eventAt = Date.now();
      await createClient(AuthService, createGrpcTransport({ baseUrl: one.url })).logout({
        refreshToken: session.refreshToken,
      });
      assertEnded(await ending(call.ended), eventAt, Code.Unauthenticated, "TOKEN_REVOKED");
    });

    it("deactivation through one instance's pool ends a stream on the other: USER_INACTIVE", async () => {
      const user = await createUser(database.db, { username: "roaming2", isStaff: true });
      const call = follow(
        createClient(StaffOnlyService, createGrpcTransport({ baseUrl: two.url })).inheritedServerStream(
          { text: "t" },
          { headers: { authorization: `Bearer ${(await issuer.issueAccess(user.id)).token}` } },
        ),
      );
      await call.first;
      const eventAt = Date.now();
      await setUserActive(database.db, user.username, false);
      assertEnded(await ending(call.ended), eventAt, Code.Unauthenticated, "USER_INACTIVE");
    });

    it("a principal source with its cache off still follows notifications", async () => {
      const principals = await createPrincipalSource({ database: second, maxEntries: 0 });
      try {
        const keys = await createKeyring([{ alg: "HS256", secret: "p".repeat(32) }]);
        const auth = createAuth({
          services: [StaffOnlyService],
          verifier: createTokenVerifier({ keyring: keys }),
          principals,
        });
        const transport = createRouterTransport(streamingRoutes(probe), {
          router: { interceptors: [auth.interceptor], requestGate: auth.requestGate },
        });
        const user = await createUser(database.db, { username: "uncached", isStaff: true });
        const call = follow(
          createClient(StaffOnlyService, transport).inheritedServerStream(
            { text: "t" },
            { headers: { authorization: `Bearer ${(await issuer.issueAccess(user.id)).token}` } },
          ),
        );
        await call.first;
        // The subscription starts with the first watched call.
        await new Promise((r) => setTimeout(r, 300));
        const eventAt = Date.now();
        await unStaff(database, user.id);
        assertEnded(await ending(call.ended), eventAt, Code.PermissionDenied, "STAFF_REQUIRED");
      } finally {
        await principals.close();
      }
    });
  },
);
