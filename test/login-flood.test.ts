// Login under a flood (issue 10, items 3 and 4): per-client admission before
// any hashing or writing, a hasher queue shared fairly between clients,
// bounded throttle rows, client addresses from the socket or a trusted
// proxy, and usernames taken in NFKC form. Real server on loopback, real
// PGlite, real scrypt.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as http from "node:http";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Worker } from "node:worker_threads";
import {
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
  type Client,
  type Interceptor,
} from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { count, like } from "drizzle-orm";
import { pino } from "pino";
import { AuthService } from "../gen/protoguard/v1/auth_pb.js";
import { ProductService } from "../gen/example/v1/product_pb.js";
import { migrateExample } from "../example/migrate.js";
import { products } from "../example/schema.js";
import { seedExample } from "../example/seed.js";
import { exampleResources, exampleRoutes } from "../example/services.js";
import {
  createClientAddressResolver,
  peerAddressKey,
  UNKNOWN_PEER,
  type ClientAddressOptions,
} from "../src/connect/peer.js";
import { parseTrustedProxies } from "../src/util/ip-address.js";
import { authErrorReason } from "../src/connect/errors.js";
import { createAuthService, type AuthServiceOptions } from "../src/lifecycle/auth-service.js";
import { createPasswordHasher, PasswordBusyError, type PasswordHasher } from "../src/lifecycle/passwords.js";
import { ConfigError, loadConfig } from "../src/runtime/config.js";
import { startServer, type RunningServer } from "../src/server/serve.js";
import { StoreError } from "../src/store/errors.js";
import { loginAttempts } from "../src/store/schema.js";
import { createUser } from "../src/store/users.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/database.js";
import { createKeyring } from "../src/token/keys.js";
import { createTokenIssuer, type TokenIssuer } from "../src/token/issuer.js";
import { createTokenVerifier, type TokenVerifier } from "../src/token/verifier.js";
import { failure } from "./helpers/connect.js";
import { TEST_SECRET as SECRET } from "./helpers/secrets.js";

/**
 * scrypt cost of the flood tests. 14 keeps the suite quick, with a hasher of
 * one slot and 16 places, which 80 calls overflow at that cost as they
 * overflow the default hasher (2 slots, 64 places here) at the production
 * cost. LOGIN_FLOOD_LOGN=17 measures with the default hasher at that cost.
 */
const LOG_N = Number(process.env["LOGIN_FLOOD_LOGN"] ?? 14);
const HASHER_LIMITS = LOG_N >= 17 ? {} : { maxConcurrent: 1, maxQueue: 16 };
const FLOOD_WIDTH = 80;
const REAL_LOGINS = 5;
const DEFAULT_BURST = 20;
const DEFAULT_PER_MINUTE = 30;

interface Harness {
  database: TestDatabase;
  issuer: TokenIssuer;
  verifier: TokenVerifier;
  hasher: PasswordHasher;
  server: RunningServer;
  productId: number;
  close(): Promise<void>;
}

/** The example services and the AuthService on a real server, port 0 on 127.0.0.1. */
async function startHarness(
  clientAddress?: ClientAddressOptions,
  auth: Partial<AuthServiceOptions> = {},
): Promise<Harness> {
  const database = await createTestDatabase();
  await migrateExample(database);
  await seedExample(database.db);
  const [product] = await database.db.select({ id: products.id }).from(products).limit(1);
  const keyring = await createKeyring([{ alg: "HS256", secret: SECRET }]);
  const issuer = createTokenIssuer({ keyring });
  const verifier = createTokenVerifier({ keyring });
  const hasher = createPasswordHasher({ scrypt: { logN: LOG_N }, ...HASHER_LIMITS });
  await createUser(database.db, { username: "alice", passwordHash: await hasher.hash("alice-password") });
  const service = createAuthService({ database, issuer, verifier, passwordHasher: hasher, ...auth });
  const server = await startServer({
    runtime: { database, keyring, verifier },
    routes: (router) => {
      exampleRoutes({ database })(router);
      router.service(AuthService, service);
    },
    resources: exampleResources({ database }),
    port: 0,
    logger: pino({ level: "silent" }),
    graceMs: 1000,
    ...(clientAddress !== undefined && { clientAddress }),
  });
  return {
    database,
    issuer,
    verifier,
    hasher,
    server,
    productId: product!.id,
    async close() {
      await server.close();
      await database.close();
    },
  };
}

interface Caller {
  auth: Client<typeof AuthService>;
  products: Client<typeof ProductService>;
  close(): void;
}

/**
 * Connect over HTTP/1.1 from `localAddress` (any 127/8 address is this host),
 * on its own connection pool; `headers` are added to every call.
 */
function caller(url: string, localAddress: string, headers: () => Record<string, string> = () => ({})): Caller {
  const agent = new http.Agent({ keepAlive: true });
  const addHeaders: Interceptor = (next) => (req) => {
    for (const [name, value] of Object.entries(headers())) req.header.set(name, value);
    return next(req);
  };
  const transport = createConnectTransport({
    baseUrl: url,
    httpVersion: "1.1",
    nodeOptions: { agent, localAddress },
    interceptors: [addHeaders],
  });
  return {
    auth: createClient(AuthService, transport),
    products: createClient(ProductService, transport),
    close: () => agent.destroy(),
  };
}

/** "ok", or the code and reason of a refusal, e.g. "ResourceExhausted/LOGIN_THROTTLED". */
function outcome(result: PromiseSettledResult<unknown>): string {
  if (result.status === "fulfilled") return "ok";
  const err = ConnectError.from(result.reason);
  return `${Code[err.code]}/${authErrorReason(err) ?? "-"}`;
}

function tally(into: Map<string, number>, results: PromiseSettledResult<unknown>[]): void {
  for (const result of results) {
    const key = outcome(result);
    into.set(key, (into.get(key) ?? 0) + 1);
  }
}

async function rowCount(database: TestDatabase, usernamePrefix: string): Promise<number> {
  const [row] = await database.db
    .select({ n: count() })
    .from(loginAttempts)
    .where(like(loginAttempts.username, `${usernamePrefix}%`));
  return row!.n;
}

/** The q-quantile of `values` in whole milliseconds (nearest rank). */
function percentile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN);
}

const INVALID_MESSAGE = "invalid credentials";
const RATE_LIMITED_MESSAGE = "too many login attempts from this address, try again later";

/**
 * Code of the flooding client, in a worker thread with its own event loop,
 * as an attacker's machine would be: FLOOD_WIDTH Connect-JSON Login calls
 * over HTTP/1.1 always in flight, each with a new random username and a
 * made-up X-Forwarded-For (which, with no trusted proxy configured, must not
 * buy another budget). It tallies "code/message" of the answers.
 */
const FLOODER = `
const { parentPort, workerData } = require("node:worker_threads");
const http = require("node:http");
const { randomBytes } = require("node:crypto");
const { url, width, localAddress } = workerData;
const agent = new http.Agent({ keepAlive: true, maxSockets: width });
const tally = {};
let stop = false;
function call() {
  return new Promise((resolve) => {
    const body = JSON.stringify({ username: "flood-" + randomBytes(6).toString("hex"), password: "guess" });
    const headers = { "content-type": "application/json", "x-forwarded-for": "198.51.100." + Math.floor(Math.random() * 250) };
    const req = http.request(url + "/protoguard.v1.AuthService/Login", { method: "POST", agent, localAddress, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (text += chunk));
      res.on("end", () => {
        try {
          const reply = JSON.parse(text);
          resolve(reply.code === undefined ? "ok" : reply.code + "/" + reply.message);
        } catch {
          resolve("http/" + res.statusCode);
        }
      });
    });
    req.on("error", (error) => resolve("error/" + error.code));
    req.end(body);
  });
}
async function worker() {
  while (!stop) {
    const key = await call();
    tally[key] = (tally[key] ?? 0) + 1;
  }
}
const workers = Array.from({ length: width }, worker);
parentPort.on("message", async () => {
  stop = true;
  await Promise.all(workers);
  agent.destroy();
  parentPort.postMessage(tally);
});
`;

function startFlooder(url: string, localAddress: string): { stop(): Promise<Map<string, number>> } {
  const worker = new Worker(FLOODER, { eval: true, workerData: { url, width: FLOOD_WIDTH, localAddress } });
  return {
    async stop() {
      const reply = new Promise<Record<string, number>>((resolve, reject) => {
        worker.once("message", resolve);
        worker.once("error", reject);
      });
      worker.postMessage("stop");
      const tallied = await reply;
      await worker.terminate();
      return new Map(Object.entries(tallied));
    },
  };
}

const randomName = (prefix: string) => `${prefix}${randomBytes(6).toString("hex")}`;

describe("Login under a flood, on a real server", { timeout: 300_000 }, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => h?.close());

  it("one address floods Login with random usernames; a real user on another address logs in every time", async (t) => {
    const user = caller(h.server.url, "127.0.0.1");
    // Its own connection: concurrent calls sharing one HTTP/1.1 agent can stall in the client.
    const prober = caller(h.server.url, "127.0.0.5");
    const stop = { done: false };
    const started = performance.now();
    const flooder = startFlooder(h.server.url, "127.0.0.2");
    // A public RPC, probed every 100 ms while the flood lasts.
    const productMs: number[] = [];
    const probing = (async () => {
      while (!stop.done) {
        const p0 = performance.now();
        await prober.products.getProduct({ productId: h.productId });
        productMs.push(performance.now() - p0);
        await sleep(100);
      }
    })();
    const logins = new Map<string, number>();
    const loginMs: number[] = [];
    try {
      await sleep(200); // the flood is under way
      for (let i = 0; i < REAL_LOGINS; i++) {
        const t0 = performance.now();
        tally(logins, await Promise.allSettled([user.auth.login({ username: "alice", password: "alice-password" })]));
        loginMs.push(performance.now() - t0);
      }
    } finally {
      stop.done = true;
      await probing.catch(() => {});
      user.close();
      prober.close();
    }
    await probing;
    const flood = await flooder.stop();
    const elapsedMin = (performance.now() - started) / 60_000;
    const admitted = flood.get(`unauthenticated/${INVALID_MESSAGE}`) ?? 0;
    const rows = await rowCount(h.database, "flood-");
    const figures = {
      hasher: { logN: LOG_N, ...HASHER_LIMITS },
      realUser: `${logins.get("ok") ?? 0} of ${REAL_LOGINS}`,
      realUserOutcomes: Object.fromEntries(logins),
      realLoginMs: loginMs.map(Math.round),
      getProductMs: {
        calls: productMs.length,
        p50: percentile(productMs, 0.5),
        p95: percentile(productMs, 0.95),
        max: percentile(productMs, 1),
      },
      floodOutcomes: Object.fromEntries(flood),
      floodSeconds: Math.round(elapsedMin * 600) / 10,
      throttleRowsAfterFlood: rows,
    };
    t.diagnostic(`figures ${JSON.stringify(figures)}`);

    assert.deepEqual(Object.fromEntries(logins), { ok: REAL_LOGINS }, "the real user logs in every time");
    assert.ok((flood.get(`resource_exhausted/${RATE_LIMITED_MESSAGE}`) ?? 0) > 0, "the flooding address is refused");
    assert.ok(
      admitted <= DEFAULT_BURST + Math.ceil(elapsedMin * DEFAULT_PER_MINUTE) + 1,
      `the flooding address got at most its budget verified: ${admitted}`,
    );
    assert.ok(rows <= admitted, `no more throttle rows (${rows}) than admitted attempts (${admitted})`);
    // Typical, not worst, latency: other test processes share the machine's cores.
    assert.ok(
      percentile(productMs, 0.5) < 1000,
      `a public RPC answers within 1 s during the flood: ${JSON.stringify(figures.getProductMs)}`,
    );
  });

  it("1,000 logins with 5 KB passwords add no throttle row and cost no budget", async () => {
    const client = caller(h.server.url, "127.0.0.3");
    try {
      const before = await rowCount(h.database, "");
      const outcomes = new Map<string, number>();
      const password = "p".repeat(5 * 1024);
      for (let i = 0; i < 1000; i += 50) {
        tally(
          outcomes,
          await Promise.allSettled(
            Array.from({ length: 50 }, () => client.auth.login({ username: randomName("long-"), password })),
          ),
        );
      }
      assert.deepEqual(Object.fromEntries(outcomes), { "Unauthenticated/INVALID_CREDENTIALS": 1000 });
      assert.equal((await rowCount(h.database, "")) - before, 0, "nothing was written");
      // Refused before admission: the address still has its whole budget.
      // In batches of 10, which the test's small hasher queues without refusing any.
      const results: string[] = [];
      for (let i = 0; i < DEFAULT_BURST; i += 10) {
        const batch = Array.from({ length: 10 }, () =>
          client.auth.login({ username: randomName("after-"), password: "x" }),
        );
        results.push(...(await Promise.allSettled(batch)).map(outcome));
      }
      assert.deepEqual(results, Array(DEFAULT_BURST).fill("Unauthenticated/INVALID_CREDENTIALS"));
    } finally {
      client.close();
    }
  });

  it("a successful login gives its attempt back: many users behind one address are limited only by failures", async () => {
    const client = caller(h.server.url, "127.0.0.4");
    try {
      // Twice the burst, one after the other: every one succeeds.
      for (let i = 0; i < 2 * DEFAULT_BURST; i++) {
        assert.ok((await client.auth.login({ username: "alice", password: "alice-password" })).accessToken);
      }
    } finally {
      client.close();
    }
  });
});

describe("client addresses behind a trusted proxy", { timeout: 120_000 }, () => {
  let h: Harness;
  before(async () => {
    // Burst 3 keeps the test short; 127.0.0.1 plays the proxy.
    h = await startHarness({ trustedProxies: ["127.0.0.0/30"] }, { loginAdmission: { burst: 3, perMinute: 0 } });
  });
  after(async () => h?.close());

  it("each forwarded client has its own budget; an untrusted peer's header is ignored", async () => {
    const viaProxy = (client: string, from = "127.0.0.1") =>
      caller(h.server.url, from, () => ({ "x-forwarded-for": `6.6.6.6, ${client}` }));
    const a = viaProxy("198.51.100.7");
    const b = viaProxy("203.0.113.5", "127.0.0.2");
    const spoofer = caller(h.server.url, "127.0.0.9", () => ({ "x-forwarded-for": randomName("10.0.0.") }));
    try {
      const attempt = (c: Caller) =>
        Promise.allSettled([c.auth.login({ username: randomName("fwd-"), password: "x" })]);
      const seen = { a: [] as string[], b: [] as string[], spoofer: [] as string[] };
      for (let i = 0; i < 4; i++) seen.a.push(...(await attempt(a)).map(outcome));
      seen.b.push(...(await attempt(b)).map(outcome));
      for (let i = 0; i < 4; i++) seen.spoofer.push(...(await attempt(spoofer)).map(outcome));
      const invalid = "Unauthenticated/INVALID_CREDENTIALS";
      const throttled = "ResourceExhausted/LOGIN_THROTTLED";
      assert.deepEqual(seen, {
        a: [invalid, invalid, invalid, throttled],
        b: [invalid],
        spoofer: [invalid, invalid, invalid, throttled],
      });
      const refused = await failure(a.auth.login({ username: "alice", password: "alice-password" }));
      assert.equal(refused.rawMessage, "too many login attempts from this address, try again later");
    } finally {
      for (const c of [a, b, spoofer]) c.close();
    }
  });
});

describe("createClientAddressResolver", () => {
  const req = (remoteAddress: string | undefined, headers: Record<string, string> = {}) => ({
    socket: { remoteAddress },
    headers,
  });

  it("uses the socket's peer, canonical, and ignores forwarded headers without trusted proxies", () => {
    const clientOf = createClientAddressResolver();
    assert.equal(clientOf(req("::ffff:192.0.2.1", { "x-forwarded-for": "6.6.6.6" })), "192.0.2.1");
    assert.equal(clientOf(req("2001:DB8:0:0:0:0:0:1")), "2001:db8::1");
    assert.equal(clientOf(req(undefined)), UNKNOWN_PEER);
    assert.equal(clientOf({ socket: null, headers: {} }), UNKNOWN_PEER);
  });

  it("reads X-Forwarded-For from the right, through trusted proxies only (CIDR, IPv4 and IPv6)", () => {
    const clientOf = createClientAddressResolver({ trustedProxies: ["10.0.0.0/8", "fd00::/8", "192.0.2.7"] });
    const xff = (peer: string, value: string) => clientOf(req(peer, { "x-forwarded-for": value }));
    assert.equal(
      xff("10.1.2.3", "6.6.6.6, 203.0.113.9"),
      "203.0.113.9",
      "the left, client-written, part is never read",
    );
    assert.equal(xff("10.1.2.3", "203.0.113.9, 10.9.9.9"), "203.0.113.9", "a chain of trusted proxies is walked");
    assert.equal(xff("192.0.2.7", "[2001:db8::5]:443"), "2001:db8::5");
    assert.equal(xff("fd00::1", "203.0.113.9:8080"), "203.0.113.9");
    assert.equal(xff("192.0.2.8", "203.0.113.9"), "192.0.2.8", "not a trusted proxy");
    assert.equal(xff("10.1.2.3", "10.2.2.2, 10.3.3.3"), "10.2.2.2", "all trusted: the furthest");
    assert.equal(xff("10.1.2.3", "203.0.113.9, unknown"), UNKNOWN_PEER, "an obfuscated hop");
    assert.equal(clientOf(req("10.1.2.3")), "10.1.2.3", "a proxy's own call");
    assert.equal(
      clientOf(req("10.1.2.3", { forwarded: "for=203.0.113.9" })),
      "10.1.2.3",
      "the header the proxies do not write is ignored",
    );
  });

  it("reads RFC 7239 Forwarded when configured", () => {
    const clientOf = createClientAddressResolver({ trustedProxies: ["127.0.0.1"], forwardedHeader: "forwarded" });
    const forwarded = 'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https;by=127.0.0.1';
    assert.equal(clientOf(req("127.0.0.1", { forwarded, "x-forwarded-for": "1.1.1.1" })), "2001:db8:cafe::17");
    assert.equal(clientOf(req("127.0.0.1", { forwarded: "for=_hidden" })), UNKNOWN_PEER);
  });

  it("refuses malformed trusted-proxy entries, and the configuration names the variable", () => {
    for (const bad of ["10.0.0.0/33", "fd00::/129", "example.com", "10.0.0.0/", "10.0.0.0/8/8", ""]) {
      assert.throws(() => parseTrustedProxies([bad]), RangeError, bad);
    }
    assert.throws(
      () => loadConfig({ PROTOGUARD_TRUSTED_PROXIES: "10.0.0.0/8, nope" }),
      (e: unknown) => {
        return e instanceof ConfigError && e.message.startsWith("PROTOGUARD_TRUSTED_PROXIES");
      },
    );
    assert.throws(() => loadConfig({ PROTOGUARD_FORWARDED_HEADER: "x-real-ip" }), ConfigError);
    assert.throws(() => loadConfig({ PROTOGUARD_LOGIN_PEER_BURST: "0" }), ConfigError);
    const config = loadConfig({
      PROTOGUARD_TRUSTED_PROXIES: "10.0.0.0/8, ::1",
      PROTOGUARD_FORWARDED_HEADER: "Forwarded",
      PROTOGUARD_LOGIN_PEER_BURST: "5",
      PROTOGUARD_LOGIN_PEER_PER_MINUTE: "12",
      PROTOGUARD_LOGIN_MAX_PEERS: "100",
    });
    assert.deepEqual(
      [
        config.trustedProxies,
        config.forwardedHeader,
        config.loginPeerBurst,
        config.loginPeerPerMinute,
        config.loginMaxPeers,
      ],
      [["10.0.0.0/8", "::1"], "forwarded", 5, 12, 100],
    );
    const defaults = loadConfig({});
    assert.deepEqual(
      [
        defaults.trustedProxies,
        defaults.forwardedHeader,
        defaults.loginPeerBurst,
        defaults.loginPeerPerMinute,
        defaults.loginMaxPeers,
      ],
      [[], "x-forwarded-for", 20, 30, 10_000],
    );
  });
});

describe("the password hasher's queue is fair between clients", () => {
  it("a client flooding a full queue cannot keep another client out, and the other is served in turn", async () => {
    const hasher = createPasswordHasher({ scrypt: { logN: 12 }, maxConcurrent: 1, maxQueue: 4 });
    const encoded = await hasher.hash("pw");
    const finished: string[] = [];
    const run = (key: string, i: number) =>
      hasher.verify("pw", encoded, { fairnessKey: key }).then((result) => {
        finished.push(`${key}${i}`);
        return result;
      });
    const flood = Array.from({ length: 10 }, (_, i) => run("flooder", i));
    const other = run("other", 0);
    const results = await Promise.allSettled([...flood, other]);
    assert.deepEqual(results.at(-1), { status: "fulfilled", value: { ok: true, needsRehash: false } });
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    assert.ok(refused.every((r) => r.reason instanceof PasswordBusyError));
    // One running plus four waiting; the newcomer displaced the flooder's newest waiter.
    assert.equal(finished.length, 5);
    assert.equal(refused.length, 6);
    assert.ok(finished.indexOf("other0") <= 2, `served in turn, not after the flood: ${finished.join(" ")}`);
  });

  it("a queue full of one client's calls refuses that client's next call", async () => {
    const hasher = createPasswordHasher({ scrypt: { logN: 12 }, maxConcurrent: 1, maxQueue: 2 });
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () => hasher.dummyVerify("x", { fairnessKey: "one" })),
    );
    assert.deepEqual(
      results.map((r) => r.status),
      ["fulfilled", "fulfilled", "fulfilled", "rejected", "rejected"],
    );
  });
});

describe("throttle rows expire and are purged", { timeout: 60_000 }, () => {
  it("failures older than 15 minutes are deleted by a later login", async () => {
    const database = await createTestDatabase();
    const keyring = await createKeyring([{ alg: "HS256", secret: SECRET }]);
    const clock = { now: Date.now() };
    const service = createAuthService({
      database,
      issuer: createTokenIssuer({ keyring }),
      verifier: createTokenVerifier({ keyring }),
      passwordHasher: createPasswordHasher({ scrypt: { logN: 10 } }),
      now: () => clock.now,
    });
    const client = createClient(
      AuthService,
      createRouterTransport((router) => router.service(AuthService, service)),
    );
    try {
      for (const name of ["old-1", "old-2", "old-3"]) await failure(client.login({ username: name, password: "x" }));
      clock.now += 10 * 60_000;
      await failure(client.login({ username: "recent-1", password: "x" }));
      assert.equal(await rowCount(database, ""), 4);
      clock.now += 6 * 60_000; // old-*: 16 minutes ago; recent-1: 6
      await failure(client.login({ username: "trigger", password: "x" }));
      assert.equal(await rowCount(database, "old-"), 0, "expired rows are purged");
      assert.equal(await rowCount(database, "recent-"), 1, "rows within the window are kept");
      assert.equal(await rowCount(database, "trigger"), 1);
    } finally {
      await database.close();
    }
  });

  it("a login refused by the client budget writes nothing", async () => {
    const database = await createTestDatabase();
    const keyring = await createKeyring([{ alg: "HS256", secret: SECRET }]);
    const service = createAuthService({
      database,
      issuer: createTokenIssuer({ keyring }),
      verifier: createTokenVerifier({ keyring }),
      passwordHasher: createPasswordHasher({ scrypt: { logN: 10 } }),
      loginAdmission: { burst: 2, perMinute: 0 },
    });
    // In memory, with the client address a front-end would set.
    const transport = createRouterTransport((router) => router.service(AuthService, service), {
      router: { interceptors: [(next) => (req) => (req.contextValues.set(peerAddressKey, "192.0.2.44"), next(req))] },
    });
    const client = createClient(AuthService, transport);
    try {
      const outcomes = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => client.login({ username: `budget-${i}`, password: "x" })),
      );
      const seen = new Map<string, number>();
      tally(seen, outcomes);
      assert.deepEqual(Object.fromEntries(seen), {
        "Unauthenticated/INVALID_CREDENTIALS": 2,
        "ResourceExhausted/LOGIN_THROTTLED": 8,
      });
      assert.equal(await rowCount(database, "budget-"), 2);
    } finally {
      await database.close();
    }
  });
});

describe("usernames are taken in NFKC form, as Django does", { timeout: 60_000 }, () => {
  let database: TestDatabase;
  let client: Client<typeof AuthService>;
  before(async () => {
    database = await createTestDatabase();
    const keyring = await createKeyring([{ alg: "HS256", secret: SECRET }]);
    const hasher = createPasswordHasher({ scrypt: { logN: 10 } });
    await createUser(database.db, { username: "bob", passwordHash: await hasher.hash("bob-password") });
    await createUser(database.db, { username: "finn", passwordHash: await hasher.hash("finn-password") });
    const service = createAuthService({
      database,
      issuer: createTokenIssuer({ keyring }),
      verifier: createTokenVerifier({ keyring }),
      passwordHasher: hasher,
    });
    client = createClient(
      AuthService,
      createRouterTransport((router) => router.service(AuthService, service)),
    );
  });
  after(async () => database?.close());

  it("a compatibility variant of a name logs in as that user", async () => {
    const fullwidth = await client.login({ username: "ｂｏｂ", password: "bob-password" });
    assert.equal(fullwidth.user?.username, "bob");
    const ligature = await client.login({ username: "ﬁnn", password: "finn-password" });
    assert.equal(ligature.user?.username, "finn");
  });

  it("a variant is stored in its normal form, so it cannot be registered beside the name", async () => {
    for (const variant of ["ｂｏｂ", "ﬁnn"]) {
      await assert.rejects(
        createUser(database.db, { username: variant }),
        (e: unknown) => e instanceof StoreError && e.code === "DUPLICATE_USERNAME",
      );
    }
    assert.equal((await createUser(database.db, { username: "ｄａｎ" })).username, "dan");
  });

  it("variants share one throttle: guessing through them locks the name", async () => {
    await createUser(database.db, { username: "carol" });
    const variants = ["ｃａｒｏｌ", "ｃarol", "cａrol", "caｒol", "carｏl", "caroｌ"];
    const seen = [];
    for (const username of variants)
      seen.push(authErrorReason(await failure(client.login({ username, password: "x" }))));
    seen.push(authErrorReason(await failure(client.login({ username: "carol", password: "x" }))));
    assert.deepEqual(seen, [...Array(6).fill("INVALID_CREDENTIALS"), "LOGIN_THROTTLED"]);
  });
});
