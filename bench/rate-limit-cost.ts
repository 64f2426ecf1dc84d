/**
 * `npx tsx bench/rate-limit-cost.ts [--quick] [--json]`: what a rule's `rate_limit` costs a warm
 * call. The same method (guardtest.v1.UnannotatedService/Anything, ruled by the server default) is
 * served by auth layers over one database, on Connect's in-memory transport so that nothing but
 * the auth layer and Connect itself is measured:
 *
 * - plain:   `{ authenticated: true }`
 * - memory:  the same with `rate_limit: {requests: 1000000, per: "1d"}`, counted in memory
 * - redis:   the same limit counted in the Redis at 127.0.0.1:6379 (a unique key prefix, deleted
 *            after); skipped, saying so, when Redis is unreachable
 *
 * The limit is never reached: every call is counted and admitted, which is the cost measured.
 * Rounds are interleaved in alternating order; the median rate (calls/s) and CPU time of this
 * process per call are printed with their ratios to plain (the Redis variant's CPU excludes the
 * Redis server's own). With `--json` the last line is a JSON summary for bench/results.json.
 */
import { randomBytes } from "node:crypto";
import { cpus, loadavg } from "node:os";
import { createClient, type ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { Redis } from "ioredis";
import { PingSchema, UnannotatedService } from "../gen/guardtest/v1/guarded_pb.js";
import { getUser, type RuleInit } from "../src/exports/protoguard.js";
import type { RateLimiterOptions } from "../src/exports/core.js";
import { createTestAuth, createTestDatabase, type TestAuth } from "../src/exports/testing.js";

const quick = process.argv.includes("--quick");
const json = process.argv.includes("--json");
const ROUNDS = quick ? 3 : 7;
const CALLS = quick ? 3_000 : 10_000;
const WARMUP = quick ? 1_000 : 3_000;
const CONCURRENCY = 16;
const REDIS_URL = "redis://127.0.0.1:6379";
const LIMITED: RuleInit = { authenticated: true, rateLimit: { requests: 1_000_000, per: "1d" } };

const routes = (router: ConnectRouter) =>
  router.service(UnannotatedService, {
    anything: (req, ctx) => ({ text: req.text, username: getUser(ctx)?.username ?? "" }),
  });

interface Variant {
  readonly name: string;
  readonly fixture: TestAuth;
  readonly call: () => Promise<unknown>;
  readonly refresh: () => Promise<void>;
  readonly rates: number[];
  readonly cpu: number[];
}

async function redisReachable(): Promise<boolean> {
  const client = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 1000 });
  client.on("error", () => {});
  try {
    await client.connect();
    return (await client.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

async function main(): Promise<void> {
  const database = await createTestDatabase();
  const variants: Variant[] = [];
  const keyPrefix = `protoguard-bench:${randomBytes(6).toString("hex")}`;
  let user: { id: number } | undefined;
  const notes: string[] = [];
  try {
    const make = async (name: string, defaultRule: RuleInit, rateLimits?: RateLimiterOptions) => {
      const fixture = await createTestAuth({
        routes,
        database,
        defaultRule,
        ...(rateLimits !== undefined && { rateLimits }),
      });
      user ??= await fixture.createUser({ username: "bench" });
      const bench = user;
      let headers = await fixture.authHeaders(bench);
      const client = createClient(UnannotatedService, fixture.transport);
      const request = create(PingSchema, { text: "hello" });
      const call = () => client.anything(request, { headers });
      const refresh = async () => {
        headers = await fixture.authHeaders(bench);
      };
      variants.push({ name, fixture, call, refresh, rates: [], cpu: [] });
    };
    await make("plain", { authenticated: true });
    await make("memory", LIMITED);
    if (await redisReachable()) await make("redis", LIMITED, { redisUrl: REDIS_URL, keyPrefix });
    else notes.push("redis: skipped, no Redis at 127.0.0.1:6379");

    for (const v of variants) await drive(v.call, WARMUP);
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? variants : [...variants].reverse();
      for (const v of order) {
        await v.refresh();
        await drive(v.call, 200);
        const started = performance.now();
        const cpu = process.cpuUsage();
        await drive(v.call, CALLS);
        const used = process.cpuUsage(cpu);
        v.rates.push(CALLS / ((performance.now() - started) / 1000));
        v.cpu.push((used.user + used.system) / CALLS);
      }
    }

    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const plain = median(variants[0]!.rates);
    const plainCpu = median(variants[0]!.cpu);
    console.log(
      `warm unary calls, in-memory transport, ${CONCURRENCY} in flight, ${ROUNDS} interleaved rounds of ${CALLS}`,
    );
    console.log(`limit: rate_limit {requests: 1000000, per: "1d"} (never reached: every call counted and admitted)`);
    console.log(
      `(median of rounds; load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(" ")} on ${cpus().length} cores)`,
    );
    const summary: Record<string, unknown> = { rounds: ROUNDS, callsPerRound: CALLS, notes };
    for (const v of variants) {
      const rate = median(v.rates);
      const cpu = median(v.cpu);
      const base = v === variants[0];
      summary[v.name] = {
        callsPerSecond: rate,
        cpuUsPerCall: cpu,
        ...(!base && { rateRatio: rate / plain, cpuCostPercent: (cpu / plainCpu - 1) * 100 }),
      };
      console.log(
        `${v.name.padEnd(8)} ${rate.toFixed(0).padStart(7)} calls/s` +
          (base ? "   (baseline)   " : `   ratio ${(rate / plain).toFixed(3)}`) +
          `   CPU ${cpu.toFixed(1).padStart(6)} µs/call` +
          (base ? "   (baseline)" : `   cost ${((cpu / plainCpu - 1) * 100).toFixed(1)}% of a call's CPU`),
      );
    }
    for (const note of notes) console.log(note);
    if (json) console.log(JSON.stringify(summary));
  } finally {
    for (const v of variants) await v.fixture.close();
    await database.close();
    if (await redisReachable()) {
      const redis = new Redis(REDIS_URL);
      const keys = await redis.keys(`${keyPrefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  }
}

/** Runs `total` calls, `CONCURRENCY` at a time. */
async function drive(call: () => Promise<unknown>, total: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < total) {
      next++;
      await call();
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

await main();
