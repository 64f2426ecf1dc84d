/**
 * Test kit ownership: a test file using createTestAuth with a PostgreSQL
 * createTestDatabase ends by itself and leaves no database behind, whether
 * it closes the database, uses `await using`, or forgets; the databases of
 * killed runs are dropped by the next run. Real `node --test` children, a
 * real server.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import postgres from "postgres";
import { createTestDatabase } from "../src/exports/testing.js";
import { cleanEnv } from "./helpers/cli.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DATABASE_URL = process.env["DATABASE_URL"];
const skip = DATABASE_URL === undefined ? "needs DATABASE_URL (a PostgreSQL server)" : false;
/** How long a finished test file may take to end by itself. */
const EXIT_BOUND_MS = 30_000;

const testing = pathToFileURL(join(ROOT, "src/exports/testing.ts")).href;
const protoguard = pathToFileURL(join(ROOT, "src/exports/protoguard.ts")).href;

/** A test file as a user writes it; `{body}` is the fixture's life. */
function testFile(body: string): string {
  return `
import { test } from "node:test";
import { createTestAuth, createTestDatabase } from ${JSON.stringify(testing)};
import { AuthService } from ${JSON.stringify(`${ROOT}gen/protoguard/v1/auth_pb.ts`)};
void AuthService;
void ${JSON.stringify(protoguard)};
const url = process.env.DATABASE_URL;
test("a user in a PostgreSQL test database", async () => {
${body}
});
`;
}

/** The database the fixture used: printed by the child as `DB <name>`. */
async function runTestFile(dir: string, name: string, body: string) {
  const file = join(dir, `${name}.test.ts`);
  await writeFile(file, testFile(body));
  const started = Date.now();
  const child = spawn(process.execPath, ["--import", "tsx", "--test", file], {
    cwd: ROOT,
    env: cleanEnv({ DATABASE_URL: DATABASE_URL! }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  const timer = setTimeout(() => child.kill("SIGKILL"), EXIT_BOUND_MS);
  const [code, signal] = (await once(child, "exit")) as [number | null, string | null];
  clearTimeout(timer);
  return { code, signal, out, ms: Date.now() - started };
}

async function exists(sql: postgres.Sql, name: string): Promise<boolean> {
  return (await sql`select 1 from pg_database where datname = ${name}`).length > 0;
}

describe("test kit ownership on PostgreSQL", { skip }, () => {
  let dir: string;
  let sql: postgres.Sql;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoguard-ownership-"));
    sql = postgres(DATABASE_URL!, { max: 1, onnotice: () => {} });
  });

  after(async () => {
    await sql?.end({ timeout: 5 });
    await rm(dir, { recursive: true, force: true });
  });

  const cases: Record<string, string> = {
    // The issue's reproduction: t.close() only; the database passed in is never closed.
    "forgets the database": `
  const database = await createTestDatabase({ url });
  console.log("DB " + new URL(database.url).pathname.slice(1));
  const t = await createTestAuth({ routes: () => {}, database });
  await t.createUser({ username: "alice", permissions: ["shop.view_order"] });
  await t.close();`,
    "closes both": `
  const database = await createTestDatabase({ url });
  console.log("DB " + new URL(database.url).pathname.slice(1));
  const t = await createTestAuth({ routes: () => {}, database });
  await t.createUser({ username: "alice" });
  await t.close();
  await database.close();`,
    "await using": `
  await using database = await createTestDatabase({ url });
  console.log("DB " + new URL(database.url).pathname.slice(1));
  await using t = await createTestAuth({ routes: () => {}, database });
  await t.createUser({ username: "alice" });`,
  };

  for (const [name, body] of Object.entries(cases)) {
    it(`a test file that ${name} exits by itself and leaves no database`, { timeout: 180_000 }, async () => {
      const run = await runTestFile(dir, name.replace(/\W+/g, "-"), body);
      assert.equal(run.signal, null, `killed: it did not end by itself\n${run.out}`);
      assert.equal(run.code, 0, run.out);
      assert.match(run.out, /# pass 1/);
      const database = /DB (protoguard_test_\w+)/.exec(run.out)?.[1];
      assert.ok(database, run.out);
      assert.equal(await exists(sql, database), false, `${database} was left behind`);
      console.log(`# "${name}": node --test ended ${run.ms} ms after start`);
    });
  }

  it("the next run drops the databases of killed runs, and keeps the others", { timeout: 180_000 }, async () => {
    // A run killed with SIGKILL after creating its database.
    const file = join(dir, "killed.mts");
    await writeFile(
      file,
      `import { createTestDatabase } from ${JSON.stringify(testing)};
const database = await createTestDatabase({ url: process.env.DATABASE_URL, migrate: false });
console.log("DB " + new URL(database.url).pathname.slice(1));
setInterval(() => {}, 1000);
`,
    );
    const child = spawn(process.execPath, ["--import", "tsx", file], {
      cwd: ROOT,
      env: cleanEnv({ DATABASE_URL: DATABASE_URL! }),
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
    for (let waited = 0; !/DB (\w+)/.test(out); waited += 50) {
      if (child.exitCode !== null || waited > 120_000) assert.fail(`the child did not create a database: ${out}`);
      await sleep(50);
    }
    const killed = /DB (\w+)/.exec(out)![1]!;
    child.kill("SIGKILL");
    await once(child, "exit");
    assert.ok(await exists(sql, killed));

    // From another machine: two hours old (stale) and fresh (kept).
    const seconds = (ms: number) => Math.floor(ms / 1000).toString(36);
    const old = `protoguard_test_000000_1_${seconds(Date.now() - 2 * 3600_000)}_0badc0de`;
    const fresh = `protoguard_test_000000_1_${seconds(Date.now())}_0badc0de`;
    await sql.unsafe(`create database "${old}"`);
    await sql.unsafe(`create database "${fresh}"`);
    try {
      // This process's first createTestDatabase is "the next run".
      const database = await createTestDatabase({ url: DATABASE_URL!, migrate: false });
      await database.close();
      assert.equal(await exists(sql, killed), false, "the killed run's database is dropped");
      assert.equal(await exists(sql, old), false, "an hour-old one is dropped");
      assert.equal(await exists(sql, fresh), true, "a recent one from another machine is kept");
    } finally {
      for (const name of [killed, old, fresh]) await sql.unsafe(`drop database if exists "${name}" with (force)`);
    }
  });
});
