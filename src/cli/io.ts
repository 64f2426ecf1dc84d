/**
 * What every `protoguard` command shares: the {@link Command} signature, the
 * error types that decide the exit code, the one-line rendering of any
 * failure, and {@link withRuntime}, which opens and always closes the
 * database around a command's work.
 */
import type { ServeApp } from "./app.js";
import { loadConfig, ConfigError } from "../runtime/config.js";
import { openRuntime, type Runtime } from "../runtime/runtime.js";
import { StoreError } from "../store/errors.js";
import { KeyConfigError } from "../token/errors.js";
import { causeChain } from "../util/cause-chain.js";
import { CliError, EXIT_FAILURE, EXIT_USAGE, UsageError } from "./errors.js";

/** Where a command writes. Each call is one line, without the trailing newline. */
export interface CliIo {
  /** Results: what scripts read (JSON, URIs, env lines). */
  out(line: string): void;
  /** Diagnostics: warnings and the one-line error. */
  err(line: string): void;
}

/**
 * A CLI command: receives the arguments after its name, the environment it
 * is configured from, and where to write; resolves to the process exit
 * code. Commands may throw {@link UsageError} (exit 2) or any other error
 * (exit 1); the runner turns it into one `protoguard: <message>` line.
 */
export type Command = (args: string[], env: NodeJS.ProcessEnv, io: CliIo, options?: CliOptions) => Promise<number>;

/** How a program embedding the CLI adapts it (see `runCli`). */
export interface CliOptions {
  /**
   * The application `serve` and `policy` use when no `--routes` (or, for
   * `policy`, `--image`) is given. Default: none, so `serve` runs only
   * AuthService. This repository's example CLI sets it to the example app.
   */
  defaultApp?: () => Promise<ServeApp>;
}

/** Prefix of every diagnostic line, so it is clear which program is talking. */
export const PROGRAM = "protoguard";

// Node and postgres.js network error codes meaning "no server to talk to".
// postgres.js reports its own connect timeout as CONNECT_TIMEOUT.
const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EPIPE",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
]);

/**
 * `host:port` of a PostgreSQL URL, never its credentials: the line may end
 * up in logs or a CI transcript.
 */
export function databaseEndpoint(databaseUrl: string | undefined): string {
  if (databaseUrl === undefined) return "the database";
  try {
    const url = new URL(databaseUrl);
    return `${url.hostname || "localhost"}:${url.port || "5432"}`;
  } catch {
    return "the database in DATABASE_URL";
  }
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}

/**
 * Turns any failure into the one line the CLI prints after `protoguard: `
 * (no stack trace: the admin needs the cause, not our call stack), and the
 * exit code. `databaseUrl` only names the endpoint of an unreachable
 * database.
 */
export function describeError(error: unknown, databaseUrl: string | undefined): { message: string; exitCode: number } {
  if (error instanceof UsageError) return { message: oneLine(error.message), exitCode: EXIT_USAGE };
  if (error instanceof CliError || error instanceof StoreError) {
    return { message: oneLine(error.message), exitCode: EXIT_FAILURE };
  }
  if (error instanceof ConfigError || error instanceof KeyConfigError) {
    return { message: `configuration: ${oneLine(error.message)}`, exitCode: EXIT_FAILURE };
  }
  for (const link of causeChain(error)) {
    const code = typeof link["code"] === "string" ? link["code"] : undefined;
    if (code === undefined) continue;
    if (CONNECTION_CODES.has(code)) {
      return { message: `database unreachable: ${databaseEndpoint(databaseUrl)} (${code})`, exitCode: EXIT_FAILURE };
    }
    // The server or a pooler in front of it ends the connection: class 08
    // (PgBouncer's query_wait_timeout is 08P01), too many connections (53300),
    // shutting down or starting (57P01..57P03). Named with their code.
    if (/^(08[0-9A-Z]{3}|53300|57P0[1-3])$/.test(code) && typeof link["message"] === "string") {
      return {
        message: `database ${databaseEndpoint(databaseUrl)} refused the connection: ${oneLine(link["message"])} (${code})`,
        exitCode: EXIT_FAILURE,
      };
    }
    // SQLSTATE classes 28 (authorization) and 3D (no such database) are
    // set-up mistakes worth naming; the server's text says which.
    if (/^(28|3D)[0-9A-Z]{3}$/.test(code) && typeof link["message"] === "string") {
      return {
        message: `database ${databaseEndpoint(databaseUrl)} refused the connection: ${oneLine(link["message"])}`,
        exitCode: EXIT_FAILURE,
      };
    }
  }
  if (error instanceof Error) {
    // Node's fs errors ("ENOENT: no such file or directory, open '…'") are
    // already one self-explanatory line.
    return { message: oneLine(error.message) || error.name, exitCode: EXIT_FAILURE };
  }
  return { message: `unexpected failure: ${oneLine(String(error))}`, exitCode: EXIT_FAILURE };
}

/** Options of {@link withRuntime}. */
export interface WithRuntimeOptions {
  /**
   * Pass on the development-secret warning, after `work` succeeded. Only
   * commands that sign tokens ask for it: for `user create` the key is
   * irrelevant, and a failure must stay exactly one stderr line.
   */
  warnAboutKeys?: boolean;
}

/**
 * Reads the configuration from `env`, opens the runtime (connecting and
 * applying pending migrations), runs `work`, and closes the database
 * whatever happens, so the process can exit as soon as the work is done.
 */
export async function withRuntime<T>(
  env: NodeJS.ProcessEnv,
  io: CliIo,
  work: (runtime: Runtime) => Promise<T>,
  options: WithRuntimeOptions = {},
): Promise<T> {
  const config = loadConfig(env);
  const warnings: string[] = [];
  // Beside a running `protoguard serve` on the embedded database, work through it.
  const runtime = await openRuntime(config, { warn: (message) => warnings.push(message), joinHolder: true });
  let result: T;
  try {
    result = await work(runtime);
  } finally {
    await runtime.close();
  }
  if (options.warnAboutKeys === true) for (const message of warnings) io.err(`${PROGRAM}: warning: ${message}`);
  return result;
}
