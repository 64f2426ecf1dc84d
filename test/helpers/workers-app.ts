/**
 * An application's entry script that serves with `startServer({ workers: 2 })`,
 * for workers.test.ts: node:cluster re-runs this same script in every
 * worker. Configured by the environment (`loadConfig`: DATABASE_URL,
 * PROTOGUARD_JWT_SECRET). The primary prints `READY <url>`, then answers
 * commands on standard input: `pids` prints `PIDS {"pids":[...],"replaced":N}`;
 * SIGTERM closes the server (`CLOSED`, exit 0).
 */
import { createInterface } from "node:readline";
import { pino } from "pino";
import { exampleResources, exampleRoutes } from "../../example/services.js";
import { isServerWorker, loadConfig, onShutdownSignals, openRuntime, startServer } from "../../src/exports/server.js";

const runtime = await openRuntime(loadConfig(process.env), { migrate: !isServerWorker() });
const server = await startServer({
  runtime,
  // A stream of 5 messages 300 ms apart: long enough to be in flight when the server closes.
  routes: exampleRoutes({ database: runtime.database, notificationIntervalMs: 300 }),
  // UpdateOrder's condition reads the order: its loader, in the primary and every worker.
  resources: exampleResources({ database: runtime.database }),
  port: 0,
  workers: 2,
  // Ten minutes: only the database's notifications can explain a cache seeing a change in time.
  principalCacheMaxAgeMs: 600_000,
  logger: pino({ level: "warn" }),
});

if (!isServerWorker()) {
  process.stdout.write(`READY ${server.url}\n`);
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    if (line === "pids") {
      const workers = server.workers!;
      process.stdout.write(`PIDS ${JSON.stringify({ pids: workers.pids(), replaced: workers.replaced })}\n`);
    }
  });
  onShutdownSignals(async () => {
    lines.close();
    await server.close();
    process.stdout.write("CLOSED\n");
  });
}
