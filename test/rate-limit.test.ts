/**
 * Rate limits declared in rules (`rate_limit`), through the public API on a real server: per
 * principal, per anonymous client address, per method for a service rule, burst, the RetryInfo
 * detail, refused calls spending nothing, two instances sharing one count in Redis, and Redis
 * down answered as configured (open with a metric, or closed).
 */
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Code, createClient, type ConnectRouter, type HandlerContext, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { pino } from "pino";
import { LimitedService, MalformedLimitService, ServiceLimitedService } from "../gen/guardtest/v1/limits_pb.js";
import { ErrorInfoSchema, RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import {
  authErrorMetadata,
  createKeyring,
  createTokenIssuer,
  createTokenVerifier,
  getUser,
  PolicyError,
} from "../src/exports/protoguard.js";
import { createAuthPolicy, parseRateLimitWindow, planRateLimit } from "../src/exports/core.js";
import { retryDelayMs } from "../src/exports/client.js";
import {
  ConfigError,
  loadConfig,
  startServer,
  type RunningServer,
  type StartServerOptions,
} from "../src/exports/server.js";
import { createUser, grantUserPermissions } from "../src/exports/store.js";
import { createTestDatabase } from "../src/testing/database.js";
import type { Database } from "../src/store/database-handle.js";
import { bearer, expectError } from "./helpers/connect.js";
import { TEST_SECRET } from "./helpers/secrets.js";
import { policyReport, runPolicy } from "../src/cli/policy.js";
import { policyOpenApi } from "../src/cli/openapi.js";

const REDIS_URL = "redis://127.0.0.1:6379";

function routes(router: ConnectRouter): void {
  const pong = (req: { text: string }, ctx: HandlerContext) => ({
    text: req.text,
    username: getUser(ctx)?.username ?? "",
  });
  router.service(LimitedService, {
    publicLimited: pong,
    userLimited: pong,
    burstLimited: pong,
    permissionLimited: pong,
    conditionLimited: pong,
    unlimited: pong,
  });
  router.service(ServiceLimitedService, { first: pong, second: pong });
}

/** Whether Redis answers at 127.0.0.1:6379; the reason to skip when it does not. */
async function redisUnreachable(): Promise<string | false> {
  const client = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 1000 });
  client.on("error", () => {});
  try {
    await client.connect();
    return (await client.ping()) === "PONG" ? false : "Redis at 127.0.0.1:6379 did not answer PONG";
  } catch (error) {
    return `Redis at 127.0.0.1:6379 is unreachable (${(error as Error).message})`;
  } finally {
    client.disconnect();
  }
}

/** A local TCP port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** `protoguard_rate_limit*` totals from a scrape, keyed `name{labels}`. */
async function rateMetrics(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const totals: Record<string, number> = {};
  for (const match of text.matchAll(/^(protoguard_rate_limit\w*)(\{[^}]*\})? (\d+)$/gm)) {
    totals[`${match[1]}${match[2] ?? ""}`] = Number(match[3]);
  }
  return totals;
}

describe("rate limits declared in rules", { timeout: 120_000 }, () => {
  let database: Database;
  let keyring: Awaited<ReturnType<typeof createKeyring>>;
  let issuer: ReturnType<typeof createTokenIssuer>;
  const servers: RunningServer[] = [];

  async function serve(extra: Partial<StartServerOptions> = {}): Promise<RunningServer> {
    const server = await startServer({
      runtime: { database, keyring, verifier: createTokenVerifier({ keyring }) },
      routes,
      port: 0,
      logger: pino({ level: "silent" }),
      // The test names its anonymous clients' addresses through x-forwarded-for.
      clientAddress: { trustedProxies: ["127.0.0.1"] },
      ...extra,
    });
    servers.push(server);
    return server;
  }
  const transportOf = (server: RunningServer): Transport =>
    createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" });
  let serial = 0;
  async function newUser(permissions: string[] = []) {
    const user = await createUser(database.db, { username: `rl_${++serial}_${randomBytes(3).toString("hex")}` });
    if (permissions.length > 0) await grantUserPermissions(database.db, user.username, permissions);
    const token = (await issuer.issueAccess(user.id)).token;
    return { user, token, auth: bearer(token) };
  }

  before(async () => {
    database = await createTestDatabase();
    keyring = await createKeyring([{ alg: "HS256", secret: TEST_SECRET }]);
    issuer = createTokenIssuer({ keyring });
  });
  after(async () => {
    for (const server of servers) await server.close();
    await database?.close();
  });

  describe("in memory (the default)", () => {
    let server: RunningServer;
    let limited: ReturnType<typeof createClient<typeof LimitedService>>;
    let serviceLimited: ReturnType<typeof createClient<typeof ServiceLimitedService>>;
    before(async () => {
      server = await serve();
      limited = createClient(LimitedService, transportOf(server));
      serviceLimited = createClient(ServiceLimitedService, transportOf(server));
    });

    it("an identified caller gets `requests` calls per window, then RESOURCE_EXHAUSTED RATE_LIMITED", async () => {
      const alice = await newUser();
      const bob = await newUser();
      assert.equal((await limited.userLimited({ text: "1" }, alice.auth)).text, "1");
      await limited.userLimited({ text: "2" }, alice.auth);
      const refused = await expectError(limited.userLimited({}, alice.auth), Code.ResourceExhausted, "RATE_LIMITED");
      assert.deepEqual(authErrorMetadata(refused), { limit: "2", window: "1m", burst: "0" });
      // Counted per principal: another caller has a budget of its own.
      await limited.userLimited({}, bob.auth);
      await limited.userLimited({}, bob.auth);
    });

    it("the refusal carries a google.rpc.RetryInfo detail within the window, and a retry-after header", async () => {
      const carol = await newUser();
      await limited.userLimited({}, carol.auth);
      await limited.userLimited({}, carol.auth);
      const refused = await expectError(limited.userLimited({}, carol.auth), Code.ResourceExhausted, "RATE_LIMITED");
      const [retry] = refused.findDetails(RetryInfoSchema);
      assert.ok(retry?.retryDelay !== undefined, "a RetryInfo detail with a retry delay");
      const delay = retryDelayMs(refused);
      assert.ok(
        delay !== undefined && delay > 50_000 && delay <= 60_000,
        `retry delay ${delay} ms within the 1m window`,
      );
      assert.equal(refused.findDetails(ErrorInfoSchema).length, 1);
      // The same over plain HTTP: Connect's 429, with retry-after in whole seconds.
      const response = await fetch(`${server.url}/guardtest.v1.LimitedService/UserLimited`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${carol.token}` },
        body: "{}",
      });
      assert.equal(response.status, 429);
      const retryAfter = Number(response.headers.get("retry-after"));
      assert.ok(retryAfter >= 50 && retryAfter <= 60, `retry-after ${retryAfter}`);
    });

    it("anonymous callers are counted per client address", async () => {
      const from = (address: string) => ({ headers: { "x-forwarded-for": address } });
      await limited.publicLimited({}, from("203.0.113.7"));
      await limited.publicLimited({}, from("203.0.113.7"));
      await expectError(limited.publicLimited({}, from("203.0.113.7")), Code.ResourceExhausted, "RATE_LIMITED");
      // Another address, its own budget.
      assert.equal((await limited.publicLimited({ text: "ok" }, from("203.0.113.8"))).text, "ok");
      // One IPv6 subscriber (a /64) is one client, whatever address of it calls.
      await limited.publicLimited({}, from("2001:db8:1:2::1"));
      await limited.publicLimited({}, from("2001:db8:1:2::ffff"));
      await expectError(limited.publicLimited({}, from("2001:db8:1:2::3")), Code.ResourceExhausted, "RATE_LIMITED");
    });

    it("a service rule's limit applies to each of its methods, counted per method", async () => {
      const dave = await newUser();
      await serviceLimited.first({}, dave.auth);
      await expectError(serviceLimited.first({}, dave.auth), Code.ResourceExhausted, "RATE_LIMITED");
      await serviceLimited.second({}, dave.auth);
      const refused = await expectError(serviceLimited.second({}, dave.auth), Code.ResourceExhausted, "RATE_LIMITED");
      assert.deepEqual(authErrorMetadata(refused), { limit: "1", window: "30s", burst: "0" });
    });

    it("burst: the steady calls, then `burst` more, then refused", async () => {
      const erin = await newUser();
      for (let i = 0; i < 3; i++) await limited.burstLimited({ text: String(i) }, erin.auth);
      const refused = await expectError(limited.burstLimited({}, erin.auth), Code.ResourceExhausted, "RATE_LIMITED");
      assert.equal(authErrorMetadata(refused)["burst"], "1");
    });

    it("refused calls spend no budget: a missing permission, a false condition", async () => {
      const frank = await newUser();
      for (let i = 0; i < 3; i++) {
        await expectError(limited.permissionLimited({}, frank.auth), Code.PermissionDenied, "PERMISSION_MISSING");
      }
      for (let i = 0; i < 3; i++) {
        await expectError(
          limited.conditionLimited({ text: "no" }, frank.auth),
          Code.PermissionDenied,
          "CONDITION_FAILED",
        );
      }
      // The one admitted call of the window is still there, after six refusals.
      assert.equal((await limited.conditionLimited({ text: "yes" }, frank.auth)).text, "yes");
      await expectError(limited.conditionLimited({ text: "yes" }, frank.auth), Code.ResourceExhausted, "RATE_LIMITED");
      // The permission method has its own count: a caller holding the permission gets one call.
      const grace = await newUser(["shop.view_order"]);
      await limited.permissionLimited({}, grace.auth);
      await expectError(limited.permissionLimited({}, grace.auth), Code.ResourceExhausted, "RATE_LIMITED");
    });

    it("methods without a limit are not counted, and /metrics counts refusals by method", async () => {
      const heidi = await newUser();
      for (let i = 0; i < 20; i++) await limited.unlimited({}, heidi.auth);
      const metrics = await rateMetrics(server.url);
      assert.ok(
        (metrics['protoguard_rate_limited_total{method="/guardtest.v1.LimitedService/UserLimited"}'] ?? 0) >= 2,
        JSON.stringify(metrics),
      );
      assert.equal(
        metrics['protoguard_rate_limited_total{method="/guardtest.v1.LimitedService/Unlimited"}'],
        undefined,
      );
      assert.equal(metrics['protoguard_rate_limit_store_errors_total{outcome="open"}'], 0);
    });
  });

  describe("shared in Redis", () => {
    it("two instances with the same Redis share one count", async (t) => {
      const skip = await redisUnreachable();
      if (skip) return t.skip(skip);
      const keyPrefix = `protoguard-test:${randomBytes(6).toString("hex")}`;
      const one = await serve({ rateLimits: { redisUrl: REDIS_URL, keyPrefix } });
      const two = await serve({ rateLimits: { redisUrl: REDIS_URL, keyPrefix } });
      assert.ok(one.auth.rateLimiter.shared && two.auth.rateLimiter.shared);
      const a = createClient(LimitedService, transportOf(one));
      const b = createClient(LimitedService, transportOf(two));
      const ivan = await newUser();
      await a.userLimited({}, ivan.auth);
      await b.userLimited({}, ivan.auth);
      // Two calls in all: the budget is spent, on either instance.
      await expectError(a.userLimited({}, ivan.auth), Code.ResourceExhausted, "RATE_LIMITED");
      const refused = await expectError(b.userLimited({}, ivan.auth), Code.ResourceExhausted, "RATE_LIMITED");
      const delay = retryDelayMs(refused);
      assert.ok(delay !== undefined && delay > 0 && delay <= 60_000, `retry delay ${delay}`);
      // Burst and anonymous callers are shared too.
      const from = { headers: { "x-forwarded-for": "198.51.100.20" } };
      await a.publicLimited({}, from);
      await b.publicLimited({}, from);
      await expectError(a.publicLimited({}, from), Code.ResourceExhausted, "RATE_LIMITED");
      const judy = await newUser();
      await a.burstLimited({}, judy.auth);
      await b.burstLimited({}, judy.auth);
      await a.burstLimited({}, judy.auth);
      await expectError(b.burstLimited({}, judy.auth), Code.ResourceExhausted, "RATE_LIMITED");
      // The keys are under the prefix, and expire with their window.
      const redis = new Redis(REDIS_URL);
      try {
        const keys = await redis.keys(`${keyPrefix}:*`);
        assert.ok(keys.length >= 3, keys.join(", "));
        for (const key of keys) assert.ok((await redis.pttl(key)) > 0, `${key} expires`);
        await redis.del(...keys);
      } finally {
        redis.disconnect();
      }
    });

    it("Redis down, fail open (the default): admitted uncounted, counted in the store-error metric", async () => {
      const port = await closedPort();
      const server = await serve({ rateLimits: { redisUrl: `redis://127.0.0.1:${port}` } });
      const client = createClient(LimitedService, transportOf(server));
      const kim = await newUser();
      // Well past the limit of 2: every call admitted.
      for (let i = 0; i < 4; i++) assert.equal((await client.userLimited({ text: "x" }, kim.auth)).text, "x");
      const metrics = await rateMetrics(server.url);
      assert.equal(metrics['protoguard_rate_limit_store_errors_total{outcome="open"}'], 4);
      assert.equal(metrics['protoguard_rate_limit_store_errors_total{outcome="closed"}'], 0);
      // Methods without a limit never touch Redis.
      await client.unlimited({}, kim.auth);
      assert.equal((await rateMetrics(server.url))['protoguard_rate_limit_store_errors_total{outcome="open"}'], 4);
    });

    it("Redis down, fail closed: UNAVAILABLE RATE_LIMIT_UNAVAILABLE, and methods without a limit still served", async () => {
      const port = await closedPort();
      const errors: string[] = [];
      const server = await serve({
        rateLimits: {
          redisUrl: `redis://127.0.0.1:${port}`,
          onRedisError: "closed",
          onStoreError: (_error, outcome) => errors.push(outcome),
        },
      });
      const client = createClient(LimitedService, transportOf(server));
      const leo = await newUser();
      await expectError(client.userLimited({}, leo.auth), Code.Unavailable, "RATE_LIMIT_UNAVAILABLE");
      await expectError(client.publicLimited({}), Code.Unavailable, "RATE_LIMIT_UNAVAILABLE");
      assert.equal((await client.unlimited({ text: "fine" }, leo.auth)).text, "fine");
      assert.deepEqual(errors, ["closed", "closed"]);
      assert.equal((await rateMetrics(server.url))['protoguard_rate_limit_store_errors_total{outcome="closed"}'], 2);
    });
  });

  it("the environment: in memory and fail open by default; a bad URL or choice is a ConfigError", () => {
    const defaults = loadConfig({});
    assert.equal(defaults.rateLimitRedisUrl, undefined);
    assert.equal(defaults.rateLimitOnRedisError, "open");
    assert.equal(defaults.rateLimitRedisTimeoutMs, 250);
    assert.equal(defaults.rateLimitKeyPrefix, "protoguard:rl");
    const set = loadConfig({
      PROTOGUARD_RATE_LIMIT_REDIS_URL: "redis://127.0.0.1:6379/2",
      PROTOGUARD_RATE_LIMIT_ON_REDIS_ERROR: "CLOSED",
    });
    assert.equal(set.rateLimitRedisUrl, "redis://127.0.0.1:6379/2");
    assert.equal(set.rateLimitOnRedisError, "closed");
    assert.throws(() => loadConfig({ PROTOGUARD_RATE_LIMIT_REDIS_URL: "http://x" }), ConfigError);
    assert.throws(() => loadConfig({ PROTOGUARD_RATE_LIMIT_ON_REDIS_ERROR: "maybe" }), /open or closed/);
  });

  describe("malformed limits", () => {
    it("windows are whole seconds written with units; limits are planned or their problems named", () => {
      assert.equal(parseRateLimitWindow("60s"), 60);
      assert.equal(parseRateLimitWindow("1m"), 60);
      assert.equal(parseRateLimitWindow("1h30m"), 5400);
      assert.equal(parseRateLimitWindow("1d"), 86_400);
      for (const bad of ["", "60", "1.5s", "s", "1m1h", "-1s", "1 m", "1ms"]) {
        assert.equal(parseRateLimitWindow(bad), undefined, bad);
      }
      assert.deepEqual(planRateLimit({ requests: 5, per: "1m", burst: 2 }), {
        rateLimit: { requests: 5, per: "1m", windowSeconds: 60, burst: 2 },
      });
      assert.deepEqual(planRateLimit(undefined), {});
      const problems = (init: Parameters<typeof planRateLimit>[0]) => {
        const planned = planRateLimit(init);
        return "problems" in planned ? planned.problems : [];
      };
      assert.match(problems({ requests: 1, per: "" }).join(), /rate_limit\.per is required/);
      assert.match(problems({ requests: 1, per: "2d" }).join(), /must be from 1s to 1d/);
      assert.match(problems({ requests: 1, per: "0s" }).join(), /must be from 1s to 1d/);
      assert.match(problems({ requests: 2_000_000, per: "1s" }).join(), /at most 1000000/);
      assert.match(problems({ requests: 1, per: "1s", burst: -1 }).join(), /non-negative integer/);
      assert.equal(problems({ requests: 1, per: "1s", burst: 10 }).length, 0);
      assert.equal(problems({ requests: 0, per: "x", burst: 1 }).length, 2);
    });

    it("the policy names every malformed rate_limit, and the server refuses to start", async () => {
      assert.throws(
        () => createAuthPolicy({ services: [MalformedLimitService] }),
        (error: unknown) => {
          assert.ok(error instanceof PolicyError);
          const text = error.problems.join("\n");
          assert.match(text, /ZeroRequests: rate_limit\.requests must be at least 1, got 0/);
          assert.match(text, /NotADuration: rate_limit\.per "soon" is not a duration/);
          assert.match(text, /HugeBurst: rate_limit\.burst 1000 is more than 10 times requests 1/);
          return true;
        },
      );
      await assert.rejects(
        startServer({
          runtime: { database, keyring, verifier: createTokenVerifier({ keyring }) },
          routes: (router) => router.service(MalformedLimitService, {}),
          port: 0,
          logger: pino({ level: "silent" }),
        }),
        PolicyError,
      );
    });

    it("protoguard policy --check fails on them and the report shows well-formed limits", async () => {
      const out: string[] = [];
      const err: string[] = [];
      const io = { out: (line: string) => out.push(line), err: (line: string) => err.push(line) };
      assert.equal(await runPolicy([MalformedLimitService], ["--check"], io), 1);
      assert.match(err.join("\n"), /ZeroRequests has a malformed rule/);
      out.length = 0;
      assert.equal(await runPolicy([LimitedService, ServiceLimitedService], ["--check", "--format", "json"], io), 0);
      const report = JSON.parse(out.join("\n")) as { rows: { method: string; rule: string; rateLimit?: unknown }[] };
      const row = (name: string) => report.rows.find((r) => r.method.endsWith(name));
      assert.equal(row("/BurstLimited")?.rule, "authenticated; rate_limit: 2/60s burst 1");
      assert.deepEqual(row("/BurstLimited")?.rateLimit, { requests: 2, per: "60s", burst: 1 });
      assert.deepEqual(row("/First")?.rateLimit, { requests: 1, per: "30s", burst: 0 });
      assert.equal(row("/Unlimited")?.rateLimit, undefined);
    });

    it("the OpenAPI export shows the limit and the 429 it answers", () => {
      const services = [LimitedService];
      const doc = policyOpenApi(services, policyReport(services, createAuthPolicy())) as {
        paths: Record<string, { post: Record<string, unknown> }>;
      };
      const post = doc.paths["/guardtest.v1.LimitedService/BurstLimited"]!.post;
      assert.deepEqual((post["x-protoguard"] as { rateLimit?: unknown }).rateLimit, {
        requests: 2,
        per: "60s",
        burst: 1,
      });
      assert.ok("429" in (post["responses"] as object));
      assert.match(String(post["description"]), /At most 2 calls per 60s per caller, plus a burst of 1\./);
      const unlimited = doc.paths["/guardtest.v1.LimitedService/Unlimited"]!.post;
      assert.equal((unlimited["x-protoguard"] as { rateLimit?: unknown }).rateLimit, undefined);
      assert.ok(!("429" in (unlimited["responses"] as object)));
    });
  });
});
