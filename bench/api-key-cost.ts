/**
 * `npx tsx bench/api-key-cost.ts [--quick] [--json]`: what an API key costs a
 * warm call against a JWT. The same method (guardtest.v1.KindService/Charge,
 * `permissions: ["billing.charge"]`) is called by one user through one auth
 * layer on Connect's in-memory transport, so that nothing but the auth layer
 * and Connect itself is measured:
 *
 * - jwt:     `Bearer <access token>`, warm (verified-token cache and principal cache hit)
 * - api_key: `Bearer pgk_<id>_<secret>`, warm (key cache hit: a SHA-256 of the secret and a
 *            constant-time comparison per call, the owner's scoped principal from the cache)
 *
 * Rounds are interleaved (in alternating order) so drift on a shared machine
 * hits both alike; the median rate and the median CPU time of this process
 * per call are printed with the ratios to jwt. With `--json` the last line
 * is a JSON summary (what `npm run bench` reads into bench/results.json).
 */
import { cpus, loadavg } from "node:os";
import { create } from "@bufbuild/protobuf";
import { createClient, type ConnectRouter } from "@connectrpc/connect";
import { KindService } from "../gen/guardtest/v1/kinds_pb.js";
import { PingSchema } from "../gen/guardtest/v1/guarded_pb.js";
import { createTestAuth } from "../src/exports/testing.js";

const quick = process.argv.includes("--quick");
const json = process.argv.includes("--json");
const ROUNDS = quick ? 3 : 9;
const CALLS = quick ? 3_000 : 10_000;
const WARMUP = quick ? 1_000 : 5_000;
/** In flight at once, like a busy server's concurrent calls. */
const CONCURRENCY = 16;

const routes = (router: ConnectRouter) => {
  const pong = (req: { text: string }) => ({ text: req.text, username: "" });
  router.service(KindService, {
    forUsers: pong,
    forServices: pong,
    chargeForServices: pong,
    authenticated: pong,
    charge: pong,
    public: pong,
    async *follow(req) {
      yield pong(req);
    },
  });
};

interface Variant {
  readonly name: "jwt" | "api_key";
  readonly call: () => Promise<unknown>;
  readonly rates: number[];
  readonly cpu: number[];
}

async function main(): Promise<void> {
  await using fixture = await createTestAuth({ routes });
  const user = await fixture.createUser({ username: "bench", permissions: ["billing.charge", "shop.view_order"] });
  const { key } = await fixture.createApiKey(user, { scopes: ["billing.charge"] });
  const client = createClient(KindService, fixture.transport);
  const request = create(PingSchema, { text: "hello" });
  let jwtHeaders = await fixture.authHeaders(user);
  const keyHeaders = { authorization: `Bearer ${key}` };
  const variants: Variant[] = [
    { name: "jwt", call: () => client.charge(request, { headers: jwtHeaders }), rates: [], cpu: [] },
    { name: "api_key", call: () => client.charge(request, { headers: keyHeaders }), rates: [], cpu: [] },
  ];
  for (const v of variants) await drive(v.call, WARMUP);
  const lookupsBefore = fixture.apiKeys.lookups;
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? variants : [...variants].reverse();
    // A full run outlasts an access token's lifetime: a fresh one each round, verified and cached first.
    jwtHeaders = await fixture.authHeaders(user);
    await drive(variants[0]!.call, 200);
    for (const v of order) {
      const started = performance.now();
      const cpu = process.cpuUsage();
      await drive(v.call, CALLS);
      const used = process.cpuUsage(cpu);
      v.rates.push(CALLS / ((performance.now() - started) / 1000));
      v.cpu.push((used.user + used.system) / CALLS);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const [jwt, apiKey] = variants as [Variant, Variant];
  const summary = {
    rounds: ROUNDS,
    callsPerRound: CALLS,
    jwt: { callsPerSecond: median(jwt.rates), cpuUsPerCall: median(jwt.cpu) },
    apiKey: {
      callsPerSecond: median(apiKey.rates),
      cpuUsPerCall: median(apiKey.cpu),
      rateRatio: median(apiKey.rates) / median(jwt.rates),
      pairedCpuRatio: pairedRatio(apiKey.cpu, jwt.cpu),
    },
    // Key look-ups during the measured rounds: 0 means every call was answered from the cache.
    keyLookupsMeasured: fixture.apiKeys.lookups - lookupsBefore,
  };
  console.log(
    `warm unary calls, in-memory transport, ${CONCURRENCY} in flight, ${ROUNDS} interleaved rounds of ${CALLS}`,
  );
  console.log(
    `(median of rounds; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")} on ${cpus().length} cores)`,
  );
  for (const v of variants) {
    const base = v === jwt;
    console.log(
      `${v.name.padEnd(8)} ${median(v.rates).toFixed(0).padStart(7)} calls/s` +
        (base ? "   (baseline)     " : `   ratio ${summary.apiKey.rateRatio.toFixed(3)}`) +
        `   CPU ${median(v.cpu).toFixed(1).padStart(6)} µs/call` +
        (base
          ? "   (baseline)"
          : `   CPU ratio ${summary.apiKey.pairedCpuRatio.toFixed(3)} (median of per-round pairs)`),
    );
  }
  console.log(`key look-ups while measuring: ${summary.keyLookupsMeasured}`);
  if (json) console.log(JSON.stringify(summary));
}

/** The median over rounds of `xs[r] / base[r]`: both ran back to back in each round. */
function pairedRatio(xs: readonly number[], base: readonly number[]): number {
  const ratios = xs.map((x, r) => x / base[r]!).sort((a, b) => a - b);
  return ratios[Math.floor(ratios.length / 2)]!;
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
