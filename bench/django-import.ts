/**
 * `node --import tsx bench/django-import.ts [N]`: how long `protoguard import
 * django` takes for N Django users (default 10000), each in one of 10 groups
 * and with one direct grant: the first import, a second one that changes
 * nothing, and a dry run. Needs PostgreSQL (DATABASE_URL) and Debian's Django
 * packages; makes and drops its own databases.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { importFromDjango } from "../src/store/django-import.js";
import { createTestDatabase } from "../src/testing/database.js";

const n = Number(process.argv[2] ?? 10_000);
const maintenanceUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const djangoDir = fileURLToPath(new URL("../test/django/", import.meta.url));
const name = `protoguard_django_bench_${randomBytes(4).toString("hex")}`;
const env = { ...process.env, DJANGO_DB_NAME: name, DJANGO_SECRET_KEY: randomBytes(32).toString("hex") };
const maintenance = postgres(maintenanceUrl, { max: 1, onnotice: () => {} });
await maintenance.unsafe(`create database ${name}`);
try {
  for (const args of [
    ["manage.py", "migrate", "-v0"],
    ["seed.py", "bulk", String(n)],
  ]) {
    const run = spawnSync("/usr/bin/python3", args, { cwd: djangoDir, env, encoding: "utf8" });
    if (run.status !== 0) throw new Error(run.stderr);
  }
  const url = new URL(maintenanceUrl);
  url.pathname = `/${name}`;
  await using target = await createTestDatabase({ url: maintenanceUrl });
  for (const [label, dryRun] of [
    ["first import", false],
    ["second import (no change)", false],
    ["dry run (no change)", true],
  ] as const) {
    const started = performance.now();
    const report = await importFromDjango(target, { databaseUrl: url.href, dryRun });
    const ms = performance.now() - started;
    console.log(
      `${label}: ${n} users in ${(ms / 1000).toFixed(2)} s (${Math.round((n / ms) * 1000)} users/s); ` +
        `created ${report.users.created}, unchanged ${report.users.unchanged}, grants added ${report.grants.added}`,
    );
  }
} finally {
  await maintenance.unsafe(`drop database if exists ${name} with (force)`);
  await maintenance.end();
}
