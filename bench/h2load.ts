/**
 * Load generators. h2load (nghttp2's C HTTP/2 load generator, so the
 * generator does not compete with the server for the JS runtime) drives
 * every variant whose calls all carry the same headers, and its per-request
 * log gives the latency percentiles. A Node HTTP/2 client drives the
 * variants whose calls differ (a token per user, a mix of refusals), and is
 * the fallback without h2load; the results say which drove what.
 */
import { execFile } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import * as http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** One load run with the same headers on every call. */
export interface LoadSpec {
  url: string;
  headers: Record<string, string>;
  bodyFile: string;
  body: Uint8Array;
  calls: number;
  /** Concurrent streams per connection. */
  streams: number;
  /** Client connections. Default 1. */
  connections?: number;
}

/** One load run whose calls each get their own headers (`headersFor(i)` for the i-th call). */
export interface SequenceSpec extends Omit<LoadSpec, "headers" | "bodyFile"> {
  headersFor(index: number): Record<string, string>;
}

/** What one load run measured. */
export interface LoadResult {
  callsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  succeeded: number;
  failed: number;
  /** gRPC status codes seen, by code (Node client only). */
  grpcStatus?: Record<string, number>;
}

/** Whether h2load is installed. */
export async function hasH2load(): Promise<boolean> {
  try {
    await run("h2load", ["--version"]);
    return true;
  } catch {
    return false;
  }
}

/** Runs h2load: `connections` connections, `streams` concurrent streams each, `calls` POSTs, one client thread. */
export async function h2load(spec: LoadSpec): Promise<LoadResult> {
  const log = join(tmpdir(), `h2load-${process.pid}-${Date.now()}.log`);
  const args = [
    "-n",
    String(spec.calls),
    "-c",
    String(spec.connections ?? 1),
    "-m",
    String(spec.streams),
    "-t",
    "1",
    "-d",
    spec.bodyFile,
    "--log-file",
    log,
  ];
  for (const [name, value] of Object.entries(spec.headers)) args.push("-H", `${name}: ${value}`);
  args.push(spec.url);
  try {
    const { stdout } = await run("h2load", args, { maxBuffer: 16 << 20, timeout: 600_000 });
    const finished = /finished in ([\d.]+)(m?s|us), ([\d.]+) req\/s/.exec(stdout);
    const counts = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/.exec(stdout);
    if (!finished || !counts) throw new Error(`unexpected h2load output:\n${stdout}`);
    // Log lines: start (µs), status, duration (µs).
    const durations = (await readFile(log, "utf8"))
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => Number(line.split("\t")[2]) / 1000)
      .sort((a, b) => a - b);
    return {
      callsPerSecond: Number(finished[3]),
      p50Ms: percentile(durations, 0.5),
      p99Ms: percentile(durations, 0.99),
      succeeded: Number(counts[1]),
      failed: Number(counts[2]),
    };
  } finally {
    await rm(log, { force: true });
  }
}

/** The same load as {@link h2load} from a Node HTTP/2 client in this process. */
export function nodeLoad(spec: LoadSpec): Promise<LoadResult> {
  return nodeSequence({ ...spec, headersFor: () => spec.headers });
}

/**
 * Calls from a Node HTTP/2 client in this process, each with its own
 * headers: `connections` sessions, `streams` calls in flight on each, the
 * i-th call with `headersFor(i)`. Counts the gRPC status of every answer
 * (trailers-only or in trailers).
 */
export async function nodeSequence(spec: SequenceSpec): Promise<LoadResult> {
  const url = new URL(spec.url);
  const sessions = Array.from({ length: spec.connections ?? 1 }, () =>
    http2.connect(url.origin, { maxSessionMemory: 1000 }),
  );
  await Promise.all(sessions.map((session) => new Promise((resolve) => session.once("connect", resolve))));
  const durations: number[] = [];
  const grpcStatus: Record<string, number> = {};
  let failed = 0;
  let next = 0;
  const started = performance.now();
  const one = (session: http2.ClientHttp2Session, index: number) =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      const req = session.request({ ":method": "POST", ":path": url.pathname, ...spec.headersFor(index) });
      let status: string | undefined;
      req.on("response", (headers) => {
        if (headers[":status"] !== 200) failed++;
        status = headers["grpc-status"] as string | undefined;
      });
      req.on("trailers", (trailers) => {
        status ??= trailers["grpc-status"] as string | undefined;
      });
      req.on("error", () => {
        failed++;
        resolve();
      });
      req.resume();
      req.on("end", () => {
        durations.push(performance.now() - t0);
        grpcStatus[status ?? "none"] = (grpcStatus[status ?? "none"] ?? 0) + 1;
        resolve();
      });
      req.end(spec.body);
    });
  const worker = async (session: http2.ClientHttp2Session) => {
    for (let index = next++; index < spec.calls; index = next++) await one(session, index);
  };
  await Promise.all(sessions.flatMap((session) => Array.from({ length: spec.streams }, () => worker(session))));
  const seconds = (performance.now() - started) / 1000;
  for (const session of sessions) session.close();
  durations.sort((a, b) => a - b);
  return {
    callsPerSecond: spec.calls / seconds,
    p50Ms: percentile(durations, 0.5),
    p99Ms: percentile(durations, 0.99),
    succeeded: spec.calls - failed,
    failed,
    grpcStatus,
  };
}

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}
