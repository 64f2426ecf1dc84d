// A team adopting protoguard, end to end: pack the package, install the
// tarball into a brand-new app outside the repository (peers from the npm
// cache), `protoguard init`, annotate and generate a service, compile it
// with a strict tsc, run it with plain node (no tsx), and call it over
// Connect and gRPC; then run the app's own protoguard/testing test.
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SECRET = randomBytes(32).toString("base64url");

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Ran> {
  // node:test marks its child processes; a nested `node --test` would then
  // report to us in its wire format instead of printing its results. And the
  // app under test uses the embedded database: a DATABASE_URL meant for the
  // server-backed suites must not send its CLI to PostgreSQL.
  const { NODE_TEST_CONTEXT: _context, DATABASE_URL: _database, ...inherited } = process.env;
  return new Promise((done) => {
    execFile(
      command,
      args,
      { cwd, env: { ...inherited, ...env }, maxBuffer: 64 * 1024 * 1024, timeout: 600_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1;
        done({ code, stdout, stderr });
      },
    );
  });
}

async function ok(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  const ran = await run(command, args, cwd, env);
  assert.equal(ran.code, 0, `${command} ${args.join(" ")} failed:\n${ran.stdout}\n${ran.stderr}`);
  return ran.stdout;
}

/** Versions this repository tests with, so npm finds them in its cache. */
async function versionOf(name: string): Promise<string> {
  const pkg = JSON.parse(await readFile(join(REPO, "node_modules", name, "package.json"), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

const SHOP_PROTO = `syntax = "proto3";

package shop.v1;

import "protoguard/v1/options.proto";

// ShopService sells things.
service ShopService {
  // Anyone may list items.
  rpc ListItems(ListItemsRequest) returns (ListItemsResponse) {
    option (protoguard.v1.method_rule) = {public: true};
  }
  // Signed-in users see their cart.
  rpc GetCart(GetCartRequest) returns (GetCartResponse) {
    option (protoguard.v1.method_rule) = {authenticated: true};
  }
  // Changing an item needs shop.change_item.
  rpc UpdateItem(UpdateItemRequest) returns (UpdateItemResponse) {
    option (protoguard.v1.method_rule) = {permissions: ["shop.change_item"]};
  }
}

// ListItemsRequest asks for the items.
message ListItemsRequest {}

// ListItemsResponse lists the items.
message ListItemsResponse {
  repeated string names = 1;
}

// GetCartRequest asks for the caller's cart.
message GetCartRequest {}

// GetCartResponse is the caller's cart.
message GetCartResponse {
  string owner = 1;
}

// UpdateItemRequest changes an item.
message UpdateItemRequest {
  string name = 1;
}

// UpdateItemResponse is the changed item.
message UpdateItemResponse {
  string name = 1;
}
`;

const TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    lib: ["ES2023"],
    types: ["node"],
    strict: true,
    exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true,
    verbatimModuleSyntax: true,
    // What apps use: pglite's and drizzle's own declarations do not pass
    // without it, whatever a library ships.
    skipLibCheck: true,
    rootDir: "src",
    outDir: "dist",
  },
  include: ["src"],
};

const ROUTES_TS = `import type { ConnectRouter } from "@connectrpc/connect";
import { getUser, requireUser } from "protoguard";
import { ShopService } from "./gen/shop/v1/shop_pb.js";

export function routes(router: ConnectRouter): void {
  router.service(ShopService, {
    listItems: (_req, ctx) => ({ names: ["apple", getUser(ctx)?.username ?? "anonymous"] }),
    getCart: (_req, ctx) => ({ owner: requireUser(ctx).username }),
    updateItem: (req) => ({ name: req.name }),
  });
}
`;

const SERVER_TS = `import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createAuth, createKeyring, createTokenVerifier } from "protoguard";
import { createPrincipalSource, migrateDatabase, openDatabase } from "protoguard/store";
import { ShopService } from "./gen/shop/v1/shop_pb.js";
import { routes } from "./routes.js";

const dataDir = process.env["PROTOGUARD_DATA_DIR"];
if (dataDir === undefined) throw new Error("PROTOGUARD_DATA_DIR is not set");
const database = await openDatabase({ dataDir });
await migrateDatabase(database);
const keyring = await createKeyring([{ alg: "HS256", secret: process.env["PROTOGUARD_JWT_SECRET"] ?? "" }]);
const principals = await createPrincipalSource({ database });
const auth = createAuth({ services: [ShopService], verifier: createTokenVerifier({ keyring }), principals });
const handler = connectNodeAdapter({ routes, interceptors: [auth.interceptor], requestGate: auth.requestGate });
const server = http2.createServer(handler);
server.listen(0, "127.0.0.1", () => console.log("PORT " + (server.address() as AddressInfo).port));
process.on("SIGTERM", () => {
  server.close();
  void principals.close().then(() => database.close()).then(() => process.exit(0));
});
`;

/**
 * README's wiring, as an app fills it from the environment: every value may be undefined, and
 * under exactOptionalPropertyTypes the options must say so (TS2379 otherwise).
 */
const WIRING_TS = `import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createAuth, createKeyring, createTokenIssuer, createTokenVerifier } from "protoguard";
import { startServer } from "protoguard/server";
import { createPrincipalSource, migrateDatabase, openDatabase } from "protoguard/store";
import { ShopService } from "./gen/shop/v1/shop_pb.js";
import { routes } from "./routes.js";

const seconds = (value: string | undefined) => (value === undefined ? undefined : Number(value));

export async function wire() {
  const database = await openDatabase({ url: process.env.DATABASE_URL, dataDir: process.env.PROTOGUARD_DATA_DIR });
  await migrateDatabase(database);
  const keyring = await createKeyring([{ alg: "HS256", secret: process.env.PROTOGUARD_JWT_SECRET }]);
  const tokens = {
    keyring,
    accessTtlSeconds: seconds(process.env.PROTOGUARD_ACCESS_TTL),
    refreshTtlSeconds: seconds(process.env.PROTOGUARD_REFRESH_TTL),
    issuer: process.env.PROTOGUARD_JWT_ISSUER,
    audience: process.env.PROTOGUARD_JWT_AUDIENCE,
  };
  const issuer = createTokenIssuer(tokens);
  const verifier = createTokenVerifier({ ...tokens, leewaySeconds: seconds(process.env.PROTOGUARD_JWT_LEEWAY) });
  const auth = createAuth({
    services: [ShopService],
    verifier,
    principals: await createPrincipalSource({ database }),
    lookupTimeoutMs: seconds(process.env.LOOKUP_TIMEOUT_MS),
  });
  const handler = connectNodeAdapter({ routes, interceptors: [auth.interceptor], requestGate: auth.requestGate });
  const server = await startServer({
    runtime: { database, keyring, verifier },
    routes,
    port: seconds(process.env.PORT),
    host: process.env.HOST,
    staticDir: process.env.STATIC_DIR,
    graceMs: seconds(process.env.GRACE_MS),
  });
  return { issuer, handler, server };
}
`;

const CHECK_TS = `import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { authErrorReason } from "protoguard";
import { ShopService } from "./gen/shop/v1/shop_pb.js";

const [baseUrl, token] = process.argv.slice(2);
if (baseUrl === undefined) throw new Error("usage: check.js URL [TOKEN]");
const transports: [string, Transport][] = [
  ["connect", createConnectTransport({ baseUrl, httpVersion: "2" })],
  ["grpc", createGrpcTransport({ baseUrl })],
];
const results: Record<string, string> = {};
for (const [protocol, transport] of transports) {
  const client = createClient(ShopService, transport);
  const headers: Record<string, string> = token === undefined ? {} : { authorization: "Bearer " + token };
  const calls: [string, () => Promise<unknown>][] = [
    ["listItems", () => client.listItems({}, { headers })],
    ["getCart", () => client.getCart({}, { headers })],
    ["updateItem", () => client.updateItem({ name: "pear" }, { headers })],
  ];
  for (const [method, call] of calls) {
    try {
      const answer = (await call()) as { names?: string[]; owner?: string; name?: string };
      results[protocol + "." + method] = "OK " + (answer.names?.join(",") ?? answer.owner ?? answer.name ?? "");
    } catch (error) {
      const e = ConnectError.from(error);
      results[protocol + "." + method] = Code[e.code] + " " + (authErrorReason(e) ?? "");
    }
  }
}
console.log(JSON.stringify(results));
`;

const SHOP_TEST_TS = `import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createTestAuth } from "protoguard/testing";
import { ShopService } from "./gen/shop/v1/shop_pb.js";
import { routes } from "./routes.js";

test("ShopService rules on the in-memory transport", async () => {
  const t = await createTestAuth({ routes });
  try {
    const client = createClient(ShopService, t.transport);
    assert.deepEqual((await client.listItems({})).names, ["apple", "anonymous"]);
    await assert.rejects(client.getCart({}), (e) => ConnectError.from(e).code === Code.Unauthenticated);
    const bob = await t.createUser({ username: "bob" });
    const editor = await t.createUser({ username: "editor", permissions: ["shop.change_item"] });
    assert.equal((await client.getCart({}, { headers: await t.authHeaders(bob) })).owner, "bob");
    await assert.rejects(
      client.updateItem({ name: "x" }, { headers: await t.authHeaders(bob) }),
      (e) => ConnectError.from(e).code === Code.PermissionDenied,
    );
    assert.equal((await client.updateItem({ name: "x" }, { headers: await t.authHeaders(editor) })).name, "x");
  } finally {
    await t.close();
  }
});
`;

/** Every bare package (and `node:` built-in) the module graph of `entry` (compiled ESM) reaches. */
async function packagesReached(entry: string): Promise<Set<string>> {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = await readFile(file, "utf8");
    for (const match of source.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*"([^"]+)"|import\("([^"]+)"\)/g)) {
      const specifier = match[1] ?? match[2]!;
      if (specifier.startsWith(".")) queue.push(resolve(dirname(file), specifier));
      else if (specifier.startsWith("node:")) packages.add(specifier);
      else {
        packages.add(specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!);
      }
    }
  }
  return packages;
}

describe("a new app installs the packed package and follows the README", { timeout: 900_000 }, () => {
  let work: string;
  let app: string;
  let tarball: string;
  let server: ChildProcess | undefined;
  const env = () => ({
    PROTOGUARD_DATA_DIR: join(app, ".data"),
    PROTOGUARD_JWT_SECRET: SECRET,
    PROTOGUARD_SCRYPT_LOG_N: "12",
  });

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "protoguard-consumer-"));
    app = join(work, "shop-app");
    await mkdir(join(app, "src"), { recursive: true });
    // npm pack runs prepack, which builds dist/ from src/.
    const packed = await ok("npm", ["pack", "--silent", "--pack-destination", work], REPO);
    tarball = join(work, packed.trim().split("\n").pop()!);
    await writeFile(
      join(app, "package.json"),
      JSON.stringify({ name: "shop-app", version: "1.0.0", private: true, type: "module" }, null, 2),
    );
    const peers = await Promise.all(
      ["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-node"].map(
        async (n) => `${n}@${await versionOf(n)}`,
      ),
    );
    const tools = await Promise.all(
      ["@bufbuild/buf", "@bufbuild/protoc-gen-es", "typescript", "@types/node"].map(
        async (n) => `${n}@${await versionOf(n)}`,
      ),
    );
    const npmFlags = ["--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"];
    await ok("npm", ["install", ...npmFlags, tarball, ...peers], app);
    await ok("npm", ["install", "-D", ...npmFlags, ...tools], app);
  });

  after(async () => {
    server?.kill("SIGKILL");
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it("ships compiled JavaScript, declarations, our protos and a LICENSE, and nothing else", async () => {
    const root = join(app, "node_modules", "protoguard");
    const top = (await readdir(root)).sort();
    assert.deepEqual(top, ["LICENSE", "README.md", "dist", "gen", "package.json", "proto", "src"]);
    assert.deepEqual(await readdir(join(root, "proto")), ["protoguard"]);
    assert.ok(
      existsSync(join(root, "dist/src/exports/protoguard.js")) &&
        existsSync(join(root, "dist/src/exports/protoguard.d.ts")),
    );
    for (const absent of [
      "test",
      "bench",
      "example",
      ".ci",
      "proto/grpc",
      "proto/google",
      "dist/example",
      "dist/test",
    ]) {
      assert.ok(!existsSync(join(root, absent)), `${absent} is in the package`);
    }
    const manifest = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as Record<
      string,
      Record<string, string>
    >;
    for (const runner of ["tsx", "typescript", "esbuild"]) assert.equal(manifest["dependencies"]?.[runner], undefined);
    for (const peer of ["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-node"]) {
      assert.equal(manifest["dependencies"]?.[peer], undefined, `${peer} is a dependency`);
      assert.ok(manifest["peerDependencies"]?.[peer], `${peer} is not a peer`);
    }
    // One copy of each peer in the app.
    assert.ok(!existsSync(join(root, "node_modules", "@connectrpc")));
    assert.ok(!existsSync(join(root, "node_modules", "@bufbuild")));
  });

  it("the main entry point loads no database driver, logger or metrics library; the client nothing of Node", async () => {
    const dist = join(app, "node_modules", "protoguard", "dist", "src");
    const main = await packagesReached(join(dist, "exports", "protoguard.js"));
    for (const heavy of ["@electric-sql/pglite", "postgres", "pino", "prom-client", "drizzle-orm"]) {
      assert.ok(!main.has(heavy), `protoguard loads ${heavy}`);
    }
    assert.ok(main.has("jose") && main.has("@connectrpc/connect"));
    // The library authors' entry point is as light: a store or transport of your own brings its own.
    const core = await packagesReached(join(dist, "exports", "core.js"));
    for (const heavy of ["@electric-sql/pglite", "postgres", "pino", "prom-client", "drizzle-orm"]) {
      assert.ok(!core.has(heavy), `protoguard/core loads ${heavy}`);
    }
    const store = await packagesReached(join(dist, "exports", "store.js"));
    assert.ok(store.has("drizzle-orm") && !store.has("pino") && !store.has("prom-client"));
    // The client session bundles for the browser: no Node built-in, nothing of the server.
    const client = [...(await packagesReached(join(dist, "exports", "client.js")))];
    assert.deepEqual(
      client.filter((p) => p.startsWith("node:") || p === "jose" || p === "pino"),
      [],
    );
  });

  it("init, then buf lint and buf generate are clean; tsc compiles the app under strict flags", async () => {
    const init = await ok("npx", ["--no-install", "protoguard", "init"], app);
    assert.match(init, /wrote buf\.yaml/);
    assert.match(init, /wrote buf\.gen\.yaml/);
    await mkdir(join(app, "proto", "shop", "v1"), { recursive: true });
    await writeFile(join(app, "proto", "shop", "v1", "shop.proto"), SHOP_PROTO);
    const lint = await run("npx", ["--no-install", "buf", "lint"], app);
    assert.equal(lint.code, 0, `buf lint:\n${lint.stdout}${lint.stderr}`);
    assert.equal(lint.stdout + lint.stderr, "");
    await ok("npx", ["--no-install", "buf", "generate"], app);
    const generated = await readFile(join(app, "src", "gen", "shop", "v1", "shop_pb.ts"), "utf8");
    assert.match(generated, /from "protoguard\/gen\/protoguard\/v1\/options_pb\.js"/);
    assert.ok(!existsSync(join(app, "src", "gen", "protoguard")), "protoguard's own files were generated into the app");
    // A second init leaves both files alone.
    assert.match(await ok("npx", ["--no-install", "protoguard", "init"], app), /set up already/);

    await writeFile(join(app, "tsconfig.json"), JSON.stringify(TSCONFIG, null, 2));
    await writeFile(join(app, "src", "routes.ts"), ROUTES_TS);
    await writeFile(join(app, "src", "server.ts"), SERVER_TS);
    await writeFile(join(app, "src", "check.ts"), CHECK_TS);
    await writeFile(join(app, "src", "shop.test.ts"), SHOP_TEST_TS);
    await writeFile(join(app, "src", "wiring.ts"), WIRING_TS);
    const tsc = await run("npx", ["--no-install", "tsc", "-p", "."], app);
    assert.equal(tsc.code, 0, `tsc:\n${tsc.stdout}${tsc.stderr}`);
  });

  it("the generated *_protoguard.ts type-checks without skipLibCheck (it reaches no driver's types)", async () => {
    await writeFile(
      join(app, "tsconfig.generated.json"),
      JSON.stringify({
        extends: "./tsconfig.json",
        // Connect's own declarations name fetch's HeadersInit: DOM's lib, whatever protoguard ships.
        compilerOptions: { skipLibCheck: false, noEmit: true, lib: ["ES2023", "DOM"] },
        include: ["src/gen/**/*_protoguard.ts"],
      }),
    );
    assert.ok(existsSync(join(app, "src", "gen", "shop", "v1", "shop_protoguard.ts")));
    const tsc = await run("npx", ["--no-install", "tsc", "-p", "tsconfig.generated.json"], app);
    assert.equal(tsc.code, 0, `tsc without skipLibCheck:\n${tsc.stdout}${tsc.stderr}`);
  });

  it("protoguard policy --check reads the app's Buf image and gates on unannotated methods", async () => {
    await ok("npx", ["--no-install", "buf", "build", "-o", "image.binpb"], app);
    const report = await ok("npx", ["--no-install", "protoguard", "policy", "--image", "image.binpb", "--check"], app);
    assert.match(report, /\/shop\.v1\.ShopService\/UpdateItem\s+unary\s+permissions: shop\.change_item\s+method/);
    await writeFile(
      join(app, "proto", "shop", "v1", "extra.proto"),
      'syntax = "proto3";\n\npackage shop.v1;\n\n// ExtraService forgot its rules.\nservice ExtraService {\n  // Unannotated.\n  rpc Ping(PingRequest) returns (PingResponse);\n}\n\n// PingRequest.\nmessage PingRequest {}\n\n// PingResponse.\nmessage PingResponse {}\n',
    );
    await ok("npx", ["--no-install", "buf", "build", "-o", "image2.binpb"], app);
    const failing = await run(
      "npx",
      ["--no-install", "protoguard", "policy", "--image", "image2.binpb", "--check"],
      app,
    );
    assert.equal(failing.code, 1);
    assert.match(failing.stderr, /\/shop\.v1\.ExtraService\/Ping has no rule/);
    await rm(join(app, "proto", "shop", "v1", "extra.proto"));
  });

  async function startApp(): Promise<string> {
    const child = spawn(process.execPath, ["dist/server.js"], { cwd: app, env: { ...process.env, ...env() } });
    server = child;
    let out = "";
    let err = "";
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
    return new Promise((done, fail) => {
      child.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const port = /PORT (\d+)/.exec(out)?.[1];
        if (port !== undefined) done(`http://127.0.0.1:${port}`);
      });
      child.on("exit", (code) => fail(new Error(`the app exited with ${code}:\n${out}\n${err}`)));
    });
  }

  async function stopApp(): Promise<void> {
    const child = server;
    if (child === undefined || child.exitCode !== null) return;
    await new Promise((done) => {
      child.once("exit", done);
      child.kill("SIGTERM");
    });
    server = undefined;
  }

  async function check(url: string, token?: string): Promise<Record<string, string>> {
    const args = token === undefined ? ["dist/check.js", url] : ["dist/check.js", url, token];
    return JSON.parse(await ok(process.execPath, args, app)) as Record<string, string>;
  }

  it("runs with plain node; Connect and gRPC clients see the rules; the installed CLI grants a permission", async () => {
    const cli = (...args: string[]) => ok("npx", ["--no-install", "protoguard", ...args], app, env());
    await cli("user", "create", "alice", "--password", "alice-password-123");
    const { access_token: token } = JSON.parse(await cli("token", "alice")) as { access_token: string };

    let url = await startApp();
    const anonymous = await check(url);
    const alice = await check(url, token);
    await stopApp();
    for (const protocol of ["connect", "grpc"]) {
      assert.equal(anonymous[`${protocol}.listItems`], "OK apple,anonymous");
      assert.equal(anonymous[`${protocol}.getCart`], "Unauthenticated TOKEN_MISSING");
      assert.equal(alice[`${protocol}.listItems`], "OK apple,alice");
      assert.equal(alice[`${protocol}.getCart`], "OK alice");
      assert.equal(alice[`${protocol}.updateItem`], "PermissionDenied PERMISSION_MISSING");
    }

    // The embedded database has one writer: grant while the app is stopped.
    await cli("user", "grant", "alice", "shop.change_item");
    url = await startApp();
    const granted = await check(url, token);
    await stopApp();
    for (const protocol of ["connect", "grpc"]) assert.equal(granted[`${protocol}.updateItem`], "OK pear");
  });

  it("the app's own protoguard/testing test passes on the in-memory transport", async () => {
    const ran = await run(process.execPath, ["--test", "dist/shop.test.js"], app);
    assert.equal(ran.code, 0, `${ran.stdout}\n${ran.stderr}`);
    assert.match(ran.stdout, /# pass 1/);
  });

  it("with a Connect older than requestGate (2.1), the app fails at start-up instead of running without the gate", async () => {
    // Last: it replaces the app's peers. --force: protoguard's peer range says no, which is the point.
    await ok(
      "npm",
      [
        "install",
        "--force",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        "@connectrpc/connect@2.1.2",
        "@connectrpc/connect-node@2.1.2",
      ],
      app,
    );
    const ran = await run(process.execPath, ["dist/server.js"], app, env());
    assert.notEqual(ran.code, 0);
    assert.match(ran.stderr, /protoguard needs @connectrpc\/connect and @connectrpc\/connect-node >= 2\.2\.0/);
  });
});
