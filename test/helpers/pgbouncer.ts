/**
 * A PgBouncer of the test's own (Debian's 1.18), in front of the PostgreSQL at DATABASE_URL: a
 * config file in a temp dir, a free loopback port, killed by `close()`. Tests that need it skip
 * with the reason when it is not installed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findExecutable, postgresUrl, skipWithoutPostgres } from "./env.js";

/** Debian's pgbouncer, or undefined. */
export const pgbouncerPath: string | undefined = findExecutable("pgbouncer", "/usr/sbin/pgbouncer");

/** Why PgBouncer tests skip, or undefined when they run. */
export const skipWithoutPgbouncer: string | undefined =
  skipWithoutPostgres ??
  (pgbouncerPath === undefined
    ? "pgbouncer not installed (apt-get install pgbouncer): pooler tests skipped"
    : undefined);

/** Options of {@link startPgbouncer}. */
export interface PgbouncerOptions {
  /** `pool_mode`. Default "transaction". */
  poolMode?: "transaction" | "session";
  /** `default_pool_size`: server connections per database and user. Default 5. */
  poolSize?: number;
  /** `query_wait_timeout`, seconds (how long a client waits for a server connection). Default 120, PgBouncer's own. */
  queryWaitTimeoutSeconds?: number;
}

/** A running PgBouncer. */
export interface Pgbouncer {
  readonly port: number;
  /** `DATABASE_URL`'s user on database `database`, through this PgBouncer. */
  url(database: string): string;
  /** Freezes the process (SIGSTOP): its sockets stay open and nothing moves through them. */
  pause(): void;
  /** Lets a paused process go on (SIGCONT). */
  resume(): void;
  /** Its log so far (for failure messages). */
  log(): Promise<string>;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: "127.0.0.1" });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Starts a PgBouncer pointing at DATABASE_URL's server (trust auth). */
export async function startPgbouncer(options: PgbouncerOptions = {}): Promise<Pgbouncer> {
  if (pgbouncerPath === undefined || postgresUrl === undefined) throw new Error(skipWithoutPgbouncer);
  const upstream = new URL(postgresUrl);
  const user = decodeURIComponent(upstream.username || "postgres");
  const dir = await mkdtemp(join(tmpdir(), "protoguard-pgbouncer-"));
  // PgBouncer refuses to run as root: it drops to `postgres`, which must read and write here.
  await chmod(dir, 0o777);
  const port = await freePort();
  const logfile = join(dir, "pgbouncer.log");
  const userlist = join(dir, "userlist.txt");
  await writeFile(userlist, `"${user}" ""\n`, { mode: 0o644 });
  const config = [
    "[databases]",
    `* = host=${upstream.hostname} port=${upstream.port || "5432"}`,
    "[pgbouncer]",
    "listen_addr = 127.0.0.1",
    `listen_port = ${port}`,
    "auth_type = trust",
    `auth_file = ${userlist}`,
    `pool_mode = ${options.poolMode ?? "transaction"}`,
    `default_pool_size = ${options.poolSize ?? 5}`,
    "max_client_conn = 500",
    `query_wait_timeout = ${options.queryWaitTimeoutSeconds ?? 120}`,
    "unix_socket_dir =",
    `logfile = ${logfile}`,
    "ignore_startup_parameters = extra_float_digits,options",
    "",
  ].join("\n");
  const configFile = join(dir, "pgbouncer.ini");
  await writeFile(configFile, config, { mode: 0o644 });
  const asRoot = process.getuid?.() === 0;
  const child: ChildProcess = spawn(pgbouncerPath, [...(asRoot ? ["-u", "postgres"] : []), configFile], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const deadline = Date.now() + 10_000;
  while (!(await accepts(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`pgbouncer did not start on port ${port}: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  let closing: Promise<void> | undefined;
  return {
    port,
    url: (database) => `postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/${database}`,
    pause: () => void child.kill("SIGSTOP"),
    resume: () => void child.kill("SIGCONT"),
    log: () => readFile(logfile, "utf8").catch(() => stderr),
    close: () =>
      (closing ??= (async () => {
        if (child.exitCode === null) {
          child.kill("SIGCONT");
          child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), 3_000);
          await exited;
          clearTimeout(timer);
        }
        await rm(dir, { recursive: true, force: true });
      })()),
  };
}

/** The database name in a PostgreSQL URL. */
export function databaseName(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1));
}
