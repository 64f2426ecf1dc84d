/**
 * `npm run bench [-- --quick] [-- --only=a,b,...]`: every variant as its own
 * server process on loopback, driven from a separate load generator, in one
 * run, so the ratios compare like with like on this machine at this moment.
 * Every protoguard variant is `protoguard serve` itself (this repository's
 * CLI with the example app), with its defaults: pre-filter, decision logs at
 * info to its standard output (a file here), metrics, health, reflection, no
 * CORS; the ceiling is the same listener and handler without the auth layer.
 * Prints a table and the ratios, and writes them to bench/results.json with
 * the machine they ran on; a full run also rewrites the table of docs/performance.md.
 *
 * `npm run bench -- --readme` only rewrites that table from
 * bench/results.json. `--profile=DIR` makes every server write a V8 CPU
 * profile into DIR when it stops (each worker its own).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import { cp, mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AccountService } from "../gen/example/v1/account_pb.js";
import { LoginRequestSchema } from "../gen/protoguard/v1/auth_pb.js";
import { createPasswordHasher } from "../src/lifecycle/passwords.js";
import { openDatabase } from "../src/store/database.js";
import { type Database } from "../src/store/database-handle.js";
import { migrateDatabase } from "../src/store/migrate.js";
import { createTestDatabase } from "../src/testing/database.js";
import { createKeyring } from "../src/token/keys.js";
import { createTokenIssuer } from "../src/token/issuer.js";
import { BENCH_PASSWORD, forge, seed, uniformMix, zipfMix, type MixCall } from "./fixtures.js";
import { h2load, hasH2load, nodeLoad, nodeSequence, type LoadResult, type LoadSpec } from "./h2load.js";
import { rewriteBenchTable } from "./readme.js";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const only = args
  .find((a) => a.startsWith("--only="))
  ?.slice(7)
  .split(",");
/** `--profile=DIR`: every server writes a V8 CPU profile there when it stops (node --cpu-prof). */
const profileDir = args.find((a) => a.startsWith("--profile="))?.slice(10);
const ROUNDS = quick ? 1 : 3;
const CALLS = quick ? 3_000 : 20_000;
/** The slow fixed-header variants whose ratios are far from any bound (hand-written, pre-filter off, permissions) take half. */
const HALF = CALLS / 2;
const STREAMS = 16;
/** Calls per round of the 1 MiB refusal and its empty twin: enough that a round's ratio is stable (its spread is printed). */
const MIB_CALLS = quick ? 2_000 : 10_000;
const WARMUP = quick ? 500 : 3_000;
const LOGIN_CALLS = quick ? 8 : 24;
const MEMORY_CALLS = quick ? [2_000, 10_000] : [20_000, 100_000];
/** Users of the realistic mix, and of the population variants. */
const ZIPF_USERS = 10_000;
const POPULATIONS = [1_000, 100_000] as const;
const PATH = "/example.v1.AccountService/GetProfile";
const LOGIN_PATH = "/protoguard.v1.AuthService/Login";
const CLK_TCK = 100; // Linux USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s
const ROOT = new URL("..", import.meta.url).pathname;

type Body = "empty" | "mib" | "login";

/** How a variant's server is started. */
type ServerSpec =
  /** `protoguard serve --workers N` with this environment. */
  | { kind: "cli"; env: Record<string, string>; workers: number }
  /** bench/server.ts with BENCH_VARIANT and this environment. */
  | { kind: "bench"; variant: string; env: Record<string, string> };

interface Variant {
  id: string;
  label: string;
  server: ServerSpec;
  path: string;
  body: Body;
  calls: number;
  streams: number;
  connections: number;
  /** Same headers on every call (h2load), or a mix per round (Node client). */
  load: { headers: Record<string, string> } | { mixes: MixCall[][] };
  /** What a smoke call must see: a profile of this username, or UNAUTHENTICATED. */
  expect: { username: string } | "unauthenticated" | "login";
  /** Read the cache hit rates from /metrics around each round. */
  hitRates?: boolean;
  /**
   * Rebuilds the mix of a round just before it runs: for tokens that would expire between
   * signing and use (5-minute tokens outlive neither a full bench nor its warm-up).
   */
  beforeRound?: (round: number) => Promise<void>;
}

interface Row {
  id: string;
  label: string;
  driver: "h2load" | "node";
  callsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerCall: number | null;
  rounds: number;
  /** calls/s of each round, in order: rounds interleave a group's variants, so round i of two rows ran side by side. */
  roundRates?: number[];
  hitRates?: { token: number | null; principal: number | null };
  skipped?: string;
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const loadAtStart = loadavg();
  const haveH2load = await hasH2load();
  const fixed = haveH2load ? h2load : nodeLoad;
  const dir = await mkdtemp(join(tmpdir(), "protoguard-bench-"));
  const secret = randomBytes(32).toString("base64url");
  const notes: string[] = [];
  if (!haveH2load)
    notes.push(
      "h2load not found (Debian package nghttp2-client): the fixed-header variants were driven by a Node HTTP/2 client in the orchestrator process",
    );
  const want = (id: string) => only === undefined || only.includes(id);

  // --- stores: PostgreSQL (when reachable) and PGlite
  const pgUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
  let pg: (Database & { url?: string; close(): Promise<void> }) | undefined;
  try {
    pg = await createTestDatabase({ driver: "postgres", url: pgUrl });
  } catch (error) {
    notes.push(
      `PostgreSQL not reachable at ${pgUrl} (${error instanceof Error ? error.message : String(error)}): its variants are skipped`,
    );
  }
  process.stderr.write("bench: seeding\n");
  const pgliteDir = join(dir, "data");
  await mkdir(pgliteDir, { recursive: true });
  const pglite = await openDatabase({ dataDir: pgliteDir });
  await migrateDatabase(pglite);
  const passwordHash = await createPasswordHasher().hash(BENCH_PASSWORD);
  const onPglite = await seed(pglite, passwordHash, 0);
  await pglite.close();
  const onPg = pg === undefined ? undefined : await seed(pg, passwordHash, POPULATIONS[1]);
  const seeded = onPg ?? onPglite;

  // --- tokens, mixes and bodies
  const keyring = await createKeyring([{ alg: "HS256", secret }]);
  const issuer = createTokenIssuer({ keyring, accessTtlSeconds: 3600 });
  const token = (await issuer.issueAccess(seeded.bench)).token;
  const pgliteToken = (await issuer.issueAccess(onPglite.bench)).token;
  const badSignature = forge(token);
  const permissionTokens = {} as Record<1 | 10 | 100, string>;
  for (const n of [1, 10, 100] as const) {
    permissionTokens[n] = (await issuer.issueAccess(seeded.withPermissions[n])).token;
  }
  const frame = (message: Uint8Array) => {
    const out = new Uint8Array(5 + message.length);
    new DataView(out.buffer).setUint32(1, message.length);
    out.set(message, 5);
    return out;
  };
  const bodies: Record<Body, Uint8Array> = {
    empty: frame(new Uint8Array(0)),
    // GetProfileRequest has no fields; a 1 MiB unknown field keeps it valid.
    mib: frame(new Uint8Array([0xfa, 0x3f, 0x80, 0x80, 0x40, ...new Uint8Array(1 << 20)])),
    login: frame(
      toBinary(LoginRequestSchema, create(LoginRequestSchema, { username: "bench", password: BENCH_PASSWORD })),
    ),
  };
  const bodyFiles = {} as Record<Body, string>;
  for (const [name, body] of Object.entries(bodies)) {
    bodyFiles[name as Body] = join(dir, `${name}.bin`);
    await writeFile(bodyFiles[name as Body], body);
  }

  const grpc = { "content-type": "application/grpc", te: "trailers" };
  const bearer = (t: string) => ({ ...grpc, authorization: `Bearer ${t}` });
  const common = {
    PROTOGUARD_JWT_SECRET: secret,
    PROTOGUARD_ACCESS_TTL: "3600",
  };
  const pgEnv = pg?.url ? { ...common, DATABASE_URL: pg.url } : undefined;
  const pgliteEnv = { ...common, PROTOGUARD_DATA_DIR: pgliteDir };
  const warmEnv = pgEnv ?? pgliteEnv;
  const serve = (env: Record<string, string>, workers = 1): ServerSpec => ({ kind: "cli", env, workers });
  const base = {
    path: PATH,
    body: "empty" as const,
    calls: CALLS,
    streams: STREAMS,
    connections: 1,
    expect: { username: "bench" },
  };
  const mixCalls = quick ? CALLS : CALLS / 2;
  // One Zipf mix per round and one for the warm-up, each with tokens of its own.
  const zipfMixes: MixCall[][] = [];
  if (pgEnv && want("z")) {
    process.stderr.write(`bench: signing the tokens of the Zipf mix (${ZIPF_USERS} users)\n`);
    for (let round = 0; round <= ROUNDS; round++) {
      const users = seeded.population.slice(0, ZIPF_USERS);
      zipfMixes.push(await zipfMix({ users, calls: mixCalls, issuer, seed: round + 1 }));
    }
  }
  // A 5-minute-token world: the same Zipf users, each token serving fewer calls before its refresh.
  // Each round's tokens are signed again just before it runs (the variant's beforeRound): a full
  // bench takes longer than the tokens live.
  const zipf5Mixes: MixCall[][] = [];
  const shortIssuer = createTokenIssuer({ keyring, accessTtlSeconds: 300 });
  const zipf5Mix = (round: number) =>
    zipfMix({
      users: seeded.population.slice(0, ZIPF_USERS),
      calls: mixCalls,
      issuer: shortIssuer,
      seed: round + 101,
      usesPerToken: [1, 4],
    });
  if (pgEnv && want("z5")) {
    process.stderr.write(`bench: signing the 5-minute tokens of the Zipf mix (${ZIPF_USERS} users)\n`);
    for (let round = 0; round <= ROUNDS; round++) zipf5Mixes.push(await zipf5Mix(round));
  }
  // One known user: a new token on every call (every refresh, every tab), or the same one (warm).
  const newTokenMixes: MixCall[][] = [];
  const sameTokenMixes: MixCall[][] = [];
  if (["n-a", "n-warm", "n"].some(want)) {
    process.stderr.write(`bench: signing ${mixCalls * (ROUNDS + 1)} tokens of one known user\n`);
    for (let round = 0; round <= ROUNDS; round++) {
      const fresh: MixCall[] = [];
      for (let i = 0; i < mixCalls; i++)
        fresh.push({ token: (await issuer.issueAccess(seeded.bench)).token, expect: "ok" });
      newTokenMixes.push(fresh);
      sameTokenMixes.push(Array.from({ length: mixCalls }, () => ({ token, expect: "ok" as const })));
    }
  }
  const populationMixes: Record<number, MixCall[][]> = {};
  if (pgEnv) {
    for (const size of POPULATIONS) {
      if (!want(`u${size / 1000}k`)) continue;
      process.stderr.write(`bench: signing one token for each of ${size} users\n`);
      const users = seeded.population.slice(0, size);
      const all = await uniformMix(users, mixCalls * (ROUNDS + 1), issuer);
      populationMixes[size] = Array.from({ length: ROUNDS + 1 }, (_, r) => all.slice(r * mixCalls, (r + 1) * mixCalls));
    }
  }

  const skip = (id: string, label: string, why: string) => ({ id, label, skipped: why });
  const bench = (variant: string, env: Record<string, string> = {}): ServerSpec => ({ kind: "bench", variant, env });
  const all: (Variant | { id: string; label: string; skipped: string })[] = [
    {
      ...base,
      id: "a",
      label: "(a) ceiling: same listener, no auth layer",
      server: bench("ceiling"),
      load: { headers: grpc },
    },
    {
      ...base,
      id: "b",
      label: "(b) protoguard serve, warm caches",
      server: serve(warmEnv),
      load: { headers: bearer(token) },
    },
    {
      ...base,
      id: "b-nolog",
      label: "(b) protoguard serve, warm, decision logs off",
      server: serve({ ...warmEnv, PROTOGUARD_LOG_LEVEL: "warn" }),
      load: { headers: bearer(token) },
    },
    pgEnv
      ? {
          ...base,
          id: "c-pg",
          label: "(c) protoguard serve, no cache, PostgreSQL",
          server: serve({ ...pgEnv, PROTOGUARD_CACHE_ENTRIES: "0" }),
          load: { headers: bearer(token) },
        }
      : skip("c-pg", "(c) protoguard serve, no cache, PostgreSQL", "no PostgreSQL"),
    // PGlite answers one query at a time in-process, so this variant is slow; fewer calls keep the run short.
    {
      ...base,
      id: "c-pglite",
      label: "(c) protoguard serve, no cache, PGlite",
      server: serve({ ...pgliteEnv, PROTOGUARD_CACHE_ENTRIES: "0" }),
      load: { headers: bearer(pgliteToken) },
      calls: Math.ceil(CALLS / 5),
    },
    pgEnv
      ? {
          ...base,
          id: "d",
          label: "(d) hand-written: jsonwebtoken + 2 queries",
          server: bench("handwritten", pgEnv),
          load: { headers: bearer(token) },
          calls: HALF,
        }
      : skip("d", "(d) hand-written: jsonwebtoken + 2 queries", "no PostgreSQL"),
    {
      ...base,
      id: "e-none",
      label: "(e) reject: no token",
      server: serve(warmEnv),
      load: { headers: grpc },
      expect: "unauthenticated",
    },
    {
      ...base,
      id: "e-badsig",
      label: "(e) reject: bad signature",
      server: serve(warmEnv),
      load: { headers: bearer(badSignature) },
      expect: "unauthenticated",
    },
    {
      ...base,
      id: "e-mib",
      label: "(e) reject: 1 MiB body, no token",
      server: serve(warmEnv),
      load: { headers: grpc },
      body: "mib",
      expect: "unauthenticated",
      calls: MIB_CALLS,
    },
    {
      ...base,
      id: "e-none-q",
      label: "(e) reject: no token, as many calls as 1 MiB",
      server: serve(warmEnv),
      load: { headers: grpc },
      expect: "unauthenticated",
      calls: MIB_CALLS,
    },
    {
      ...base,
      id: "g-none",
      label: "(e) reject: no token, pre-filter off",
      server: bench("no-prefilter", warmEnv),
      load: { headers: grpc },
      calls: HALF,
      expect: "unauthenticated",
    },
    {
      ...base,
      id: "g-badsig",
      label: "(e) reject: bad signature, pre-filter off",
      server: bench("no-prefilter", warmEnv),
      load: { headers: bearer(badSignature) },
      calls: HALF,
      expect: "unauthenticated",
    },
    {
      ...base,
      id: "g-bare",
      label: "bare Node http2: trailers-only error from headers",
      server: bench("bare-h2"),
      load: { headers: grpc },
      expect: "unauthenticated",
    },
    {
      ...base,
      id: "f",
      label: "(f) login (scrypt N=2^17)",
      server: serve(warmEnv),
      path: LOGIN_PATH,
      load: { headers: grpc },
      body: "login",
      expect: "login",
      calls: LOGIN_CALLS,
      streams: 4,
    },
    {
      ...base,
      id: "n-a",
      label: "(n) ceiling, driven like the new-token rows",
      server: bench("ceiling"),
      load: { mixes: sameTokenMixes },
      calls: mixCalls,
    },
    {
      ...base,
      id: "n-warm",
      label: "(n) known user, the same token every call (warm)",
      server: serve(warmEnv),
      load: { mixes: sameTokenMixes },
      calls: mixCalls,
      hitRates: true,
    },
    {
      ...base,
      id: "n",
      label: "(n) known user, a new token every call",
      server: serve(warmEnv),
      load: { mixes: newTokenMixes },
      calls: mixCalls,
      hitRates: true,
    },
    ...(pgEnv
      ? [
          {
            ...base,
            id: "z5",
            label: `(z) mix with 5-minute tokens: 1-4 calls/token`,
            server: serve(pgEnv),
            load: { mixes: zipf5Mixes },
            beforeRound: async (round: number) => {
              zipf5Mixes[round] = await zipf5Mix(round);
            },
            calls: mixCalls,
            connections: 2,
            hitRates: true,
          },
          {
            ...base,
            id: "z-a",
            label: "(z) ceiling, driven like the mix",
            server: bench("ceiling"),
            load: { mixes: zipfMixes },
            calls: mixCalls,
            connections: 2,
          },
          {
            ...base,
            id: "z",
            label: `(z) mix: ${ZIPF_USERS / 1000}k users, Zipf, 3-8 calls/token, 3% refused`,
            server: serve(pgEnv),
            load: { mixes: zipfMixes },
            calls: mixCalls,
            connections: 2,
            hitRates: true,
          },
          ...POPULATIONS.map((size) => ({
            ...base,
            id: `u${size / 1000}k`,
            label: `(u) ${size.toLocaleString("en")} active users, uniform, 1 token each`,
            server: serve(pgEnv),
            load: { mixes: populationMixes[size] ?? [] },
            calls: mixCalls,
            connections: 2,
            hitRates: true,
          })),
          {
            ...base,
            id: "w1",
            label: "(w) protoguard serve --workers 1, 8 connections",
            server: serve(pgEnv, 1),
            load: { headers: bearer(token) },
            connections: 8,
          },
          {
            ...base,
            id: "w2",
            label: "(w) protoguard serve --workers 2, 8 connections",
            server: serve(pgEnv, 2),
            load: { headers: bearer(token) },
            connections: 8,
          },
        ]
      : ["z5", "z-a", "z", "u1k", "u100k", "w1", "w2"].map((id) => skip(id, `(${id[0]}) ${id}`, "no PostgreSQL"))),
    ...([1, 10, 100] as const).map((n) => ({
      ...base,
      id: `p${n}`,
      label: `(p) warm call, user with ${n} permission${n === 1 ? "" : "s"}`,
      server: serve(warmEnv),
      load: { headers: bearer(permissionTokens[n]) },
      calls: HALF,
      expect: { username: `perms-${n}` },
    })),
  ];
  const variants = all.filter((v) => want(v.id));
  // Servers run a group at a time, each group's rounds interleaved: a
  // ratio compares variants of one group, and PostgreSQL's connection
  // limit (100 by default) is never reached by a whole run's pools at once.
  const GROUPS: readonly (readonly string[])[] = [
    ["a", "b", "b-nolog", "c-pg", "c-pglite", "d", "e-none", "e-badsig", "g-bare"],
    ["e-mib", "e-none-q", "g-none", "g-badsig", "f"],
    ["z-a", "z", "z5", "u1k", "u100k"],
    ["n-a", "n-warm", "n"],
    ["w1", "w2", "p1", "p10", "p100"],
  ];
  for (const v of variants) {
    if (!GROUPS.some((g) => g.includes(v.id))) throw new Error(`bench variant ${v.id} is in no group`);
  }

  // In a group, every server is started first and the rounds interleave
  // the variants, so a burst of load from elsewhere on the machine lands on
  // all of them alike instead of skewing one variant's ratio.
  const running: {
    variant: Variant;
    server: StartedServer;
    run: (round: number) => Promise<LoadResult>;
    results: (LoadResult & { cpuUsPerCall: number | null })[];
    hits: { token: [number, number]; principal: [number, number] };
  }[] = [];
  for (const group of GROUPS) {
    const members = variants.filter((v): v is Variant => !("skipped" in v) && group.includes(v.id));
    if (members.length === 0) continue;
    const started = await runGroup(members);
    running.push(...started);
  }

  async function runGroup(members: Variant[]): Promise<typeof running> {
    const group: typeof running = [];
    try {
      for (const variant of members) {
        process.stderr.write(`bench: starting ${variant.label}\n`);
        const server = await startVariant(variant.server, dir, variant.id);
        const url = `${server.url}${variant.path}`;
        const { load } = variant;
        const run = async (round: number, calls = variant.calls): Promise<LoadResult> => {
          await variant.beforeRound?.(round);
          if ("headers" in load) {
            const spec: LoadSpec = {
              url,
              headers: load.headers,
              bodyFile: bodyFiles[variant.body],
              body: bodies[variant.body],
              calls,
              streams: variant.streams,
              connections: variant.connections,
            };
            return fixed(spec);
          }
          const mix = load.mixes[round]!;
          return nodeSequence({
            url,
            body: bodies[variant.body],
            calls: Math.min(calls, mix.length),
            streams: variant.streams,
            connections: variant.connections,
            headersFor: (i) => (mix[i]!.token === undefined ? grpc : bearer(mix[i]!.token!)),
          }).then((result) => {
            checkMix(variant, mix.slice(0, Math.min(calls, mix.length)), result);
            return result;
          });
        };
        group.push({ variant, server, run, results: [], hits: { token: [0, 0], principal: [0, 0] } });
        await smokeCheck(server.url, variant, "headers" in load ? load.headers : bearer(token));
        if (variant.id !== "f") await run(ROUNDS, "headers" in load ? WARMUP : variant.calls);
      }
      for (let round = 0; round < ROUNDS; round++) {
        for (const entry of group) {
          process.stderr.write(`bench: round ${round + 1}/${ROUNDS} ${entry.variant.label}\n`);
          const countsBefore = entry.variant.hitRates ? await cacheCounts(entry.server.url) : undefined;
          const before = await treeTicks(entry.server.pid);
          const result = await entry.run(round);
          const after = await treeTicks(entry.server.pid);
          if (result.failed > 0)
            throw new Error(`${entry.variant.label}: ${result.failed} calls failed at the HTTP level`);
          if (countsBefore !== undefined) {
            const countsAfter = await cacheCounts(entry.server.url);
            for (const cache of ["token", "principal"] as const) {
              entry.hits[cache][0] += countsAfter[cache].hits - countsBefore[cache].hits;
              entry.hits[cache][1] += countsAfter[cache].misses - countsBefore[cache].misses;
            }
          }
          const calls = result.succeeded + result.failed;
          const cpu = before === null || after === null ? null : (((after - before) / CLK_TCK) * 1e6) / calls;
          entry.results.push({ ...result, cpuUsPerCall: cpu });
        }
      }
    } finally {
      await Promise.all(group.map((entry) => entry.server.stop()));
    }
    return group;
  }
  const rows: Row[] = variants.map((variant) => {
    if ("skipped" in variant) {
      return {
        id: variant.id,
        label: variant.label,
        driver: "node",
        callsPerSecond: Number.NaN,
        p50Ms: Number.NaN,
        p99Ms: Number.NaN,
        cpuUsPerCall: null,
        rounds: 0,
        skipped: variant.skipped,
      };
    }
    const entry = running.find((e) => e.variant === variant)!;
    const { results } = entry;
    const rate = ([hits, misses]: [number, number]) => (hits + misses === 0 ? null : hits / (hits + misses));
    return {
      id: variant.id,
      label: variant.label,
      driver: "headers" in variant.load && haveH2load ? "h2load" : "node",
      callsPerSecond: median(results.map((r) => r.callsPerSecond)),
      p50Ms: median(results.map((r) => r.p50Ms)),
      p99Ms: median(results.map((r) => r.p99Ms)),
      cpuUsPerCall: results.every((r) => r.cpuUsPerCall !== null) ? median(results.map((r) => r.cpuUsPerCall!)) : null,
      rounds: results.length,
      roundRates: results.map((r) => r.callsPerSecond),
      ...(variant.hitRates && { hitRates: { token: rate(entry.hits.token), principal: rate(entry.hits.principal) } }),
    };
  });

  // --- memory of a warm server over many calls: RSS must not grow with them
  const rss: { calls: number; rssMiB: number }[] = [];
  if (want("b")) {
    process.stderr.write("bench: RSS of (b) over many calls\n");
    const server = await startVariant(serve(warmEnv), dir, "rss");
    try {
      let done = 0;
      for (const target of MEMORY_CALLS) {
        await fixed({
          url: `${server.url}${PATH}`,
          headers: bearer(token),
          bodyFile: bodyFiles.empty,
          body: bodies.empty,
          calls: target - done,
          streams: STREAMS,
        });
        done = target;
        rss.push({ calls: target, rssMiB: (await rssKiB(server.pid)) / 1024 });
      }
    } finally {
      await server.stop();
    }
  }

  // --- bytes per cached entry, in a process of its own with the GC exposed
  let entryBytes: EntryBytes | undefined;
  if (pg?.url && want("memory")) {
    process.stderr.write("bench: bytes per cached token and per cached user\n");
    entryBytes = await measureEntryBytes(pg.url, secret, seeded.population.slice(0, quick ? 2_000 : 10_000));
  }

  // --- what a simple CEL condition costs a warm call (bench/condition-cost.ts)
  let conditionCost: ConditionCost | undefined;
  if (want("condition")) {
    process.stderr.write("bench: cost of a CEL condition\n");
    conditionCost = await measureConditionCost();
  }

  // --- CPU per refusal by kind, and decision-log bytes per refused call under a flood (bench/refusal-cost.ts)
  let refusalCost: RefusalCost | undefined;
  if (want("refusal")) {
    process.stderr.write("bench: CPU per refusal, log bytes under a flood\n");
    refusalCost = await measureRefusalCost();
  }

  // --- a warm call with an API key against a warm call with a JWT (bench/api-key-cost.ts)
  let apiKeyCost: ApiKeyCost | undefined;
  if (want("apikey")) {
    process.stderr.write("bench: a warm API-key call against a warm JWT call\n");
    apiKeyCost = await measureApiKeyCost();
    notes.push(
      `API key warm / JWT warm: ${apiKeyCost.apiKey.rateRatio.toFixed(3)} of the rate, ${apiKeyCost.apiKey.pairedCpuRatio.toFixed(3)} of the CPU per call`,
    );
  }

  // --- what a rule's rate_limit costs a warm call, in memory and in Redis (bench/rate-limit-cost.ts)
  let rateLimitCost: RateLimitCost | undefined;
  if (want("ratelimit")) {
    process.stderr.write("bench: cost of a rate_limit (memory, Redis)\n");
    rateLimitCost = await measureRateLimitCost();
  }

  await pg?.close();
  await rm(dir, { recursive: true, force: true });
  const machine = {
    cpus: cpus().length,
    model: cpus()[0]?.model,
    node: process.version,
    loadavgAtStart: loadAtStart,
    loadavgAtEnd: loadavg(),
  };
  const { lines, targets } = report(rows, rss, entryBytes, conditionCost, notes, haveH2load, machine, refusalCost);
  process.stdout.write(`${lines.join("\n")}\n`);
  if (rateLimitCost !== undefined) process.stdout.write(`\nrate_limit cost:\n${rateLimitCost.lines.join("\n")}\n`);
  const results = {
    date: startedAt.toISOString(),
    durationSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
    mode: quick ? "quick" : only ? `only ${only.join(",")}` : "full",
    command: `npm run bench${args.length > 0 ? ` -- ${args.join(" ")}` : ""}`,
    machine,
    loadGenerator: haveH2load ? "h2load for fixed headers, Node client for mixes" : "Node client",
    rounds: ROUNDS,
    callsPerRound: CALLS,
    streams: STREAMS,
    rows,
    rss,
    entryBytes,
    conditionCost,
    refusalCost,
    apiKeyCost,
    rateLimitCost,
    targets,
    notes,
    table: lines,
  };
  await writeFile(new URL("./results.json", import.meta.url), `${JSON.stringify(results, null, 2)}\n`);
  if (!quick && only === undefined) await rewriteBenchTable();
}

/** The gRPC statuses of a mix run must be the ones it was built with: a wrong answer fails the bench. */
function checkMix(variant: Variant, mix: readonly MixCall[], result: LoadResult): void {
  const okExpected = variant.server.kind === "bench" ? mix.length : mix.filter((c) => c.expect === "ok").length;
  const ok = result.grpcStatus?.["0"] ?? 0;
  const refused = result.grpcStatus?.["16"] ?? 0;
  if (ok !== okExpected || ok + refused !== mix.length) {
    throw new Error(
      `${variant.label}: expected ${okExpected} OK of ${mix.length}, got ${JSON.stringify(result.grpcStatus)}`,
    );
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

interface StartedServer {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** A free loopback port (the CLI's banner goes to the log file, so the port is chosen here). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  return typeof address === "object" && address !== null ? address.port : 0;
}

/** The environment of a server: ours without PROTOGUARD_* and PORT, then the variant's. */
function serverEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const clean: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("PROTOGUARD_") && key !== "PORT" && key !== "DATABASE_URL") clean[key] = value;
  }
  return { ...clean, ...env };
}

/** Node's own flags for a server process (node:cluster gives the workers the same). */
const NODE_ARGS = profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${profileDir}`];

async function startVariant(spec: ServerSpec, dir: string, id: string): Promise<StartedServer> {
  const env = { ...spec.env };
  // PGlite takes one process per data directory: each variant on it gets its own copy.
  if (env.PROTOGUARD_DATA_DIR !== undefined) {
    const copy = join(dir, `data-${id}`);
    await cp(env.PROTOGUARD_DATA_DIR, copy, { recursive: true });
    env.PROTOGUARD_DATA_DIR = copy;
  }
  let child: ChildProcess;
  let port: number;
  if (spec.kind === "cli") {
    // Decision logs go where `protoguard serve` writes them, its standard
    // output: a file, as a log shipper's pipe or journald would take them.
    const log = await open(join(dir, `${id}.log`), "w");
    port = await freePort();
    child = spawn(
      process.execPath,
      [
        ...NODE_ARGS,
        "--import",
        "tsx",
        "example/cli.ts",
        "serve",
        "--port",
        String(port),
        "--workers",
        String(spec.workers),
      ],
      { cwd: ROOT, env: serverEnv(env), stdio: ["ignore", log.fd, "inherit"] },
    );
    await log.close();
    await waitForBanner(child, join(dir, `${id}.log`));
  } else {
    child = spawn(process.execPath, [...NODE_ARGS, "--import", "tsx", "bench/server.ts"], {
      cwd: ROOT,
      env: serverEnv({ ...env, BENCH_VARIANT: spec.variant, BENCH_LOG_FILE: join(dir, `${id}.log`) }),
      stdio: ["ignore", "pipe", "inherit"],
    });
    port = await readyLine(child);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const force = setTimeout(() => child.kill("SIGKILL"), 15_000);
        child.once("exit", () => {
          clearTimeout(force);
          resolve();
        });
        child.kill("SIGTERM");
      }),
  };
}

async function waitForBanner(child: ChildProcess, logFile: string): Promise<void> {
  for (let waited = 0; ; waited += 50) {
    const text = await readFile(logFile, "utf8").catch(() => "");
    if (/serving on http/.test(text)) return;
    if (child.exitCode !== null) throw new Error(`protoguard serve exited with ${child.exitCode}:\n${text}`);
    if (waited > 120_000) throw new Error(`protoguard serve did not start within 120 s:\n${text}`);
    await sleep(50);
  }
}

function readyLine(child: ChildProcess): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error("bench server did not start within 120 s")), 120_000);
    lines.on("line", (line) => {
      const match = /^READY (\d+)$/.exec(line);
      if (match) {
        clearTimeout(timer);
        child.stdout!.resume();
        resolve(Number(match[1]));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`bench server exited with ${code} before it was ready`));
    });
  });
}

/** One call with a real client, so a variant that answers wrongly fails the bench instead of measuring it. */
async function smokeCheck(url: string, variant: Variant, headers: Record<string, string>): Promise<void> {
  if (variant.expect === "login") return;
  const client = createClient(AccountService, createGrpcTransport({ baseUrl: url }));
  const auth = Object.fromEntries(Object.entries(headers).filter(([k]) => k === "authorization"));
  try {
    const profile = await client.getProfile({}, { headers: auth });
    if (variant.expect === "unauthenticated")
      throw new Error(`${variant.label}: expected UNAUTHENTICATED, got a profile`);
    // The ceiling answers for its fixed caller.
    const username = variant.server.kind === "bench" ? "bench" : variant.expect.username;
    if (profile.username !== username) throw new Error(`${variant.label}: unexpected profile ${profile.username}`);
  } catch (error) {
    if (variant.expect !== "unauthenticated") throw error;
    if (ConnectError.from(error).code !== Code.Unauthenticated) throw error;
  }
}

/** The caches' hit and miss totals, from /metrics. */
async function cacheCounts(url: string): Promise<Record<"token" | "principal", { hits: number; misses: number }>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const counts = { token: { hits: 0, misses: 0 }, principal: { hits: 0, misses: 0 } };
  for (const match of text.matchAll(/^protoguard_cache_(hits|misses)_total\{cache="(token|principal)"\} (\d+)$/gm)) {
    counts[match[2] as "token" | "principal"][match[1] as "hits" | "misses"] = Number(match[3]);
  }
  return counts;
}

/** CPU time (utime + stime, in ticks) of `pid` and every process below it: the workers count too. */
async function treeTicks(pid: number): Promise<number | null> {
  const parents = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parents.set(Number(entry), Number(fields[1]));
      ticks.set(Number(entry), Number(fields[11]) + Number(fields[12]));
    } catch {
      // Gone meanwhile.
    }
  }
  if (!ticks.has(pid)) return null;
  let total = 0;
  for (const [child] of ticks) {
    for (let p: number | undefined = child; p !== undefined && p > 1; p = parents.get(p)) {
      if (p === pid) {
        total += ticks.get(child)!;
        break;
      }
    }
  }
  return total;
}

async function rssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
}

/** Bytes per cached entry, from bench/memory.ts. */
interface EntryBytes {
  entries: number;
  tokenBytes: number;
  principalBytes: number;
  permissionsPerUser: number;
}

async function measureEntryBytes(url: string, secret: string, users: number[]): Promise<EntryBytes> {
  const child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", "bench/memory.ts"], {
    cwd: ROOT,
    env: serverEnv({ DATABASE_URL: url, BENCH_SECRET: secret }),
    stdio: ["pipe", "pipe", "inherit"],
  });
  child.stdin!.end(JSON.stringify(users));
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  const [code] = (await once(child, "exit")) as [number | null];
  if (code !== 0) throw new Error(`bench/memory.ts exited with ${code}: ${out}`);
  return JSON.parse(out) as EntryBytes;
}

/** One variant of bench/condition-cost.ts against its plain call. */
interface ConditionVariant {
  callsPerSecond: number;
  cpuUsPerCall: number;
  rateRatio: number;
  cpuCostPercent: number;
  pairedCpuCostPercent: number;
}

/** bench/condition-cost.ts's summary: a warm call with a CEL condition against the same call without. */
interface ConditionCost {
  expression: string;
  plain: { callsPerSecond: number; cpuUsPerCall: number };
  condition: ConditionVariant;
  loader: ConditionVariant;
  evaluationUs: number;
  /** What the script printed, for the table. */
  lines: string[];
}

async function measureConditionCost(): Promise<ConditionCost> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "bench/condition-cost.ts", "--json", ...(quick ? ["--quick"] : [])],
    { cwd: ROOT, env: serverEnv({}), stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  const [code] = (await once(child, "exit")) as [number | null];
  if (code !== 0) throw new Error(`bench/condition-cost.ts exited with ${code}: ${out}`);
  const lines = out.trimEnd().split("\n");
  const summary = JSON.parse(lines.pop()!) as Omit<ConditionCost, "lines">;
  return { ...summary, lines };
}

/** bench/api-key-cost.ts's summary: a warm call with an API key against the same call with a JWT. */
interface ApiKeyCost {
  jwt: { callsPerSecond: number; cpuUsPerCall: number };
  apiKey: { callsPerSecond: number; cpuUsPerCall: number; rateRatio: number; pairedCpuRatio: number };
  keyLookupsMeasured: number;
  /** What the script printed. */
  lines: string[];
}

async function measureApiKeyCost(): Promise<ApiKeyCost> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "bench/api-key-cost.ts", "--json", ...(quick ? ["--quick"] : [])],
    { cwd: ROOT, env: serverEnv({}), stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  const [code] = (await once(child, "exit")) as [number | null];
  if (code !== 0) throw new Error(`bench/api-key-cost.ts exited with ${code}: ${out}`);
  const lines = out.trimEnd().split("\n");
  const summary = JSON.parse(lines.pop()!) as Omit<ApiKeyCost, "lines">;
  return { ...summary, lines };
}

/** bench/rate-limit-cost.ts's summary: calls/s and CPU per call of plain, memory and redis, with ratios. */
interface RateLimitCost {
  readonly [variant: string]: unknown;
  readonly lines: readonly string[];
}

/** Runs bench/rate-limit-cost.ts in a process of its own and reads its JSON summary. */
async function measureRateLimitCost(): Promise<RateLimitCost> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "bench/rate-limit-cost.ts", "--json", ...(quick ? ["--quick"] : [])],
    { cwd: ROOT, env: serverEnv({}), stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  const [code] = (await once(child, "exit")) as [number | null];
  if (code !== 0) throw new Error(`bench/rate-limit-cost.ts exited with ${code}: ${out}`);
  const lines = out.trimEnd().split("\n");
  const summary = JSON.parse(lines.pop()!) as Record<string, unknown>;
  return { ...summary, lines };
}

/** bench/refusal-cost.ts's summary. */
interface RefusalCost {
  /** CPU µs per refusal through `createAuth(...).check`, by kind. */
  cpuUsPerRefusal: Record<string, number>;
  /** The decision log under a flood of refusals spread over every method and five reasons. */
  flood: {
    seconds: number;
    calls: number;
    methods: number;
    reasons: number;
    lines: number;
    bytes: number;
    bytesPerCall: number;
  };
  /** What the script printed, for the table. */
  lines: string[];
}

async function measureRefusalCost(): Promise<RefusalCost> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "bench/refusal-cost.ts", "--json", ...(quick ? ["--quick"] : [])],
    { cwd: ROOT, env: serverEnv({}), stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  const [code] = (await once(child, "exit")) as [number | null];
  if (code !== 0) throw new Error(`bench/refusal-cost.ts exited with ${code}: ${out}`);
  const lines = out.trimEnd().split("\n");
  const summary = JSON.parse(lines.pop()!) as Omit<RefusalCost, "lines">;
  return { ...summary, lines };
}

interface Machine {
  cpus: number;
  model: string | undefined;
  node: string;
  loadavgAtStart: number[];
  loadavgAtEnd: number[];
}

function report(
  rows: Row[],
  rss: { calls: number; rssMiB: number }[],
  entryBytes: EntryBytes | undefined,
  conditionCost: ConditionCost | undefined,
  notes: string[],
  haveH2load: boolean,
  machine: Machine,
  refusalCost?: RefusalCost,
) {
  const by = (id: string) => rows.find((r) => r.id === id);
  const ratio = (a: string, b: string, field: "callsPerSecond" | "cpuUsPerCall" = "callsPerSecond") => {
    const x = by(a)?.[field];
    const y = by(b)?.[field];
    return typeof x === "number" && typeof y === "number" && Number.isFinite(x) && Number.isFinite(y) && y !== 0
      ? x / y
      : null;
  };
  const targets = [
    { name: "b/a (warm) >= 0.95", value: ratio("b", "a"), min: 0.95 },
    { name: "b/a with decision logs off", value: ratio("b-nolog", "a") },
    { name: "c/a (no cache, PostgreSQL) >= 0.80", value: ratio("c-pg", "a"), min: 0.8 },
    { name: "b/d (vs hand-written) >= 1.5", value: ratio("b", "d"), min: 1.5 },
    { name: "z/z-a (Zipf mix vs ceiling, same driver) >= 0.9", value: ratio("z", "z-a"), min: 0.9 },
    { name: "z5/z-a (Zipf mix, 5-minute tokens, vs ceiling) >= 0.9", value: ratio("z5", "z-a"), min: 0.9 },
    { name: "n/n-warm (new token per call / warm, known user) >= 0.9", value: ratio("n", "n-warm"), min: 0.9 },
    { name: "n/n-a (new token per call / ceiling)", value: ratio("n", "n-a") },
    { name: "e/a (no token) >= 1.0", value: ratio("e-none", "a"), min: 1.0 },
    { name: "e/a (bad signature) >= 1.0", value: ratio("e-badsig", "a"), min: 1.0 },
    { name: "1 MiB refusal / empty refusal, calls/s >= 0.9", value: ratio("e-mib", "e-none-q"), min: 0.9 },
    { name: "1 MiB refusal / empty refusal, CPU per call", value: ratio("e-mib", "e-none-q", "cpuUsPerCall") },
    { name: "pre-filter no-token / bare http2 >= 0.6", value: ratio("e-none", "g-bare"), min: 0.6 },
    { name: "pre-filter bad-signature / bare http2 >= 0.6", value: ratio("e-badsig", "g-bare"), min: 0.6 },
    { name: "pre-filter on/off, no token", value: ratio("e-none", "g-none") },
    { name: "pre-filter on/off, bad signature", value: ratio("e-badsig", "g-badsig") },
    { name: "2 workers / 1 worker, 8 connections", value: ratio("w2", "w1") },
    { name: "100k users / 1k users", value: ratio("u100k", "u1k") },
    { name: "CPU per warm call, 100 / 1 permissions", value: ratio("p100", "p1", "cpuUsPerCall") },
    {
      name: "CEL condition: CPU per warm call, with / without <= 1.05",
      value: conditionCost === undefined ? null : 1 + conditionCost.condition.pairedCpuCostPercent / 100,
      max: 1.05,
    },
    {
      // Issue 21: 77–154 B per refused call before the log's one budget; the goal is 5% of 77.
      name: "log bytes per refused call, 10 s flood over all methods <= 3.85",
      value: refusalCost === undefined ? null : refusalCost.flood.bytesPerCall,
      max: 3.85,
    },
    {
      name: `RSS after ${MEMORY_CALLS[1]! / 1000}k calls / after ${MEMORY_CALLS[0]! / 1000}k <= 1.2`,
      value: rss.length === 2 ? rss[1]!.rssMiB / rss[0]!.rssMiB : null,
      max: 1.2,
    },
  ].map((t) => ({
    ...t,
    met:
      t.value === null
        ? null
        : "min" in t && t.min !== undefined
          ? t.value >= t.min
          : "max" in t && t.max !== undefined
            ? t.value <= t.max
            : null,
  }));
  const fmt = (n: number | null | undefined, digits = 0) =>
    n === null || n === undefined || !Number.isFinite(n) ? "-" : n.toFixed(digits);
  const lines: string[] = [];
  lines.push(
    `protoguard bench (${quick ? "quick" : "full"}): ${ROUNDS} interleaved round(s), ${CALLS} calls per fixed-header variant, ${STREAMS} streams per connection, gRPC over h2c`,
    `load: ${haveH2load ? "h2load (fixed headers), Node HTTP/2 client (mixes: driver 'node')" : "Node HTTP/2 client"}; protoguard variants are \`protoguard serve --workers 1\` unless named`,
    `machine: ${machine.cpus} × ${machine.model ?? "cpu"}, node ${machine.node}, load average ${machine.loadavgAtStart
      .map((l) => l.toFixed(2))
      .join(" ")} at start, ${machine.loadavgAtEnd.map((l) => l.toFixed(2)).join(" ")} at end`,
    "",
    `${"variant".padEnd(58)} ${"calls/s".padStart(8)} ${"p50 ms".padStart(7)} ${"p99 ms".padStart(7)} ${"CPU µs/call".padStart(11)}  driver`,
  );
  for (const r of rows) {
    lines.push(
      `${r.label.padEnd(58)} ${
        r.skipped
          ? `skipped: ${r.skipped}`
          : `${fmt(r.callsPerSecond).padStart(8)} ${fmt(r.p50Ms, 2).padStart(7)} ${fmt(r.p99Ms, 2).padStart(7)} ${fmt(r.cpuUsPerCall, 1).padStart(11)}  ${r.driver}`
      }`,
    );
  }
  lines.push("");
  for (const r of rows) {
    if (r.hitRates) {
      const pct = (v: number | null) => (v === null ? "-" : `${(v * 100).toFixed(1)}%`);
      lines.push(
        `cache hit rate ${r.id.padEnd(6)} token ${pct(r.hitRates.token)}, principal ${pct(r.hitRates.principal)}`,
      );
    }
  }
  const mib = by("e-mib")?.roundRates;
  const empty = by("e-none-q")?.roundRates;
  if (mib !== undefined && empty !== undefined && mib.length === empty.length && mib.length > 0) {
    const perRound = mib.map((rate, i) => rate / empty[i]!);
    lines.push(
      `1 MiB refusal / empty refusal by round (${MIB_CALLS} calls each): ${perRound.map((r) => r.toFixed(3)).join(", ")}; spread ${fmt(Math.min(...perRound), 3)}-${fmt(Math.max(...perRound), 3)}`,
    );
  }
  for (const m of rss) lines.push(`RSS of (b): ${m.rssMiB.toFixed(1)} MiB after ${m.calls} calls`);
  if (conditionCost !== undefined) lines.push("", "bench/condition-cost.ts:", ...conditionCost.lines);
  if (refusalCost !== undefined) lines.push("", "bench/refusal-cost.ts:", ...refusalCost.lines);
  if (entryBytes) {
    lines.push(
      `bytes per cached token: ${Math.round(entryBytes.tokenBytes)}; per cached user lookup (${entryBytes.permissionsPerUser} permissions): ${Math.round(entryBytes.principalBytes)}  (${entryBytes.entries} entries each)`,
    );
  }
  lines.push("");
  for (const t of targets) {
    lines.push(`${t.met === null ? "     " : t.met ? "MET  " : "MISS "} ${t.name.padEnd(52)} ${fmt(t.value, 3)}`);
  }
  for (const note of notes) lines.push(`note: ${note}`);
  return { lines, targets };
}

if (args.includes("--readme")) {
  rewriteBenchTable().then(
    () => process.stderr.write("bench: docs/performance.md table rewritten from bench/results.json\n"),
    (error: unknown) => {
      process.stderr.write(`bench --readme failed: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
} else {
  main().catch((error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
}
