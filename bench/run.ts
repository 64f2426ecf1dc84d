/**
 * `npm run bench [-- --quick]`: every variant as its own server process on
 * loopback, driven from a separate load-generator process, in one run, so
 * the ratios compare like with like on this machine at this moment.
 * Prints a table and the ratios, and writes both to bench/results.json.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { migrateExample } from "../example/migrate.js";
import { AccountService } from "../gen/example/v1/account_pb.js";
import { LoginRequestSchema } from "../gen/protoguard/v1/auth_pb.js";
import { createPasswordHasher } from "../src/lifecycle/passwords.js";
import { openDatabase, type Database } from "../src/store/database.js";
import { migrateDatabase } from "../src/store/migrate.js";
import {
  addUsersToGroup,
  createGroup,
  createUser,
  grantGroupPermissions,
  grantUserPermissions,
} from "../src/store/users.js";
import { createTestDatabase } from "../src/testing/database.js";
import { createKeyring } from "../src/token/keys.js";
import { createTokenIssuer } from "../src/token/issuer.js";
import { h2load, hasH2load, nodeLoad, type LoadResult, type LoadSpec } from "./h2load.js";

const quick = process.argv.includes("--quick");
const ROUNDS = quick ? 1 : 3;
const CALLS = quick ? 3_000 : 20_000;
const STREAMS = 16;
const WARMUP = quick ? 500 : 3_000;
const LOGIN_CALLS = quick ? 8 : 40;
const MEMORY_CALLS = quick ? [2_000, 20_000] : [20_000, 200_000];
const PATH = "/example.v1.AccountService/GetProfile";
const LOGIN_PATH = "/protoguard.v1.AuthService/Login";
const PASSWORD = "bench-password-of-decent-length";
const CLK_TCK = 100; // Linux USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s

interface Variant {
  id: string;
  label: string;
  env: Record<string, string>;
  path: string;
  headers: Record<string, string>;
  body: "empty" | "mib" | "login";
  expect: "ok" | "unauthenticated";
  calls: number;
  streams: number;
}

interface Row {
  id: string;
  label: string;
  callsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerCall: number | null;
  rounds: number;
  skipped?: string;
}

async function main(): Promise<void> {
  const haveH2load = await hasH2load();
  const drive = haveH2load ? h2load : nodeLoad;
  const dir = await mkdtemp(join(tmpdir(), "protoguard-bench-"));
  const secret = randomBytes(32).toString("base64url");
  const notes: string[] = [];
  if (!haveH2load)
    notes.push(
      "h2load not found (Debian package nghttp2-client): load came from a Node HTTP/2 client in the orchestrator process",
    );

  // --- stores: PostgreSQL (when reachable) and PGlite, same user and grants
  const pgUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
  let pg: (Database & { url?: string; close(): Promise<void> }) | undefined;
  try {
    pg = await createTestDatabase({ driver: "postgres", url: pgUrl });
  } catch (error) {
    notes.push(
      `PostgreSQL not reachable at ${pgUrl} (${error instanceof Error ? error.message : String(error)}): its variants are skipped`,
    );
  }
  const pgliteDir = join(dir, "data");
  await mkdir(pgliteDir, { recursive: true });
  const pglite = await openDatabase({ dataDir: pgliteDir });
  await migrateDatabase(pglite);
  const hasher = createPasswordHasher();
  const passwordHash = await hasher.hash(PASSWORD);
  let userId = 0;
  for (const database of [pg, pglite]) {
    if (database === undefined) continue;
    await migrateExample(database);
    const user = await createUser(database.db, { username: "bench", email: "bench@example.com", passwordHash });
    userId = user.id;
    await grantUserPermissions(database.db, "bench", ["shop.view_order", "products.change_product"]);
    await createGroup(database.db, "bench-group");
    await grantGroupPermissions(database.db, "bench-group", ["shop.change_order"]);
    await addUsersToGroup(database.db, "bench-group", ["bench"]);
  }
  await pglite.close();

  // --- tokens and bodies
  const keyring = await createKeyring([{ alg: "HS256", secret }]);
  const issuer = createTokenIssuer({ keyring, accessTtlSeconds: 3600 });
  const token = (await issuer.issueAccess(userId)).token;
  const badSignature = `${token.slice(0, token.lastIndexOf(".") + 1)}${randomBytes(32).toString("base64url")}`;
  const frame = (message: Uint8Array) => {
    const out = new Uint8Array(5 + message.length);
    new DataView(out.buffer).setUint32(1, message.length);
    out.set(message, 5);
    return out;
  };
  const bodies = {
    empty: frame(new Uint8Array(0)),
    // GetProfileRequest has no fields; a 1 MiB unknown field keeps it valid.
    mib: frame(new Uint8Array([0xfa, 0x3f, 0x80, 0x80, 0x40, ...new Uint8Array(1 << 20)])),
    login: frame(toBinary(LoginRequestSchema, create(LoginRequestSchema, { username: "bench", password: PASSWORD }))),
  };
  const bodyFiles = {} as Record<keyof typeof bodies, string>;
  for (const [name, body] of Object.entries(bodies)) {
    bodyFiles[name as keyof typeof bodies] = join(dir, `${name}.bin`);
    await writeFile(bodyFiles[name as keyof typeof bodies], body);
  }

  const grpc = { "content-type": "application/grpc", te: "trailers" };
  const bearer = (t: string) => ({ ...grpc, authorization: `Bearer ${t}` });
  const common = {
    PROTOGUARD_JWT_SECRET: secret,
    PROTOGUARD_ACCESS_TTL: "3600",
    PROTOGUARD_LOG_LEVEL: "info",
  };
  const onPg = pg?.url ? { ...common, DATABASE_URL: pg.url } : undefined;
  const onPglite = { ...common, PROTOGUARD_DATA_DIR: pgliteDir };
  const warmStore = onPg ?? onPglite;
  const base = { path: PATH, body: "empty" as const, calls: CALLS, streams: STREAMS };
  const variants: (Variant | { id: string; label: string; skipped: string })[] = [
    {
      ...base,
      id: "a",
      label: "(a) ceiling: no auth layer",
      env: { BENCH_VARIANT: "ceiling" },
      headers: grpc,
      expect: "ok",
    },
    {
      ...base,
      id: "b",
      label: "(b) protoguard, warm caches",
      env: { BENCH_VARIANT: "protoguard", ...warmStore },
      headers: bearer(token),
      expect: "ok",
    },
    {
      ...base,
      id: "b-nolog",
      label: "(b) protoguard, warm, decision logs off",
      env: { BENCH_VARIANT: "protoguard", ...warmStore, PROTOGUARD_LOG_LEVEL: "warn" },
      headers: bearer(token),
      expect: "ok",
    },
    onPg
      ? {
          ...base,
          id: "c-pg",
          label: "(c) protoguard, no cache, PostgreSQL",
          env: { BENCH_VARIANT: "protoguard", ...onPg, PROTOGUARD_CACHE_ENTRIES: "0" },
          headers: bearer(token),
          expect: "ok",
        }
      : { id: "c-pg", label: "(c) protoguard, no cache, PostgreSQL", skipped: "no PostgreSQL" },
    // PGlite answers one query at a time in-process, so this variant is slow; fewer calls keep the run short.
    {
      ...base,
      id: "c-pglite",
      label: "(c) protoguard, no cache, PGlite",
      env: { BENCH_VARIANT: "protoguard", ...onPglite, PROTOGUARD_CACHE_ENTRIES: "0" },
      headers: bearer(token),
      expect: "ok",
      calls: Math.ceil(CALLS / 5),
    },
    onPg
      ? {
          ...base,
          id: "d",
          label: "(d) hand-written: jsonwebtoken + 2 queries",
          env: { BENCH_VARIANT: "handwritten", ...onPg },
          headers: bearer(token),
          expect: "ok",
        }
      : { id: "d", label: "(d) hand-written: jsonwebtoken + 2 queries", skipped: "no PostgreSQL" },
    {
      ...base,
      id: "e-none",
      label: "(e) reject: no token",
      env: { BENCH_VARIANT: "protoguard", ...warmStore },
      headers: grpc,
      expect: "unauthenticated",
    },
    {
      ...base,
      id: "e-badsig",
      label: "(e) reject: bad signature",
      env: { BENCH_VARIANT: "protoguard", ...warmStore },
      headers: bearer(badSignature),
      expect: "unauthenticated",
    },
    {
      ...base,
      id: "e-mib",
      label: "(e) reject: 1 MiB body, no token",
      env: { BENCH_VARIANT: "protoguard", ...warmStore },
      headers: grpc,
      body: "mib",
      expect: "unauthenticated",
      calls: Math.ceil(CALLS / 4),
    },
    {
      ...base,
      id: "g-none",
      label: "(e) reject: no token, pre-filter off",
      env: { BENCH_VARIANT: "protoguard", ...warmStore, BENCH_PREFILTER: "0" },
      headers: grpc,
      expect: "unauthenticated",
    },
    {
      ...base,
      id: "g-badsig",
      label: "(e) reject: bad signature, pre-filter off",
      env: { BENCH_VARIANT: "protoguard", ...warmStore, BENCH_PREFILTER: "0" },
      headers: bearer(badSignature),
      expect: "unauthenticated",
    },
    {
      ...base,
      id: "g-bare",
      label: "bare Node http2: trailers-only error from headers",
      env: { BENCH_VARIANT: "bare-h2" },
      headers: grpc,
      expect: "unauthenticated",
    },
    {
      ...base,
      id: "f",
      label: "(f) login (scrypt N=2^17)",
      env: { BENCH_VARIANT: "protoguard", ...warmStore },
      path: LOGIN_PATH,
      headers: grpc,
      body: "login",
      expect: "ok",
      calls: LOGIN_CALLS,
      streams: 4,
    },
  ];

  // Every server is started first and the rounds interleave the variants,
  // so a burst of load from elsewhere on the machine lands on all of them
  // alike instead of skewing one variant's ratio.
  const running: {
    variant: Variant;
    server: StartedServer;
    spec: (calls: number) => LoadSpec;
    results: (LoadResult & { cpuUsPerCall: number | null })[];
  }[] = [];
  try {
    for (const variant of variants) {
      if ("skipped" in variant) continue;
      process.stderr.write(`bench: starting ${variant.label}\n`);
      const env = { ...variant.env };
      // PGlite takes one process per data directory: each variant on it gets its own copy.
      if (env.PROTOGUARD_DATA_DIR !== undefined) {
        const copy = join(dir, `data-${variant.id}`);
        await cp(pgliteDir, copy, { recursive: true });
        env.PROTOGUARD_DATA_DIR = copy;
      }
      const server = await startVariant(env);
      const spec = (calls: number): LoadSpec => ({
        url: `${server.url}${variant.path}`,
        headers: variant.headers,
        bodyFile: bodyFiles[variant.body],
        body: bodies[variant.body],
        calls,
        streams: variant.streams,
      });
      running.push({ variant, server, spec, results: [] });
      await smokeCheck(server.url, variant);
      if (variant.id !== "f") await drive(spec(WARMUP));
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const entry of running) {
        process.stderr.write(`bench: round ${round + 1}/${ROUNDS} ${entry.variant.label}\n`);
        const before = await cpuTicks(entry.server.pid);
        const result = await drive(entry.spec(entry.variant.calls));
        const after = await cpuTicks(entry.server.pid);
        if (result.failed > 0)
          throw new Error(`${entry.variant.label}: ${result.failed} calls failed at the HTTP level`);
        const cpu =
          before === null || after === null ? null : (((after - before) / CLK_TCK) * 1e6) / entry.variant.calls;
        entry.results.push({ ...result, cpuUsPerCall: cpu });
      }
    }
  } finally {
    await Promise.all(running.map((entry) => entry.server.stop()));
  }
  const rows: Row[] = variants.map((variant) => {
    if ("skipped" in variant) {
      return {
        id: variant.id,
        label: variant.label,
        callsPerSecond: Number.NaN,
        p50Ms: Number.NaN,
        p99Ms: Number.NaN,
        cpuUsPerCall: null,
        rounds: 0,
        skipped: variant.skipped,
      };
    }
    const { results } = running.find((entry) => entry.variant === variant)!;
    return {
      id: variant.id,
      label: variant.label,
      callsPerSecond: median(results.map((r) => r.callsPerSecond)),
      p50Ms: median(results.map((r) => r.p50Ms)),
      p99Ms: median(results.map((r) => r.p99Ms)),
      cpuUsPerCall: results.every((r) => r.cpuUsPerCall !== null) ? median(results.map((r) => r.cpuUsPerCall!)) : null,
      rounds: results.length,
    };
  });

  // --- memory on variant (b), a fresh server
  process.stderr.write("bench: memory on (b)\n");
  const memory: { calls: number; rssMiB: number }[] = [];
  {
    const memoryEnv: Record<string, string> = { BENCH_VARIANT: "protoguard", ...warmStore };
    if (memoryEnv.PROTOGUARD_DATA_DIR !== undefined) memoryEnv.PROTOGUARD_DATA_DIR = join(dir, "data-b");
    const server = await startVariant(memoryEnv);
    try {
      let done = 0;
      for (const target of MEMORY_CALLS) {
        await drive({
          url: `${server.url}${PATH}`,
          headers: bearer(token),
          bodyFile: bodyFiles.empty,
          body: bodies.empty,
          calls: target - done,
          streams: STREAMS,
        });
        done = target;
        memory.push({ calls: target, rssMiB: (await rssKiB(server.pid)) / 1024 });
      }
    } finally {
      await server.stop();
    }
  }

  await pg?.close();
  await rm(dir, { recursive: true, force: true });
  report(rows, memory, notes, haveH2load);
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

async function startVariant(env: Record<string, string>): Promise<StartedServer> {
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", "bench/server.ts"], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error("bench server did not start within 60 s")), 60_000);
    lines.on("line", (line) => {
      const match = /^READY (\d+)$/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`bench server exited with ${code} before it was ready`));
    });
  });
  child.stdout!.resume();
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        const force = setTimeout(() => child.kill("SIGKILL"), 10_000);
        child.once("exit", () => {
          clearTimeout(force);
          resolve();
        });
        child.kill("SIGTERM");
      }),
  };
}

/** One call with a real client, so a variant that answers wrongly fails the bench instead of measuring it. */
async function smokeCheck(url: string, variant: Variant): Promise<void> {
  if (variant.path !== PATH) return;
  const client = createClient(AccountService, createGrpcTransport({ baseUrl: url }));
  const headers = Object.fromEntries(Object.entries(variant.headers).filter(([k]) => k === "authorization"));
  try {
    const profile = await client.getProfile({}, { headers });
    if (variant.expect !== "ok") throw new Error(`${variant.label}: expected UNAUTHENTICATED, got a profile`);
    if (profile.username !== "bench") throw new Error(`${variant.label}: unexpected profile ${profile.username}`);
  } catch (error) {
    if (variant.expect === "ok") throw error;
    if (ConnectError.from(error).code !== Code.Unauthenticated) throw error;
  }
}

async function cpuTicks(pid: number): Promise<number | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  } catch {
    return null;
  }
}

async function rssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
}

function report(rows: Row[], memory: { calls: number; rssMiB: number }[], notes: string[], haveH2load: boolean): void {
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
    { name: "e/a (no token) >= 1.0", value: ratio("e-none", "a"), min: 1.0 },
    { name: "e/a (bad signature) >= 1.0", value: ratio("e-badsig", "a"), min: 1.0 },
    { name: "1 MiB refusal CPU / empty refusal CPU <= 1.0", value: ratio("e-mib", "e-none", "cpuUsPerCall"), max: 1.0 },
    { name: "pre-filter no-token / bare http2 >= 0.6", value: ratio("e-none", "g-bare"), min: 0.6 },
    { name: "pre-filter bad-signature / bare http2 >= 0.6", value: ratio("e-badsig", "g-bare"), min: 0.6 },
    { name: "pre-filter on/off, no token", value: ratio("e-none", "g-none") },
    { name: "pre-filter on/off, bad signature", value: ratio("e-badsig", "g-badsig") },
    {
      name: "memory after 200k / after 20k <= 1.2",
      value: memory.length === 2 ? memory[1]!.rssMiB / memory[0]!.rssMiB : null,
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
  const fmt = (n: number | null, digits = 0) => (n === null || !Number.isFinite(n) ? "-" : n.toFixed(digits));
  const lines: string[] = [];
  lines.push(
    `protoguard bench (${quick ? "quick" : "full"}): ${ROUNDS} round(s) × ${CALLS} calls, ${STREAMS} streams on 1 connection, gRPC over h2c, load from ${haveH2load ? "h2load" : "a Node client"}`,
  );
  lines.push(
    `machine: ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, node ${process.version}, load average at end ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
  lines.push("");
  lines.push(
    `${"variant".padEnd(52)} ${"calls/s".padStart(9)} ${"p50 ms".padStart(8)} ${"p99 ms".padStart(8)} ${"CPU µs/call".padStart(12)}`,
  );
  for (const r of rows) {
    lines.push(
      `${r.label.padEnd(52)} ${r.skipped ? `skipped: ${r.skipped}` : `${fmt(r.callsPerSecond).padStart(9)} ${fmt(r.p50Ms, 2).padStart(8)} ${fmt(r.p99Ms, 2).padStart(8)} ${fmt(r.cpuUsPerCall, 1).padStart(12)}`}`,
    );
  }
  lines.push("");
  for (const m of memory) lines.push(`memory (b): RSS ${m.rssMiB.toFixed(1)} MiB after ${m.calls} calls`);
  lines.push("");
  for (const t of targets) {
    lines.push(`${t.met === null ? "     " : t.met ? "MET  " : "MISS "} ${t.name.padEnd(48)} ${fmt(t.value, 2)}`);
  }
  for (const note of notes) lines.push(`note: ${note}`);
  process.stdout.write(`${lines.join("\n")}\n`);
  const results = {
    date: new Date().toISOString(),
    mode: quick ? "quick" : "full",
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, loadavg: loadavg() },
    loadGenerator: haveH2load ? "h2load" : "node",
    rounds: ROUNDS,
    callsPerRound: CALLS,
    streams: STREAMS,
    rows,
    memory,
    targets,
    notes,
  };
  return void writeFile(new URL("./results.json", import.meta.url), `${JSON.stringify(results, null, 2)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
