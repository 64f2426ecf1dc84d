/**
 * `npx tsx bench/fixture-time.ts [count]`: how long `createTestAuth` takes
 * to be ready, for the first fixture of a process (which builds the migrated
 * snapshot) and for the next ones (copies of it); with DATABASE_URL set,
 * the same for `createTestDatabase({ url })` on PostgreSQL (the first call
 * of a process also makes sure the server's template database exists).
 * Each fixture is created, checked to be empty, given a user, and closed
 * before the next, as a test file would. Prints one line per series: wall
 * time, and this process's CPU time (user + system, which includes work of
 * PGlite's and Node's helper threads), the figure to compare on a busy
 * machine. PostgreSQL's own CPU time is not included.
 */
import { cpus, loadavg } from "node:os";
import { count } from "drizzle-orm";
import { users } from "../src/store/schema.js";
import { createTestAuth, createTestDatabase, type TestDatabase } from "../src/exports/testing.js";

const COUNT = Number(process.argv[2] ?? 5);

/** Times `create` COUNT times; each fixture must start empty (isolation) before it gets a user. */
async function series(
  label: string,
  create: () => Promise<{ database: TestDatabase | { db: TestDatabase["db"] }; close(): Promise<void> }>,
) {
  const times: number[] = [];
  const cpuTimes: number[] = [];
  for (let i = 0; i < COUNT; i++) {
    const started = performance.now();
    const cpu = process.cpuUsage();
    const fixture = await create();
    times.push(performance.now() - started);
    const used = process.cpuUsage(cpu);
    cpuTimes.push((used.user + used.system) / 1000);
    const [row] = await fixture.database.db.select({ n: count() }).from(users);
    if (row?.n !== 0) throw new Error(`${label}: fixture ${i} sees ${row?.n} users of an earlier fixture`);
    await fixture.database.db.insert(users).values({ username: `user-${i}`, password: "" });
    await fixture.close();
  }
  const [first, ...next] = times;
  const [firstCpu, ...nextCpu] = cpuTimes;
  const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  console.log(
    `${label}: first ${fmt(first!)} (cpu ${fmt(firstCpu!)}); next ${next.length}: ` +
      `median ${fmt(median(next))} (cpu ${fmt(median(nextCpu))}), max ${fmt(Math.max(...next))}`,
  );
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

console.log(
  `${cpus().length} cores, load average ${loadavg()
    .map((n) => n.toFixed(1))
    .join(" ")}`,
);
await series("createTestAuth (PGlite)", () => createTestAuth({ routes: () => {} }));
const url = process.env["DATABASE_URL"];
if (url) {
  await series("createTestDatabase (PostgreSQL)", async () => {
    const database = await createTestDatabase({ url });
    return { database, close: () => database.close() };
  });
} else {
  console.log("createTestDatabase (PostgreSQL): skipped, DATABASE_URL not set");
}
