/**
 * The CLI beside a running `protoguard serve` on the embedded database: the
 * server holds `.protoguard` and shares it on a private Unix socket, the CLI
 * works through it, and the server's caches see each change on the next
 * call. A second server is still refused with one line; a restart right
 * after SIGTERM waits for the old process instead of failing. All real
 * child processes, real PGlite, real HTTP.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcessByStdio } from "node:child_process";
import { once } from "node:events";
import { existsSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { DATA_DIR_SOCKET_FILE } from "../src/store/data-dir-socket.js";
import { assertOk, cleanEnv, type CliResult } from "./helpers/cli.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TIMEOUT = 300_000;

type Child = ChildProcessByStdio<null, Readable, Readable>;

interface Served {
  child: Child;
  url: string;
  out: () => string;
  exited: Promise<unknown>;
}

function spawnCli(env: NodeJS.ProcessEnv, args: readonly string[]): Child {
  return spawn(process.execPath, ["--import", "tsx", "src/cli/bin.ts", ...args], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
}

async function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<CliResult> {
  const child = spawnCli(env, args);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const [code] = (await once(child, "close")) as [number | null];
  return { code, stdout, stderr };
}

/** Starts `protoguard serve --port 0` and waits for its banner. */
async function serve(env: NodeJS.ProcessEnv): Promise<Served> {
  const child = spawnCli(env, ["serve", "--port", "0"]);
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
  const exited = once(child, "exit");
  for (let waited = 0; !/serving on (http:\/\/127\.0\.0\.1:\d+)/.test(out); waited += 50) {
    if (child.exitCode !== null || waited > 150_000) assert.fail(`serve did not start:\n${out}\n${err}`);
    await sleep(50);
  }
  const url = /serving on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;
  return { child, url, out: () => out, exited };
}

async function post(url: string, path: string, message: unknown, token?: string) {
  const response = await fetch(`${url}/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token !== undefined && { authorization: `Bearer ${token}` }) },
    body: JSON.stringify(message),
  });
  const text = await response.text();
  return { status: response.status, body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

describe("the CLI beside protoguard serve on the embedded database", () => {
  let root: string;
  let env: NodeJS.ProcessEnv;
  const children: Child[] = [];

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "protoguard-embedded-serve-"));
    // The development secret: serve writes it to the data directory, the CLI reads it there.
    env = cleanEnv({ PROTOGUARD_DATA_DIR: join(root, "data"), PROTOGUARD_SCRYPT_LOG_N: "10" });
  });

  after(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await rm(root, { recursive: true, force: true });
  });

  it("user create and grant work while serve runs, and the server sees a grant on the next call", {
    timeout: TIMEOUT,
  }, async () => {
    const server = await serve(env);
    children.push(server.child);
    assert.match(server.out(), /Create a user with: protoguard user create/);

    const socket = join(root, "data", "pgdata", DATA_DIR_SOCKET_FILE);
    assert.ok(existsSync(socket), "serve shares its database on a socket in the data directory");
    assert.ok(statSync(socket).isSocket());
    assert.equal(statSync(socket).mode & 0o777, 0o600, "only the owner may connect");

    // The banner's advice, as printed.
    assertOk(await cli(env, "user", "create", "bob", "--password", "pw-bob-123"));
    const login = await post(server.url, "protoguard.v1.AuthService/Login", {
      username: "bob",
      password: "pw-bob-123",
    });
    assert.equal(login.status, 200, JSON.stringify(login.body));
    const token = login.body["accessToken"] as string;
    const whoAmI = () => post(server.url, "protoguard.v1.AuthService/WhoAmI", {}, token);
    const before = await whoAmI();
    assert.equal(before.status, 200, JSON.stringify(before.body));
    assert.deepEqual(before.body["permissions"] ?? [], [], "bob starts without permissions (now cached)");

    assertOk(await cli(env, "user", "grant", "bob", "shop.view_order"));
    const granted = await whoAmI();
    assert.deepEqual(granted.body["permissions"], ["shop.view_order"], "the grant is effective on the next call");

    assertOk(await cli(env, "user", "revoke", "bob", "shop.view_order"));
    assert.deepEqual((await whoAmI()).body["permissions"] ?? [], [], "so is a revoke");

    // Several CLI commands at once take turns on the one database.
    const many = await Promise.all(
      ["carol", "dave", "erin"].map((name) => cli(env, "user", "create", name, "--password", `pw-${name}-123`)),
    );
    for (const result of many) assertOk(result);

    // A second server on the same directory is still refused, with one line.
    const second = await cli(env, "serve", "--port", "0");
    assert.equal(second.code, 1, second.stdout);
    assert.equal(second.stderr.trim().split("\n").length, 1, second.stderr);
    assert.match(second.stderr, new RegExp(`^protoguard: .*in use by process ${server.child.pid}`));

    // A restart right after SIGTERM waits for the old process to let go.
    const stopped = Date.now();
    let oldExitMs = 0;
    const oldExited = server.exited.then((result) => {
      oldExitMs = Date.now() - stopped;
      return result;
    });
    server.child.kill("SIGTERM");
    const restarted = await serve(env);
    children.push(restarted.child);
    const [code] = (await oldExited) as [number | null];
    assert.equal(code, 0);
    console.log(
      `# old server exited ${oldExitMs} ms after SIGTERM; the restart served ${Date.now() - stopped} ms after`,
    );
    const again = await post(restarted.url, "protoguard.v1.AuthService/Login", {
      username: "carol",
      password: "pw-carol-123",
    });
    assert.equal(again.status, 200, "the restarted server has the users the CLI made");

    const exitStart = Date.now();
    restarted.child.kill("SIGTERM");
    await restarted.exited;
    console.log(`# serve exited ${Date.now() - exitStart} ms after SIGTERM`);
    assert.ok(!existsSync(socket), "the socket is removed on close");
  });
});
