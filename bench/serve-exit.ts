/**
 * `npx tsx bench/serve-exit.ts [runs]`: how long `protoguard serve` on the
 * embedded database takes to exit after SIGTERM (one call served first; each
 * run alone on the machine), then whether a restart started at the signal
 * serves (it waits for the old process's data directory) and when.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const runs = Number(process.argv[2] ?? 5);
const dir = await mkdtemp(join(tmpdir(), "protoguard-serve-exit-"));
const env: NodeJS.ProcessEnv = {
  ...process.env,
  PROTOGUARD_DATA_DIR: join(dir, "data"),
  PROTOGUARD_SCRYPT_LOG_N: "10",
};
delete env["DATABASE_URL"];
delete env["PORT"];

function start() {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/bin.ts", "serve", "--port", "0"], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  const exited = once(child, "exit");
  const url = (async () => {
    for (;;) {
      const match = /serving on (\S+)/.exec(out);
      if (match) return match[1]!;
      if (child.exitCode !== null) throw new Error(`serve exited ${child.exitCode}: ${out}`);
      await sleep(10);
    }
  })();
  return { child, exited, url };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const exits: number[] = [];
try {
  for (let i = 0; i < runs; i++) {
    const server = start();
    const url = await server.url;
    await fetch(`${url}/protoguard.v1.AuthService/WhoAmI`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    await sleep(200);
    const signalled = Date.now();
    server.child.kill("SIGTERM");
    await server.exited;
    exits.push(Date.now() - signalled);
    console.log(`run ${i + 1}: exit ${exits.at(-1)} ms after SIGTERM`);
  }
  console.log(`median: exit ${median(exits)} ms after SIGTERM (${runs} runs)`);
  // A restart started at the signal: serving, or refused DATA_DIR_LOCKED.
  const old = start();
  await old.url;
  const signalled = Date.now();
  old.child.kill("SIGTERM");
  const next = start();
  await old.exited;
  try {
    await next.url;
    console.log(`restart right after SIGTERM: serving after ${Date.now() - signalled} ms`);
  } catch (error) {
    console.log(`restart right after SIGTERM: failed, ${(error as Error).message.trim()}`);
  }
  next.child.kill("SIGTERM");
  await next.exited;
} finally {
  await rm(dir, { recursive: true, force: true });
}
