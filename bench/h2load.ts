/**
 * Drives a server with h2load (nghttp2's C HTTP/2 load generator, so the
 * generator does not compete with the server for the JS runtime) and reads
 * its per-request log for latency percentiles. Without h2load, a Node
 * client does the same job, and the results say so.
 */
import { execFile } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import * as http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** One load run. */
export interface LoadSpec {
  url: string;
  headers: Record<string, string>;
  bodyFile: string;
  body: Uint8Array;
  calls: number;
  /** Concurrent streams on one connection. */
  streams: number;
}

/** What one load run measured. */
export interface LoadResult {
  callsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  succeeded: number;
  failed: number;
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

/** Runs h2load: one connection, `streams` concurrent streams, `calls` POSTs. */
export async function h2load(spec: LoadSpec): Promise<LoadResult> {
  const log = join(tmpdir(), `h2load-${process.pid}-${Date.now()}.log`);
  const args = [
    "-n",
    String(spec.calls),
    "-c",
    "1",
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

/** The fallback: the same load from a Node HTTP/2 client in this process. */
export async function nodeLoad(spec: LoadSpec): Promise<LoadResult> {
  const url = new URL(spec.url);
  const session = http2.connect(url.origin, { maxSessionMemory: 1000 });
  const durations: number[] = [];
  let failed = 0;
  let next = 0;
  const started = performance.now();
  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      const req = session.request({ ":method": "POST", ":path": url.pathname, ...spec.headers });
      req.on("response", (headers) => {
        if (headers[":status"] !== 200) failed++;
      });
      req.on("error", () => {
        failed++;
        resolve();
      });
      req.resume();
      req.on("end", () => {
        durations.push(performance.now() - t0);
        resolve();
      });
      req.end(spec.body);
    });
  const worker = async () => {
    while (next++ < spec.calls) await one();
  };
  await Promise.all(Array.from({ length: spec.streams }, worker));
  const seconds = (performance.now() - started) / 1000;
  session.close();
  durations.sort((a, b) => a - b);
  return {
    callsPerSecond: spec.calls / seconds,
    p50Ms: percentile(durations, 0.5),
    p99Ms: percentile(durations, 0.99),
    succeeded: spec.calls - failed,
    failed,
  };
}

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}
