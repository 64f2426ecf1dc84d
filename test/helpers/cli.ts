/** Helpers for tests that run the `protoguard` CLI, in this process or as a child. */
import assert from "node:assert/strict";
import { runCli } from "../../src/cli/commands.js";

/** What one CLI run left: its exit code (null if killed by a signal) and its output. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * This process's environment without anything that would point the CLI at another database or
 * key (`DATABASE_URL`, `PROTOGUARD_*`) or make a child report to node:test (`NODE_TEST_*`), with
 * a cheap scrypt cost (`PROTOGUARD_SCRYPT_LOG_N=12` unless `extra` sets it), then `extra`.
 */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key === "DATABASE_URL" || key.startsWith("PROTOGUARD_") || key.startsWith("NODE_TEST")) continue;
    env[key] = value;
  }
  return { ...env, PROTOGUARD_SCRYPT_LOG_N: "12", ...extra };
}

/** Asserts the run exited 0, showing its output otherwise. */
export function assertOk(result: CliResult): void {
  assert.equal(result.code, 0, `stdout: ${result.stdout}\nstderr: ${result.stderr}`);
}

/** Runs the library CLI in this process (`runCli`, what the executable wraps), capturing its output. */
export async function runCliCaptured(args: readonly string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(args, env, {
    out: (line) => void (stdout += `${line}\n`),
    err: (line) => void (stderr += `${line}\n`),
  });
  return { code, stdout, stderr };
}
