/**
 * What the machine running the tests offers (PostgreSQL, a browser, external
 * tools), found once, and how a test that needs something missing reports
 * itself: as SKIPPED with the reason, never as a pass.
 *
 * node:test (Node 20) counts no test at all under a `describe` with `skip`:
 * the summary line then says neither "pass" nor "skipped". So a whole suite
 * that cannot run is declared with {@link describeOr}, which in that case
 * registers one skipped test in place of the suite's body, and the summary's
 * `# skipped` count shows it.
 */
import { spawnSync } from "node:child_process";
import { constants } from "node:fs";
import { accessSync } from "node:fs";
import { delimiter, join } from "node:path";
import { describe, it, type SuiteFn } from "node:test";

/** `DATABASE_URL` (trimmed), or undefined when PostgreSQL-backed tests cannot run. */
export const postgresUrl: string | undefined = process.env["DATABASE_URL"]?.trim() || undefined;

/** Why PostgreSQL-backed tests skip, or undefined when they run. */
export const skipWithoutPostgres: string | undefined =
  postgresUrl === undefined ? "DATABASE_URL not set: PostgreSQL tests skipped" : undefined;

/** The first executable named `name` among `preferred` and then $PATH, or undefined. */
export function findExecutable(name: string, ...preferred: string[]): string | undefined {
  const path = (process.env["PATH"] ?? "").split(delimiter).filter((dir) => dir !== "");
  for (const candidate of [...preferred, ...path.map((dir) => join(dir, name))]) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here; try the next.
    }
  }
  return undefined;
}

/** Debian's Chromium (or `chromium` on PATH), or undefined. */
export const chromiumPath: string | undefined = findExecutable("chromium", "/usr/bin/chromium");
/** Why browser tests skip, or undefined when they run. */
export const skipWithoutChromium: string | undefined =
  chromiumPath === undefined ? "chromium not installed: browser tests skipped" : undefined;

/** curl, or undefined. */
export const curlPath: string | undefined = findExecutable("curl", "/usr/bin/curl");
/** Why curl checks skip, or undefined when they run. */
export const skipWithoutCurl: string | undefined =
  curlPath === undefined ? "curl not installed: HTTP/1.1 curl checks skipped" : undefined;

/** Whether `openssl version` runs. */
export const haveOpenssl: boolean = spawnSync("openssl", ["version"]).status === 0;
/** Why TLS tests (which make certificates with openssl) skip, or undefined when they run. */
export const skipWithoutOpenssl: string | undefined = haveOpenssl
  ? undefined
  : "openssl not installed: TLS tests skipped";

/** The buf binary installed with the dev dependencies (`npx buf` without npx's start-up). */
export const bufPath: string | undefined = findExecutable(
  "buf",
  join(import.meta.dirname, "..", "..", "node_modules", ".bin", "buf"),
);
/** Why buf curl checks skip, or undefined when they run. */
export const skipWithoutBuf: string | undefined =
  bufPath === undefined ? "buf not installed (npm ci skipped it?): buf curl checks skipped" : undefined;

/** Options of a suite, as `describe` takes them, minus `skip` (see {@link describeOr}). */
export interface SuiteOptions {
  timeout?: number;
  concurrency?: number | boolean;
}

/**
 * `describe(name, options, fn)` when `skip` is undefined; otherwise a suite
 * of the same name holding one test skipped with `skip` as the reason, so
 * the run's summary counts it as skipped. `fn` is not called then: its
 * hooks would try to reach what is missing.
 */
export function describeOr(skip: string | undefined, name: string, options: SuiteOptions, fn: SuiteFn): void {
  if (skip === undefined) {
    describe(name, options, fn);
    return;
  }
  describe(name, () => {
    it("every test of this suite", { skip }, () => {});
  });
}
