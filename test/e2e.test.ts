// End to end: `protoguard serve` as its own process, set up and called only
// through real programs, as an operator and client authors would: the
// `protoguard` CLI for users and tokens, `buf curl` (Go's gRPC, gRPC-Web and
// Connect clients), @grpc/grpc-js (a second, independent gRPC stack), curl
// (Connect unary over HTTP/1.1), plain GET /metrics, and SIGTERM.
//
// The embedded PGlite database admits one process at a time, so every CLI
// step runs before `serve` starts. With DATABASE_URL set, the same steps run
// against a throwaway PostgreSQL database instead.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fromBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { eq } from "drizzle-orm";
import { SignJWT } from "jose";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { migrateExample } from "../example/migrate.js";
import { orders } from "../example/schema.js";
import { seedExample } from "../example/seed.js";
import { loadConfig } from "../src/runtime/config.js";
import { openRuntime } from "../src/runtime/runtime.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/database.js";
import { curlPath, postgresUrl, skipWithoutCurl } from "./helpers/env.js";
import { TEST_SECRET as SECRET } from "./helpers/secrets.js";

const root = join(import.meta.dirname, "..");
/**
 * The binary `npx buf` runs, called directly: npx itself costs about half a
 * second per call on these machines, and this file makes dozens of calls.
 */
const bufBin = join(root, "node_modules", ".bin", "buf");
const PASSWORD = {
  alice: "alice e2e password",
  editor: "editor e2e password",
  staff: "staff e2e password",
  admin: "admin e2e password",
};
const PROTOCOLS = ["grpc", "grpcweb", "connect"] as const;
type Protocol = (typeof PROTOCOLS)[number];

/** gRPC codes this file expects; buf curl exits with 8 × the code. */
const GRPC = { ok: 0, notFound: 5, permissionDenied: 7, unauthenticated: 16 } as const;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to its end; a non-zero exit is a result, not an error (only failing to start is). */
function run(file: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<Ran> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { cwd: root, env, timeout: 120_000, maxBuffer: 16 * 1024 * 1024, encoding: "utf8" },
      (error, stdout, stderr) => {
        if (error === null) return resolve({ code: 0, stdout, stderr });
        const code = (error as { code?: unknown }).code;
        if (typeof code === "number") return resolve({ code, stdout, stderr });
        reject(new Error(`${file} ${args.join(" ")} did not run: ${error.message}\n${stderr}`));
      },
    );
  });
}

/** Runs `items` through `fn`, at most `limit` at a time: buf curl processes on 2 cores. */
async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** The JSON error buf curl prints on stderr, with the ErrorInfo reason decoded from its details. */
interface BufError {
  code: string;
  message: string;
  reason: string | undefined;
}

function bufError(ran: Ran): BufError {
  let parsed: { code: string; message: string; details?: { type: string; value: string }[] };
  try {
    parsed = JSON.parse(ran.stderr) as typeof parsed;
  } catch {
    assert.fail(`buf curl exited ${ran.code} without a JSON error:\n${ran.stderr}`);
  }
  const info = parsed.details?.find((d) => d.type === "google.rpc.ErrorInfo");
  const reason = info === undefined ? undefined : fromBinary(ErrorInfoSchema, Buffer.from(info.value, "base64")).reason;
  return { code: parsed.code, message: parsed.message, reason };
}

/** buf curl prints streamed messages as consecutive pretty-printed JSON objects. */
function jsonMessages(stdout: string): Record<string, unknown>[] {
  const text = stdout.trim();
  return text === "" ? [] : (JSON.parse(`[${text.replace(/\}\s*\{/g, "},{")}]`) as Record<string, unknown>[]);
}

const curlBin = curlPath;
const databaseUrl = postgresUrl;

const backend = databaseUrl === undefined ? "PGlite" : "PostgreSQL";

describe(`protoguard serve end to end (${backend})`, { timeout: 300_000 }, () => {
  let dataDir: string;
  let testDatabase: TestDatabase | undefined;
  let env: NodeJS.ProcessEnv;
  let child: ChildProcess;
  let exited: Promise<unknown[]>;
  let out = "";
  let err = "";
  let url: string;
  let port: number;
  const ids = { alice: 0, editor: 0, staff: 0, admin: 0 };
  const tokens = { alice: "", editor: "", staff: "", expired: "" };
  /** Every token this file saw, to check none of them reached the server's output. */
  const seenTokens: string[] = [];
  let editorOrder: number;

  /** `protoguard <args>` as a process, as an operator types it; must succeed. */
  async function cli(...args: string[]): Promise<string> {
    const ran = await run(process.execPath, ["--import", "tsx", "example/cli.ts", ...args], env);
    assert.equal(ran.code, 0, `protoguard ${args.join(" ")} failed:\n${ran.stderr}`);
    return ran.stdout;
  }

  async function createUser(name: keyof typeof ids, ...flags: string[]): Promise<void> {
    const email = `${name}@example.com`;
    const stdout = await cli("user", "create", name, "--password", PASSWORD[name], "--email", email, ...flags);
    const id = /with id (\d+)/.exec(stdout)?.[1];
    assert.ok(id, stdout);
    ids[name] = Number(id);
  }

  async function issueToken(name: "alice" | "editor" | "staff"): Promise<void> {
    const printed = JSON.parse(await cli("token", name)) as { access_token: string; refresh_token: string };
    tokens[name] = printed.access_token;
    seenTokens.push(printed.access_token, printed.refresh_token);
  }

  /** `buf curl` with the checked-in schema; gRPC over h2c needs prior knowledge on a plaintext port. */
  function bufCurl(protocol: Protocol, method: string, options: { token?: string; data?: unknown } = {}): Promise<Ran> {
    const args = ["curl", "--schema", "proto", "--protocol", protocol];
    if (protocol === "grpc") args.push("--http2-prior-knowledge");
    if (options.token !== undefined) args.push("-H", `Authorization: Bearer ${options.token}`);
    args.push("-d", JSON.stringify(options.data ?? {}), `${url}/${method}`);
    return run(bufBin, args);
  }

  before(
    async () => {
      dataDir = await mkdtemp(join(tmpdir(), "protoguard-e2e-"));
      env = {
        ...process.env,
        PROTOGUARD_JWT_SECRET: SECRET,
        // Cheap password hashes: the cost is not what these tests are about.
        PROTOGUARD_SCRYPT_LOG_N: "12",
        PROTOGUARD_LOG_LEVEL: "info",
        // The reused refresh token below is refused at once, not answered inside the reuse
        // grace window (refresh-grace.test.ts covers the window).
        PROTOGUARD_REFRESH_REUSE_GRACE_S: "0",
      };
      delete env["PORT"];
      delete env["PROTOGUARD_HOST"];
      if (databaseUrl === undefined) {
        delete env["DATABASE_URL"];
        env["PROTOGUARD_DATA_DIR"] = dataDir;
      } else {
        testDatabase = await createTestDatabase({ url: databaseUrl });
        env["DATABASE_URL"] = testDatabase.url;
      }

      await createUser("alice");
      await createUser("editor");
      await cli("user", "grant", "editor", "products.change_product");
      await createUser("staff", "--staff");
      await createUser("admin", "--superuser");
      for (const name of ["alice", "editor", "staff"] as const) await issueToken(name);

      // Orders have no CLI: they are example data. Seed them the way serve
      // does, through the same configuration, so editor owns some.
      const runtime = await openRuntime(loadConfig(env));
      try {
        await migrateExample(runtime.database);
        await seedExample(runtime.database.db, { orderOwners: [ids.editor] });
        const [order] = await runtime.database.db.select().from(orders).where(eq(orders.userId, ids.editor)).limit(1);
        assert.ok(order, "no order was seeded for editor");
        editorOrder = order.id;
      } finally {
        await runtime.close();
      }

      // What djangorestframework-simplejwt would have issued five minutes
      // ago with the same secret: no kid, its claim names, expired.
      const now = Math.floor(Date.now() / 1000);
      const claims = { token_type: "access", user_id: ids.alice, jti: randomBytes(16).toString("hex") };
      tokens.expired = await new SignJWT(claims)
        .setProtectedHeader({ alg: "HS256", typ: "JWT" })
        .setIssuedAt(now - 900)
        .setExpirationTime(now - 600)
        .sign(new TextEncoder().encode(SECRET));
      seenTokens.push(tokens.expired);

      // Port 0: the server picks a free port and prints its URL, so no
      // other process can take the port between choosing and binding it.
      child = spawn(process.execPath, ["--import", "tsx", "example/cli.ts", "serve", "--port", "0"], {
        cwd: root,
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      exited = once(child, "exit");
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
      const started = Date.now();
      let match: RegExpExecArray | null = null;
      while ((match = /serving on (http:\/\/127\.0\.0\.1:(\d+))/.exec(out)) === null) {
        if (child.exitCode !== null) assert.fail(`serve exited with ${child.exitCode}:\n${out}\n${err}`);
        if (Date.now() - started > 120_000) assert.fail(`serve printed no URL in 120 s:\n${out}\n${err}`);
        await sleep(100);
      }
      url = match[1]!;
      port = Number(match[2]);
    },
    { timeout: 280_000 },
  );

  after(async () => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
    await testDatabase?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("buf curl over gRPC, gRPC-Web and Connect: allows, refuses with the right code, and explains why", async () => {
    interface Case {
      name: string;
      method: string;
      token?: string;
      data?: unknown;
      code: number;
      check: (ran: Ran) => void;
    }
    const refused = (code: string, reason: string | undefined, message?: RegExp) => (ran: Ran) => {
      const error = bufError(ran);
      assert.equal(error.code, code);
      if (reason !== undefined) assert.equal(error.reason, reason);
      if (message !== undefined) assert.match(error.message, message);
      assert.equal(ran.stdout.trim(), "", "a refused call printed a response");
    };
    const cases: Case[] = [
      {
        name: "public GetProduct without a token",
        method: "example.v1.ProductService/GetProduct",
        data: { productId: 1 },
        code: GRPC.ok,
        check: (ran) =>
          assert.deepEqual(JSON.parse(ran.stdout), { id: 1, name: "Espresso machine", priceCents: "24900" }),
      },
      {
        name: "GetProfile with a CLI token",
        method: "example.v1.AccountService/GetProfile",
        token: tokens.alice,
        code: GRPC.ok,
        check: (ran) =>
          assert.deepEqual(JSON.parse(ran.stdout), { id: ids.alice, username: "alice", email: "alice@example.com" }),
      },
      {
        name: "GetProfile without a token",
        method: "example.v1.AccountService/GetProfile",
        code: GRPC.unauthenticated,
        check: refused("unauthenticated", "TOKEN_MISSING"),
      },
      {
        name: "GetProfile with an expired simplejwt-style token",
        method: "example.v1.AccountService/GetProfile",
        token: tokens.expired,
        code: GRPC.unauthenticated,
        check: refused("unauthenticated", "TOKEN_EXPIRED", /expired/),
      },
      {
        name: "UpdateProduct without products.change_product",
        method: "example.v1.ProductService/UpdateProduct",
        token: tokens.alice,
        data: { productId: 1, name: "Not yours to rename" },
        code: GRPC.permissionDenied,
        check: refused("permission_denied", "PERMISSION_MISSING"),
      },
      {
        name: "ListUsers by a user who is not staff",
        method: "example.v1.AdminService/ListUsers",
        token: tokens.alice,
        code: GRPC.permissionDenied,
        check: refused("permission_denied", "STAFF_REQUIRED"),
      },
      {
        name: "DeleteUser by staff who is not superuser",
        method: "example.v1.AdminService/DeleteUser",
        token: tokens.staff,
        data: { userId: ids.alice },
        code: GRPC.permissionDenied,
        check: refused("permission_denied", "SUPERUSER_REQUIRED"),
      },
      {
        name: "UpdateOrder of someone else's order (the rule's condition over the loaded order)",
        method: "example.v1.OrderService/UpdateOrder",
        token: tokens.alice,
        data: { orderId: editorOrder, note: "mine now" },
        code: GRPC.permissionDenied,
        check: refused("permission_denied", "CONDITION_FAILED", /^you can only update your own orders$/),
      },
    ];
    const runs = PROTOCOLS.flatMap((protocol) => cases.map((c) => ({ protocol, c })));
    const results = await pool(runs, 3, async ({ protocol, c }) => ({
      protocol,
      c,
      ran: await bufCurl(protocol, c.method, { ...(c.token !== undefined && { token: c.token }), data: c.data }),
    }));
    for (const { protocol, c, ran } of results) {
      const label = `${c.name} over ${protocol}`;
      assert.equal(ran.code, 8 * c.code, `${label}: exit ${ran.code}\n${ran.stdout}${ran.stderr}`);
      try {
        c.check(ran);
      } catch (error) {
        throw new Error(`${label}: ${(error as Error).message}`, { cause: error });
      }
    }
    // The refused rename did not happen on any protocol.
    const product = await bufCurl("connect", "example.v1.ProductService/GetProduct", { data: { productId: 1 } });
    assert.equal((JSON.parse(product.stdout) as { name: string }).name, "Espresso machine");
  });

  it("buf curl streams WatchNotifications over all three protocols, and refuses an anonymous stream", async () => {
    const results = await Promise.all([
      ...PROTOCOLS.map((protocol) =>
        bufCurl(protocol, "example.v1.AccountService/WatchNotifications", { token: tokens.alice }),
      ),
      bufCurl("grpc", "example.v1.AccountService/WatchNotifications"),
    ]);
    for (const [index, protocol] of PROTOCOLS.entries()) {
      const ran = results[index]!;
      assert.equal(ran.code, 0, `${protocol}: ${ran.stderr}`);
      const messages = jsonMessages(ran.stdout);
      assert.deepEqual(
        messages.map((m) => m["sequence"]),
        [1, 2, 3, 4, 5],
        `${protocol}: ${ran.stdout}`,
      );
      assert.equal(messages[0]!["text"], "notification 1 of 5 for alice");
      assert.equal(typeof messages[0]!["sentAt"], "string");
    }
    const anonymous = results[PROTOCOLS.length]!;
    assert.equal(anonymous.code, 8 * GRPC.unauthenticated, anonymous.stderr);
    assert.equal(bufError(anonymous).reason, "TOKEN_MISSING");
    assert.equal(anonymous.stdout.trim(), "", "an anonymous stream received messages");
  });

  it("@grpc/grpc-js: unary with authorization metadata, UNAUTHENTICATED without, the server stream, health", async () => {
    const definition = protoLoader.loadSync(["example/v1/account.proto", "grpc/health/v1/health.proto"], {
      includeDirs: [join(root, "proto")],
      enums: String,
      longs: String,
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      example: { v1: { AccountService: grpc.ServiceClientConstructor } };
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    const address = `127.0.0.1:${port}`;
    const account = new loaded.example.v1.AccountService(address, grpc.credentials.createInsecure());
    const health = new loaded.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
    type Unary = (
      req: object,
      metadata: grpc.Metadata,
      cb: (err: grpc.ServiceError | null, res?: Record<string, unknown>) => void,
    ) => void;
    const unary = (client: grpc.Client, method: string, req: object, token?: string) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const metadata = new grpc.Metadata();
        if (token !== undefined) metadata.set("authorization", `Bearer ${token}`);
        (client[method as keyof grpc.Client] as unknown as Unary).call(client, req, metadata, (error, res) =>
          error ? reject(error) : resolve(res!),
        );
      });
    try {
      const profile = await unary(account, "GetProfile", {}, tokens.editor);
      assert.equal(profile["username"], "editor");
      assert.equal(profile["id"], ids.editor);
      assert.deepEqual(profile["permissions"], ["products.change_product"]);

      await assert.rejects(unary(account, "GetProfile", {}), (error: grpc.ServiceError) => {
        assert.equal(error.code, grpc.status.UNAUTHENTICATED);
        assert.equal(error.details, "authentication required");
        return true;
      });
      await assert.rejects(unary(account, "GetProfile", {}, tokens.expired), (error: grpc.ServiceError) => {
        assert.equal(error.code, grpc.status.UNAUTHENTICATED);
        assert.match(error.details, /expired/);
        return true;
      });

      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${tokens.alice}`);
      type ServerStream = (req: object, metadata: grpc.Metadata) => grpc.ClientReadableStream<Record<string, unknown>>;
      const stream = (account["WatchNotifications" as keyof grpc.Client] as unknown as ServerStream).call(
        account,
        {},
        metadata,
      );
      const sequences: unknown[] = [];
      for await (const message of stream as AsyncIterable<Record<string, unknown>>) {
        sequences.push(message["sequence"]);
        assert.match(String(message["text"]), /for alice$/);
      }
      assert.deepEqual(sequences, [1, 2, 3, 4, 5]);

      assert.deepEqual(await unary(health, "Check", { service: "" }), { status: "SERVING" });
      assert.deepEqual(await unary(health, "Check", { service: "example.v1.AccountService" }), { status: "SERVING" });
    } finally {
      account.close();
      health.close();
    }
  });

  it("curl speaks Connect over HTTP/1.1: 401 and 403 JSON errors, 200 answers", {
    ...(skipWithoutCurl !== undefined && { skip: skipWithoutCurl }),
  }, async () => {
    /** One Connect unary call; the last line curl writes is the HTTP version and status. */
    const post = async (method: string, data: unknown, token?: string) => {
      const args = ["--silent", "--show-error", "--http1.1", "-H", "content-type: application/json"];
      if (token !== undefined) args.push("-H", `authorization: Bearer ${token}`);
      args.push("-d", JSON.stringify(data), "-w", "\n%{http_version} %{http_code}", `${url}/${method}`);
      const ran = await run(curlBin!, args);
      assert.equal(ran.code, 0, ran.stderr);
      const newline = ran.stdout.lastIndexOf("\n");
      const [version, status] = ran.stdout.slice(newline + 1).split(" ");
      assert.equal(version, "1.1");
      return { status: Number(status), body: JSON.parse(ran.stdout.slice(0, newline)) as Record<string, unknown> };
    };
    const [anonymous, denied, renamed, listed] = await Promise.all([
      post("example.v1.AccountService/GetProfile", {}),
      post("example.v1.ProductService/UpdateProduct", { productId: 2, name: "Nope" }, tokens.alice),
      post("example.v1.ProductService/UpdateProduct", { productId: 3, name: "Steel milk jug" }, tokens.editor),
      post("example.v1.AdminService/ListUsers", {}, tokens.staff),
    ]);
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body["code"], "unauthenticated");
    assert.equal(anonymous.body["message"], "authentication required");
    assert.equal(denied.status, 403);
    assert.equal(denied.body["code"], "permission_denied");
    assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
    assert.deepEqual(renamed.body, { id: 3, name: "Steel milk jug", priceCents: "1499" });
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    const names = (listed.body["users"] as { username: string }[]).map((u) => u.username);
    assert.deepEqual(names, ["alice", "editor", "staff", "admin"]);
  });

  it("reflection lists the served services and health answers SERVING, both through buf curl", async () => {
    const [listed, checked] = await Promise.all([
      run(bufBin, ["curl", "--list-services", "--protocol", "grpc", "--http2-prior-knowledge", url]),
      // No --schema: the request is described by the server's reflection.
      run(bufBin, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", `${url}/grpc.health.v1.Health/Check`]),
    ]);
    assert.equal(listed.code, 0, listed.stderr);
    const services = listed.stdout.trim().split("\n");
    for (const service of [
      "example.v1.AccountService",
      "example.v1.AdminService",
      "example.v1.OrderService",
      "example.v1.ProductService",
      "example.v1.UserService",
      "protoguard.v1.AuthService",
      "grpc.health.v1.Health",
    ]) {
      assert.ok(services.includes(service), `${service} is not listed:\n${listed.stdout}`);
    }
    assert.equal(checked.code, 0, checked.stderr);
    assert.deepEqual(JSON.parse(checked.stdout), { status: "SERVING" });
  });

  it("Login through buf curl hands out tokens that work; Refresh rotates them and refuses a reused one", async () => {
    const wrong = await bufCurl("connect", "protoguard.v1.AuthService/Login", {
      data: { username: "admin", password: "not the password" },
    });
    assert.equal(wrong.code, 8 * GRPC.unauthenticated, wrong.stderr);
    assert.equal(bufError(wrong).message, "invalid credentials");

    const login = await bufCurl("grpc", "protoguard.v1.AuthService/Login", {
      data: { username: "admin", password: PASSWORD.admin },
    });
    assert.equal(login.code, 0, login.stderr);
    const session = JSON.parse(login.stdout) as {
      accessToken: string;
      refreshToken: string;
      user: { id: number; username: string };
    };
    seenTokens.push(session.accessToken, session.refreshToken);
    assert.deepEqual(session.user, { id: ids.admin, username: "admin", email: "admin@example.com" });

    const refresh = await bufCurl("grpcweb", "protoguard.v1.AuthService/Refresh", {
      data: { refreshToken: session.refreshToken },
    });
    assert.equal(refresh.code, 0, refresh.stderr);
    const rotated = JSON.parse(refresh.stdout) as { accessToken: string; refreshToken: string };
    seenTokens.push(rotated.accessToken, rotated.refreshToken);
    assert.notEqual(rotated.refreshToken, session.refreshToken);
    assert.notEqual(rotated.accessToken, session.accessToken);

    // The refreshed access token carries the superuser through DeleteUser's
    // rule: the handler answers, NOT_FOUND for an id nobody has.
    const [whoami, deleteUnknown] = await Promise.all([
      bufCurl("connect", "protoguard.v1.AuthService/WhoAmI", { token: rotated.accessToken }),
      bufCurl("grpc", "example.v1.AdminService/DeleteUser", { token: rotated.accessToken, data: { userId: 999_999 } }),
    ]);
    assert.equal(whoami.code, 0, whoami.stderr);
    const me = JSON.parse(whoami.stdout) as { user: { username: string }; isStaff: boolean; isSuperuser: boolean };
    assert.equal(me.user.username, "admin");
    assert.equal(me.isSuperuser, true);
    assert.equal(deleteUnknown.code, 8 * GRPC.notFound, deleteUnknown.stderr);
    assert.equal(bufError(deleteUnknown).code, "not_found");

    // The first refresh token was used once already: presenting it again is
    // what a thief would do, and is refused.
    const reused = await bufCurl("connect", "protoguard.v1.AuthService/Refresh", {
      data: { refreshToken: session.refreshToken },
    });
    assert.equal(reused.code, 8 * GRPC.unauthenticated, reused.stderr);
    assert.equal(bufError(reused).code, "unauthenticated");
  });

  it("GET /metrics counts the decisions of the calls just made, by outcome and reason", async () => {
    const decisions = async () => {
      const response = await fetch(`${url}/metrics`);
      assert.equal(response.status, 200);
      assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
      const counts = new Map<string, number>();
      for (const line of (await response.text()).split("\n")) {
        const match = /^protoguard_auth_decisions_total\{(.*)\} (\d+(?:\.\d+)?)$/.exec(line);
        if (match) counts.set(match[1]!, Number(match[2]));
      }
      return counts;
    };
    const series = (method: string, outcome: string, reason: string) =>
      `method="/${method}",outcome="${outcome}",reason="${reason}"`;
    const profile = "example.v1.AccountService/GetProfile";
    const update = "example.v1.ProductService/UpdateProduct";

    const initial = await decisions();
    // The calls made by the earlier tests of this file are counted already.
    assert.ok((initial.get(series(profile, "deny", "TOKEN_EXPIRED")) ?? 0) > 0, [...initial.keys()].join("\n"));

    const call = (method: string, data: unknown, token?: string) =>
      fetch(`${url}/${method}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(token !== undefined && { authorization: `Bearer ${token}` }),
        },
        body: JSON.stringify(data),
      }).then((r) => r.status);
    assert.deepEqual(
      [
        await call(profile, {}),
        await call(profile, {}),
        await call(profile, {}, tokens.alice),
        await call(update, { productId: 1, name: "x" }, tokens.alice),
      ],
      [401, 401, 200, 403],
    );
    const afterCalls = await decisions();
    const delta = (key: string) => (afterCalls.get(key) ?? 0) - (initial.get(key) ?? 0);
    assert.equal(delta(series(profile, "deny", "TOKEN_MISSING")), 2);
    assert.equal(delta(series(profile, "allow", "none")), 1);
    assert.equal(delta(series(update, "deny", "PERMISSION_MISSING")), 1);
  });

  it("stops on SIGTERM with exit code 0, having logged no token", async () => {
    child.kill("SIGTERM");
    const [code, signal] = await exited;
    assert.equal(signal, null);
    assert.equal(code, 0, err);
    assert.match(out, /SIGTERM received, finishing in-flight calls/);
    assert.match(out, /"msg":"protoguard stopped"/);
    const output = out + err;
    for (const token of seenTokens) {
      assert.ok(!output.includes(token.split(".")[2]!), "a token's signature appears in the server's output");
    }
  });
});
