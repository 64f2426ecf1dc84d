/**
 * Process wiring of the `protoguard` command: arguments, environment and
 * standard streams go in, an exit code comes out. The commands are in
 * ./commands.ts; ./bin.ts is the package's executable.
 */
import { runCli } from "./commands.js";
import type { CliIo, CliOptions } from "./io.js";

/**
 * Runs the CLI on this process's arguments and sets its exit code. A program
 * that embeds the CLI (as this repository's example does) passes options.
 */
export async function runMain(options: CliOptions = {}): Promise<void> {
  // `protoguard token alice | head -c 20` closes the pipe early: that is the
  // reader's choice, not a failure worth a stack trace.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EPIPE") throw error;
    });
  }
  // postgres.js rejects a promise of its own that nobody awaits (the type
  // fetch of a new connection) when the server or a pooler ends the
  // connection with a FATAL error, as PgBouncer does on query_wait_timeout.
  // The query waiting for that connection fails with the same error, and the
  // command reports it as one line: this duplicate must not add a stack trace.
  process.on("unhandledRejection", (reason: unknown) => {
    if (isFatalDriverError(reason)) return;
    throw reason;
  });
  const io: CliIo = {
    out: (line) => void process.stdout.write(`${line}\n`),
    err: (line) => void process.stderr.write(`${line}\n`),
  };
  const exitCode = await runCli(process.argv.slice(2), process.env, io, options);
  process.exitCode = exitCode;
  if (process.argv[2] === "serve") {
    // A server that has returned has closed everything it opened (listener,
    // caches, database, data directory lock): exit now, once our output is
    // written, instead of waiting for the event loop to wind down, which took
    // a further 0.1-0.9 s after SIGTERM (measured with bench/serve-exit.ts).
    await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
    process.exit(exitCode);
  }
  // Every command closes what it opened, so the process should end by itself;
  // if a library leaves a handle behind, a finished admin command must still
  // not hang a script. unref: this timer alone keeps nothing alive.
  setTimeout(() => process.exit(exitCode), 2000).unref();
}

/** Resolves once everything written to `stream` so far has been handed to the OS. */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || !stream.writable) resolve();
    else stream.write("", () => resolve());
  });
}

/** A postgres.js error for a connection the server (or pooler) ended: severity FATAL or PANIC. */
function isFatalDriverError(reason: unknown): boolean {
  if (!(reason instanceof Error) || reason.name !== "PostgresError") return false;
  // PgBouncer sends only the localized severity (severity_local).
  const { severity, severity_local: local } = reason as { severity?: unknown; severity_local?: unknown };
  return [severity, local].some((s) => s === "FATAL" || s === "PANIC");
}
