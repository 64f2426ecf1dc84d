/**
 * `npx tsx bench/condition-cost.ts [--quick]`: what a simple CEL condition
 * costs a warm call. The same method (guardtest.v1.UnannotatedService/
 * Anything, ruled by the server default) is served by three auth layers over
 * one database, on Connect's in-memory transport so that nothing but the
 * auth layer and Connect itself is measured:
 *
 * - plain:      `{ authenticated: true }`
 * - condition:  `{ authenticated: true, condition: CONDITION }` (principal and request)
 * - loader:     `{ authenticated: true, condition: "resource.owner_id == principal.id || principal.is_staff" }`
 *               with a resource loader answering from memory (the loader's own I/O excluded)
 *
 * Rounds are interleaved (in alternating order) so that drift on a shared
 * machine hits every variant alike. For each, the median rate (calls/s,
 * wall clock) and the median CPU time of this process per call are printed,
 * with the ratios to plain; on a shared machine the CPU time is the steadier
 * figure. The goal: a simple condition costs under 5% of a call.
 *
 * With `--json` the last line is a JSON summary, which `npm run bench`
 * reads into bench/results.json and its table.
 */
import { cpus, loadavg } from "node:os";
import { celList, celMap, type CelList } from "@bufbuild/cel";
import { createClient, type ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { PingSchema, UnannotatedService } from "../gen/guardtest/v1/guarded_pb.js";
import { getUser, type RuleInit } from "../src/exports/protoguard.js";
import { createTestAuth, createTestDatabase, type TestAuth } from "../src/exports/testing.js";

const quick = process.argv.includes("--quick");
const json = process.argv.includes("--json");
const ROUNDS = quick ? 3 : 9;
const CALLS = quick ? 3_000 : 10_000;
const WARMUP = quick ? 1_000 : 5_000;
/** In flight at once, like a busy server's concurrent calls. */
const CONCURRENCY = 16;
const CONDITION = "principal.id > 0 && request.text.size() < 100";

const routes = (router: ConnectRouter) =>
  router.service(UnannotatedService, {
    anything: (req, ctx) => ({ text: req.text, username: getUser(ctx)?.username ?? "" }),
  });

interface Variant {
  readonly name: string;
  readonly fixture: TestAuth;
  readonly call: () => Promise<unknown>;
  /** Mints a fresh token: a full run outlasts an access token's lifetime. */
  readonly refresh: () => Promise<void>;
  readonly rates: number[];
  /** CPU time of this process per call, µs: steadier than the rate on a shared machine. */
  readonly cpu: number[];
}

async function main(): Promise<void> {
  const database = await createTestDatabase();
  const variants: Variant[] = [];
  let user: { id: number } | undefined;
  try {
    const make = async (name: string, defaultRule: RuleInit, withLoader = false) => {
      const fixture = await createTestAuth({
        routes,
        database,
        defaultRule,
        ...(withLoader && {
          resources: { "guardtest.v1.UnannotatedService/Anything": () => ({ owner_id: 1 }) },
        }),
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
    await make("condition", { authenticated: true, condition: CONDITION });
    await make(
      "loader",
      {
        authenticated: true,
        condition: "resource.owner_id == principal.id || principal.is_staff",
      },
      true,
    );

    for (const v of variants) await drive(v.call, WARMUP);
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? variants : [...variants].reverse();
      for (const v of order) {
        await v.refresh();
        await drive(v.call, 200); // the new token verified and cached before measuring
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
    console.log(`condition: ${CONDITION}`);
    console.log(
      `(median of rounds; load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(" ")} on ${cpus().length} cores)`,
    );
    const summary: Record<string, unknown> = { expression: CONDITION, rounds: ROUNDS, callsPerRound: CALLS };
    for (const v of variants) {
      const rate = median(v.rates);
      const cpu = median(v.cpu);
      const base = v === variants[0];
      summary[v.name] = {
        callsPerSecond: rate,
        cpuUsPerCall: cpu,
        ...(!base && {
          rateRatio: rate / plain,
          cpuCostPercent: (cpu / plainCpu - 1) * 100,
          pairedCpuCostPercent: (pairedRatio(v.cpu, variants[0]!.cpu) - 1) * 100,
        }),
      };
      console.log(
        `${v.name.padEnd(10)} ${rate.toFixed(0).padStart(7)} calls/s` +
          (base ? "   (baseline)          " : `   ratio ${(rate / plain).toFixed(3)}  `) +
          `   CPU ${cpu.toFixed(1).padStart(6)} µs/call` +
          (base
            ? "   (baseline)"
            : `   cost ${((cpu / plainCpu - 1) * 100).toFixed(1)}% of a call's CPU` +
              ` (median of per-round pairs: ${((pairedRatio(v.cpu, variants[0]!.cpu) - 1) * 100).toFixed(1)}%)`),
      );
    }
    // The evaluation alone, through the compiled condition the policy planned.
    const plan = variants[1]!.fixture.auth.policy.planFor(UnannotatedService.method.anything);
    // The form the auth layer binds: a CEL map built once per cached principal.
    const principal = celMap(
      new Map<string, bigint | string | boolean | CelList>([
        ["id", 1n],
        ["username", "bench"],
        ["kind", "user"],
        ["is_staff", false],
        ["is_superuser", false],
        ["permissions", celList([])],
        ["groups", celList([])],
      ]),
    );
    const bindings = { principal, request: create(PingSchema, { text: "hello" }), resource: null };
    const n = 200_000;
    for (let i = 0; i < n / 10; i++) plan.condition!.evaluate(bindings);
    const started = performance.now();
    for (let i = 0; i < n; i++) plan.condition!.evaluate(bindings);
    const alone = ((performance.now() - started) * 1000) / n;
    console.log(
      `evaluation alone: ${alone.toFixed(2)} µs, ${((alone / plainCpu) * 100).toFixed(1)}% of plain's CPU per call`,
    );
    summary["evaluationUs"] = alone;
    summary["evaluationPercentOfCall"] = (alone / plainCpu) * 100;
    if (json) console.log(JSON.stringify(summary));
  } finally {
    for (const v of variants) await v.fixture.close();
    await database.close();
  }
}

/**
 * The median over rounds of `xs[r] / base[r]`: the two ran back to back in
 * each round, so drift between rounds cancels out.
 */
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
