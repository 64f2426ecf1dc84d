// protoguard/client: a session that logs in, attaches the token and
// refreshes it once for any number of calls, on the in-memory transport and
// over a real HTTP/2 server.
import assert from "node:assert/strict";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import {
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
  type ConnectRouter,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { GuardedService } from "../gen/guardtest/v1/guarded_pb.js";
import {
  createSession,
  memoryStorage,
  webStorage,
  type SessionEndReason,
  type WebStorageLike,
} from "../src/exports/client.js";
import {
  authErrorReason,
  createAuth,
  createKeyring,
  createTokenIssuer,
  createTokenVerifier,
} from "../src/exports/protoguard.js";
import { AuthService, createAuthService, createPasswordHasher } from "../src/exports/auth-service.js";
import { createPrincipalSource, createUser, type CachedPrincipalSource } from "../src/exports/store.js";
import { createTestDatabase, type TestDatabase } from "../src/exports/testing.js";
import { guardedRoutes } from "./helpers/guarded-service.js";

const ACCESS_TTL_S = 300;

/** A server whose clock the test moves; counts Refresh RPCs it decided on. */
interface Fixture {
  routes: (router: ConnectRouter) => void;
  transport: Transport;
  interceptors: ReturnType<typeof createAuth>;
  refreshes: () => number;
  advance(ms: number): void;
}

describe("protoguard/client sessions", { timeout: 300_000 }, () => {
  let database: TestDatabase;
  let principals: CachedPrincipalSource;
  let fixture: Fixture;
  let serverClock = Date.now();
  let refreshCount = 0;

  before(async () => {
    database = await createTestDatabase();
    const hasher = createPasswordHasher({ scrypt: { logN: 12 } });
    await createUser(database.db, { username: "alice", passwordHash: await hasher.hash("alice-password-123") });
    // Tokens issued before a user's credentials were set count as revoked:
    // the server's clock starts after that.
    serverClock = Date.now() + 1000;
    const keyring = await createKeyring([{ alg: "HS256", secret: "a test secret that is at least 32 bytes long" }]);
    const now = () => serverClock;
    const issuer = createTokenIssuer({ keyring, now, accessTtlSeconds: ACCESS_TTL_S });
    const verifier = createTokenVerifier({ keyring, now, leewaySeconds: 0 });
    principals = await createPrincipalSource({ database });
    const authService = createAuthService({ database, issuer, verifier, passwordHasher: hasher, now });
    const auth = createAuth({
      services: [GuardedService, AuthService],
      verifier,
      principals,
      onDecision: (event) => {
        if (event.method.name === "Refresh") refreshCount++;
      },
    });
    const routes = (router: ConnectRouter) => {
      guardedRoutes(router);
      router.service(AuthService, authService);
    };
    fixture = {
      routes,
      interceptors: auth,
      transport: createRouterTransport(routes, {
        router: { interceptors: [auth.interceptor], requestGate: auth.requestGate },
      }),
      refreshes: () => refreshCount,
      advance: (ms) => void (serverClock += ms),
    };
  });

  after(async () => {
    await principals?.close();
    await database?.close();
  });

  /** The app's transport: the same in-memory server, with the session's interceptor on the client side. */
  function appTransport(session: { interceptor: Interceptor }): Transport {
    return createRouterTransport(fixture.routes, {
      router: { interceptors: [fixture.interceptors.interceptor], requestGate: fixture.interceptors.requestGate },
      transport: { interceptors: [session.interceptor] },
    });
  }

  it("logs in, attaches the token, and refreshes once for 50 concurrent calls that fail as expired", async () => {
    const ended: SessionEndReason[] = [];
    // The client's clock never moves: only the server sees the token expire,
    // so every call fails first and the retry path is what is tested.
    const session = createSession({ transport: fixture.transport, now: () => 0, onSessionEnd: (r) => ended.push(r) });
    const client = createClient(GuardedService, appTransport(session));
    await assert.rejects(
      client.authenticatedUnary({ text: "x" }),
      (e) => ConnectError.from(e).code === Code.Unauthenticated,
    );
    const user = await session.login({ username: "alice", password: "alice-password-123" });
    assert.equal(user.username, "alice");
    assert.equal((await client.authenticatedUnary({ text: "x" })).username, "alice");

    fixture.advance((ACCESS_TTL_S + 1) * 1000);
    const before = fixture.refreshes();
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => client.authenticatedUnary({ text: `${i}` })),
    );
    assert.equal(fixture.refreshes() - before, 1, "exactly one Refresh RPC");
    assert.equal(answers.length, 50);
    assert.ok(answers.every((a, i) => a.username === "alice" && a.text === `${i}`));
    assert.deepEqual(ended, []);
  });

  it("refreshes before a call when its own clock says the token is about to expire, once for 50 calls", async () => {
    let clientClock = serverClock;
    const session = createSession({ transport: fixture.transport, now: () => clientClock });
    const client = createClient(GuardedService, appTransport(session));
    await session.login({ username: "alice", password: "alice-password-123" });
    clientClock += (ACCESS_TTL_S - 5) * 1000; // within the default 10 s margin
    const before = fixture.refreshes();
    const answers = await Promise.all(Array.from({ length: 50 }, () => client.authenticatedUnary({ text: "p" })));
    assert.equal(fixture.refreshes() - before, 1);
    assert.ok(answers.every((a) => a.username === "alice"));
  });

  it("a streaming call is refreshed before it starts and never retried", async () => {
    let clientClock = serverClock;
    const session = createSession({ transport: fixture.transport, now: () => clientClock });
    const client = createClient(GuardedService, appTransport(session));
    await session.login({ username: "alice", password: "alice-password-123" });
    clientClock += ACCESS_TTL_S * 1000;
    const before = fixture.refreshes();
    const requests = (async function* () {
      yield { text: "a" };
      yield { text: "b" };
    })();
    const texts: string[] = [];
    for await (const pong of client.authenticatedBidiStream(requests)) texts.push(pong.text);
    assert.deepEqual(texts, ["a", "b"]);
    assert.equal(fixture.refreshes() - before, 1);

    // Server-side expiry with a client that does not know: the stream fails
    // with TOKEN_EXPIRED and is not replayed.
    const blind = createSession({ transport: fixture.transport, now: () => 0 });
    const blindClient = createClient(GuardedService, appTransport(blind));
    await blind.login({ username: "alice", password: "alice-password-123" });
    fixture.advance((ACCESS_TTL_S + 1) * 1000);
    let consumed = 0;
    const once = (async function* () {
      consumed++;
      yield { text: "only" };
    })();
    await assert.rejects(
      (async () => {
        for await (const _ of blindClient.authenticatedBidiStream(once)) void _;
      })(),
      (e) => authErrorReason(ConnectError.from(e)) === "TOKEN_EXPIRED",
    );
    assert.ok(consumed <= 1);
  });

  it("a refresh token already used elsewhere ends the session: tokens cleared, onSessionEnd, no loop", async () => {
    const ended: SessionEndReason[] = [];
    const stored = new Map<string, string>();
    const area: WebStorageLike = {
      getItem: (k) => stored.get(k) ?? null,
      setItem: (k, v) => void stored.set(k, v),
      removeItem: (k) => void stored.delete(k),
    };
    const session = createSession({
      transport: fixture.transport,
      storage: webStorage(area),
      now: () => 0,
      onSessionEnd: (r) => ended.push(r),
    });
    const client = createClient(GuardedService, appTransport(session));
    await session.login({ username: "alice", password: "alice-password-123" });
    assert.ok(stored.has("protoguard.session"));
    // Another holder of the same refresh token (a copied tab) uses it first.
    const { refreshToken } = JSON.parse(stored.get("protoguard.session")!) as { refreshToken: string };
    await createClient(AuthService, fixture.transport).refresh({ refreshToken });

    fixture.advance((ACCESS_TTL_S + 1) * 1000);
    const before = fixture.refreshes();
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () => client.authenticatedUnary({ text: "z" })),
    );
    assert.equal(fixture.refreshes() - before, 1, "one Refresh, then no loop");
    for (const result of results) {
      assert.equal(result.status, "rejected");
      assert.equal(ConnectError.from((result as PromiseRejectedResult).reason).code, Code.Unauthenticated);
    }
    assert.deepEqual(ended, ["TOKEN_REVOKED"]);
    assert.equal(stored.has("protoguard.session"), false);
    assert.equal(await session.isLoggedIn(), false);
    // Afterwards calls go anonymous: refused by the rule, no refresh attempted.
    await assert.rejects(
      client.authenticatedUnary({ text: "z" }),
      (e) => authErrorReason(ConnectError.from(e)) === "TOKEN_MISSING",
    );
    assert.equal(fixture.refreshes() - before, 1);
  });

  it("logout revokes the family on the server and ends the session", async () => {
    const ended: SessionEndReason[] = [];
    const storage = memoryStorage();
    const session = createSession({ transport: fixture.transport, storage, onSessionEnd: (r) => ended.push(r) });
    await session.login({ username: "alice", password: "alice-password-123" });
    const held = await storage.load();
    assert.ok(held);
    await session.logout();
    assert.deepEqual(ended, ["LOGOUT"]);
    assert.equal(await storage.load(), undefined);
    await assert.rejects(
      createClient(AuthService, fixture.transport).refresh({ refreshToken: held.refreshToken }),
      (e) => ConnectError.from(e).code === Code.Unauthenticated,
    );
  });

  it("over a real HTTP/2 server (Connect and gRPC): 50 concurrent expired calls, one Refresh, 50 successes", async () => {
    const server = http2.createServer(
      connectNodeAdapter({
        routes: fixture.routes,
        interceptors: [fixture.interceptors.interceptor],
        requestGate: fixture.interceptors.requestGate,
      }),
    );
    // Clients keep their HTTP/2 sessions open; end them with the server.
    const sessions = new Set<http2.ServerHttp2Session>();
    server.on("session", (session) => {
      sessions.add(session);
      session.on("close", () => sessions.delete(session));
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      for (const make of [
        (interceptors: never[] | undefined) =>
          createConnectTransport({ baseUrl, httpVersion: "2", ...(interceptors && { interceptors }) }),
        (interceptors: never[] | undefined) => createGrpcTransport({ baseUrl, ...(interceptors && { interceptors }) }),
      ]) {
        const session = createSession({ transport: make(undefined), now: () => 0 });
        const client = createClient(GuardedService, make([session.interceptor] as never[]));
        await session.login({ username: "alice", password: "alice-password-123" });
        fixture.advance((ACCESS_TTL_S + 1) * 1000);
        const before = fixture.refreshes();
        const answers = await Promise.all(Array.from({ length: 50 }, () => client.authenticatedUnary({ text: "h2" })));
        assert.equal(fixture.refreshes() - before, 1);
        assert.ok(answers.every((a) => a.username === "alice"));
      }
    } finally {
      for (const session of sessions) session.destroy();
      await new Promise((done) => server.close(done));
    }
  });
});
