/**
 * Several processes serving one port, so a server uses every core: the
 * process that calls `startServer({ workers })` becomes the primary, forks
 * the workers with node:cluster (which re-runs the same entry script in
 * each), and the workers' listeners share the port; the primary accepts the
 * connections and hands them out round-robin (Node's default scheduling on
 * Linux). Each worker is a whole server with its own caches, kept correct
 * by the database's invalidation notifications (LISTEN/NOTIFY: one
 * listening connection per worker).
 *
 * The primary restarts a worker that dies, and on close asks every worker
 * to close gracefully and waits for them.
 */
import cluster, { type Worker } from "node:cluster";
import { availableParallelism } from "node:os";
import type { Logger } from "pino";
import { AggregatorRegistry, type Registry } from "prom-client";
import { ServerError, type ServerErrorCode } from "./transport/errors.js";

/**
 * How many server processes share the port: a positive integer, or `"auto"`
 * for one per core (`os.availableParallelism()`).
 */
export type WorkersOption = number | "auto";

/** The worker processes of a server started with `workers` > 1; see `RunningServer.workers`. */
export interface ServerWorkers {
  /** Worker processes kept running. */
  readonly count: number;
  /** Process ids of the workers serving now (a replacement appears here once it listens). */
  pids(): readonly number[];
  /** Workers that died and were replaced since the start. */
  readonly replaced: number;
}

/** Set in the environment of the workers the primary forks. */
const WORKER_ENV = "PROTOGUARD_SERVER_WORKER";
/** First wait before replacing a worker that died; doubled while they keep dying fast. */
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 5_000;
/** A worker that served this long before dying was not crash-looping: restart at once again. */
const STABLE_MS = 10_000;
/** Beyond `graceMs`, how long the primary waits for a closing worker to exit before killing it. */
const EXIT_MARGIN_MS = 5_000;

type FromWorker =
  | { readonly protoguard: "listening"; readonly port: number }
  | { readonly protoguard: "failed"; readonly message: string; readonly code?: string }
  | { readonly protoguard: "metrics"; readonly id: number };
type FromPrimary =
  | { readonly protoguard: "close" }
  | { readonly protoguard: "metrics"; readonly id: number; readonly text?: string; readonly error?: string };

/** What `/metrics` reads: a registry, or the whole pool's metrics seen from a worker. */
export type MetricsSource = Pick<Registry, "metrics" | "contentType">;

/**
 * The number of processes `workers` asks for. Default 1 (no fork).
 *
 * @throws {RangeError} when it is neither a positive integer nor "auto".
 */
export function resolveWorkers(workers: WorkersOption | undefined): number {
  if (workers === undefined) return 1;
  if (workers === "auto") return availableParallelism();
  if (!Number.isSafeInteger(workers) || workers < 1) {
    throw new RangeError(`workers must be a positive integer or "auto", got ${String(workers)}`);
  }
  return workers;
}

/**
 * Whether this process is a worker forked by a `startServer({ workers })`
 * primary. The same script runs in the primary and in every worker; work
 * that must happen once (migrations, seed data) belongs in the primary:
 * `if (!isServerWorker()) await migrate(...)`.
 */
export function isServerWorker(): boolean {
  return cluster.isWorker && process.env[WORKER_ENV] === "1";
}

/**
 * In a worker: tells the primary the server listens, and closes it (then
 * lets the process end) when the primary asks or goes away.
 */
export function serveAsWorker(port: number, close: () => Promise<void>): void {
  send({ protoguard: "listening", port });
  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    void close()
      .catch(() => {})
      .finally(() => {
        if (process.connected) process.disconnect();
        // Whatever else the script left open must not keep a closed worker
        // alive; an unref'd timer fires only if something does.
        setTimeout(() => process.exit(0), 2_000).unref();
      });
  };
  process.on("message", (message: unknown) => {
    if ((message as Partial<FromPrimary> | null)?.protoguard === "close") stop();
  });
  // The primary died: nobody hands this worker connections any more.
  process.once("disconnect", stop);
}

/** In a worker: tells the primary why this worker could not start. */
export function reportWorkerFailure(error: unknown): void {
  send({
    protoguard: "failed",
    message: error instanceof Error ? error.message : String(error),
    ...(error instanceof ServerError && { code: error.code }),
  });
}

/**
 * In a worker: the metrics of every worker of the pool, summed (counters,
 * histograms) by prom-client's cluster aggregation in the primary, so a
 * scrape of `/metrics` counts every call whichever worker answers it.
 * `local` is this worker's share.
 */
export function poolMetrics(local: Registry): MetricsSource {
  // Answers the primary's requests for this worker's share.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([local]);
  const waiting = new Map<number, { resolve: (text: string) => void; reject: (error: Error) => void }>();
  let nextId = 0;
  process.on("message", (message: Partial<FromPrimary> | null) => {
    if (message?.protoguard !== "metrics" || typeof message.id !== "number") return;
    const request = waiting.get(message.id);
    waiting.delete(message.id);
    if (message.error !== undefined) request?.reject(new Error(message.error));
    else request?.resolve(message.text ?? "");
  });
  return {
    contentType: local.contentType,
    metrics: () =>
      new Promise<string>((resolve, reject) => {
        const id = nextId++;
        waiting.set(id, { resolve, reject });
        send({ protoguard: "metrics", id });
      }),
  };
}

function send(message: FromWorker): void {
  if (process.connected) process.send?.(message);
}

/** Options of {@link startWorkers}. */
export interface StartWorkersOptions {
  /** Processes to keep running. */
  count: number;
  /** How long the workers may let in-flight calls finish on close. */
  graceMs: number;
  /** Where worker deaths and restarts are reported. */
  logger: Logger;
}

/** A running pool, returned by {@link startWorkers}. */
export interface WorkerPool {
  /** The port the workers share. */
  readonly port: number;
  readonly workers: ServerWorkers;
  /** Asks every worker to close gracefully and waits for them all to exit. Idempotent. */
  close(): Promise<void>;
}

/**
 * In the primary: forks `count` workers and resolves once every one of them
 * listens. A worker that dies later is replaced (after 100 ms, doubling up
 * to 5 s while replacements keep dying within 10 s of their start).
 *
 * @throws {ServerError} with the code the worker reported (e.g.
 *   `PORT_IN_USE`), or `WORKER_FAILED`, when a worker exits before it
 *   listens; the others are stopped first.
 */
export async function startWorkers(options: StartWorkersOptions): Promise<WorkerPool> {
  const { count, graceMs, logger } = options;
  const serving = new Map<Worker, number>(); // worker → when it started listening
  const everyone = new Set<Worker>();
  let replaced = 0;
  let closing = false;
  let restartDelay = RESTART_MIN_MS;
  const restartTimers = new Set<NodeJS.Timeout>();
  let port = -1;
  const aggregator = new AggregatorRegistry();

  let settle: { resolve: () => void; reject: (error: Error) => void } | undefined;
  const started = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));

  function fork(): void {
    const worker = cluster.fork({ [WORKER_ENV]: "1" });
    everyone.add(worker);
    let failure: FromWorker | undefined;
    worker.on("message", (message: FromWorker) => {
      if (message?.protoguard === "listening") {
        port = message.port;
        serving.set(worker, Date.now());
        if (settle !== undefined && serving.size === count) {
          settle.resolve();
          settle = undefined;
        }
      } else if (message?.protoguard === "failed") {
        failure = message;
      } else if (message?.protoguard === "metrics") {
        const reply = (answer: Partial<FromPrimary>) => {
          if (worker.isConnected()) worker.send({ protoguard: "metrics", id: message.id, ...answer });
        };
        aggregator.clusterMetrics().then(
          (text) => reply({ text }),
          (error: unknown) => reply({ error: error instanceof Error ? error.message : String(error) }),
        );
      }
    });
    worker.on("exit", (code, signal) => {
      everyone.delete(worker);
      const listenedAt = serving.get(worker);
      serving.delete(worker);
      if (closing) return;
      if (settle !== undefined) {
        // Still starting: a worker that cannot start means the server cannot.
        const reason = failure?.protoguard === "failed" ? failure : undefined;
        settle.reject(
          new ServerError(
            (reason?.code as ServerErrorCode | undefined) ?? "WORKER_FAILED",
            reason?.message ?? `a server worker exited (${signal ?? `code ${code}`}) before it listened`,
          ),
        );
        settle = undefined;
        return;
      }
      const stable = listenedAt !== undefined && Date.now() - listenedAt >= STABLE_MS;
      restartDelay = stable ? RESTART_MIN_MS : Math.min(restartDelay * 2, RESTART_MAX_MS);
      const delay = stable ? 0 : restartDelay;
      logger.error(
        { workerPid: worker.process.pid, code, signal, restartInMs: delay },
        "protoguard worker exited; starting another",
      );
      const timer = setTimeout(() => {
        restartTimers.delete(timer);
        if (closing) return;
        replaced++;
        fork();
      }, delay);
      restartTimers.add(timer);
    });
  }

  function stopAll(): Promise<void> {
    closing = true;
    for (const timer of restartTimers) clearTimeout(timer);
    restartTimers.clear();
    const exits = [...everyone].map(
      (worker) =>
        new Promise<void>((resolve) => {
          if (worker.isDead()) return resolve();
          const kill = setTimeout(() => worker.process.kill("SIGKILL"), graceMs + EXIT_MARGIN_MS);
          worker.once("exit", () => {
            clearTimeout(kill);
            resolve();
          });
          if (worker.isConnected()) worker.send({ protoguard: "close" } satisfies FromPrimary);
          else worker.process.kill("SIGTERM");
        }),
    );
    return Promise.all(exits).then(() => undefined);
  }

  for (let i = 0; i < count; i++) fork();
  try {
    await started;
  } catch (error) {
    await stopAll();
    throw error;
  }

  let stopping: Promise<void> | undefined;
  return {
    port,
    workers: {
      count,
      pids: () => [...serving.keys()].map((worker) => worker.process.pid!),
      get replaced() {
        return replaced;
      },
    },
    close: () => (stopping ??= stopAll()),
  };
}
