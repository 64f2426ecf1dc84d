// The assembled server (startServer + the example services) over real HTTP:
// Connect JSON over HTTP/1.1 with fetch, gRPC over h2c with connect-node,
// /metrics, JWKS, logs; and `protoguard serve` as a child process.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, createClient, createConnectRouter } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { AccountService } from "../gen/example/v1/account_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { MalformedService } from "../gen/guardtest/v1/malformed_pb.js";
import { eq } from "drizzle-orm";
import { migrateExample } from "../example/migrate.js";
import { orders, products } from "../example/schema.js";
import { seedExample } from "../example/seed.js";
import { exampleResources, exampleRoutes } from "../example/services.js";
import {
  createKeyring,
  createTokenIssuer,
  createTokenVerifier,
  PolicyError,
  type Keyring,
  type TokenIssuer,
  type TokenVerifier,
} from "../src/exports/protoguard.js";
import {
  createUser,
  grantUserPermissions,
  openDatabase,
  type Database,
  type PublicUser,
} from "../src/exports/store.js";
import { createPasswordHasher } from "../src/exports/auth-service.js";
import { servedRoutes, servedServices } from "../src/cli/serve.js";
import exampleApp from "../example/app.js";

const SERVED_SERVICES = servedServices(exampleApp);
import { loadConfig } from "../src/runtime/config.js";
import { startServer, type RunningServer } from "../src/server/serve.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/database.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";
import { failure } from "./helpers/connect.js";
import { TEST_SECRET as SECRET } from "./helpers/secrets.js";

const root = join(import.meta.dirname, "..");

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

/** Connect unary with JSON over HTTP/1.1, as curl or a browser sends it. */
async function post(baseUrl: string, path: string, message: unknown, token?: string): Promise<Reply> {
  const response = await fetch(`${baseUrl}/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token !== undefined && { authorization: `Bearer ${token}` }) },
    body: JSON.stringify(message),
  });
  const text = await response.text();
  return { status: response.status, body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

describe("startServer with the example services", () => {
  let database: TestDatabase;
  let keyring: Keyring;
  let issuer: TokenIssuer;
  let verifier: TokenVerifier;
  let server: RunningServer;
  let url: string;
  const logLines: string[] = [];
  const users: Record<"admin" | "staff" | "editor" | "alice" | "bob", PublicUser> = {} as never;
  const tokens: Record<keyof typeof users, string> = {} as never;
  let aliceOrder: number;
  /** A Connect JSON call to an example.v1 method of the main server. */
  const call = (path: string, message: unknown, token?: string) => post(url, `example.v1.${path}`, message, token);

  before(async () => {
    database = await createTestDatabase();
    await migrateExample(database);
    keyring = await createKeyring([{ alg: "HS256", secret: SECRET }]);
    issuer = createTokenIssuer({ keyring });
    verifier = createTokenVerifier({ keyring });
    const db = database.db;
    users.admin = await createUser(db, {
      username: "admin",
      email: "admin@example.com",
      isStaff: true,
      isSuperuser: true,
    });
    users.staff = await createUser(db, { username: "staff", email: "staff@example.com", isStaff: true });
    users.editor = await createUser(db, { username: "editor", email: "editor@example.com" });
    users.alice = await createUser(db, { username: "alice", email: "alice@example.com" });
    users.bob = await createUser(db, { username: "bob", email: "bob@example.com" });
    await grantUserPermissions(db, "editor", ["products.change_product"]);
    await seedExample(db, { orderOwners: [users.alice.id] });
    for (const name of Object.keys(users) as (keyof typeof users)[]) {
      tokens[name] = (await issuer.issueAccess(users[name].id)).token;
    }
    const logStream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logLines.push(
          ...chunk
            .toString("utf8")
            .split("\n")
            .filter((line) => line !== ""),
        );
        callback();
      },
    });
    server = await startServer({
      runtime: { database, keyring, verifier },
      routes: exampleRoutes({ database, notificationCount: 3, notificationIntervalMs: 20 }),
      resources: exampleResources({ database }),
      port: 0,
      logger: pino({ level: "info" }, logStream),
      graceMs: 2000,
    });
    url = server.url;
    const [order] = await db.select().from(orders).where(eq(orders.userId, users.alice.id)).limit(1);
    aliceOrder = order!.id;
  });

  after(async () => {
    await server?.close();
    await database?.close();
  });

  it("serves what `protoguard serve` serves: the example services and AuthService", () => {
    const runtime = {
      config: loadConfig({}),
      database,
      keyring,
      issuer,
      verifier,
      passwordHasher: createPasswordHasher({ scrypt: { logN: 10 } }),
      close: async () => {},
    };
    const router = createConnectRouter();
    servedRoutes(runtime, exampleApp)(router);
    const registered = [...new Set(router.handlers.map((h) => h.service.typeName))];
    assert.deepEqual(
      registered,
      SERVED_SERVICES.map((s) => s.typeName),
    );
  });

  describe("UserService.GetUser (public)", () => {
    it("answers anonymous callers with an empty viewer and no email", async () => {
      const reply = await call("UserService/GetUser", { userId: users.alice.id });
      assert.equal(reply.status, 200);
      assert.deepEqual(reply.body, { user: { id: users.alice.id, username: "alice" } });
    });
    it("names the identified caller, who sees their own email", async () => {
      const reply = await call("UserService/GetUser", { userId: users.alice.id }, tokens.alice);
      assert.deepEqual(reply.body, {
        user: { id: users.alice.id, username: "alice", email: "alice@example.com" },
        viewer: "alice",
      });
    });
    it("shows another user's email to staff only", async () => {
      const byBob = await call("UserService/GetUser", { userId: users.alice.id }, tokens.bob);
      assert.deepEqual(byBob.body, { user: { id: users.alice.id, username: "alice" }, viewer: "bob" });
      const byStaff = await call("UserService/GetUser", { userId: users.alice.id }, tokens.staff);
      assert.equal((byStaff.body["user"] as { email: string }).email, "alice@example.com");
    });
    it("still refuses an invalid token on a public method", async () => {
      const reply = await call("UserService/GetUser", { userId: 1 }, `${tokens.alice.slice(0, -4)}AAAA`);
      assert.equal(reply.status, 401);
      assert.equal(reply.body["code"], "unauthenticated");
    });
    it("answers NOT_FOUND for an unknown user", async () => {
      const reply = await call("UserService/GetUser", { userId: 999_999 });
      assert.equal(reply.status, 404);
      assert.equal(reply.body["code"], "not_found");
    });
  });

  describe("ProductService", () => {
    it("GetProduct is public", async () => {
      const reply = await call("ProductService/GetProduct", { productId: 1 });
      assert.equal(reply.status, 200);
      assert.deepEqual(reply.body, { id: 1, name: "Espresso machine", priceCents: "24900" });
    });
    it("UpdateProduct needs a token", async () => {
      const reply = await call("ProductService/UpdateProduct", { productId: 1, name: "x" });
      assert.equal(reply.status, 401);
      assert.equal(reply.body["code"], "unauthenticated");
    });
    it("UpdateProduct needs products.change_product", async () => {
      const reply = await call("ProductService/UpdateProduct", { productId: 1, name: "x" }, tokens.alice);
      assert.equal(reply.status, 403);
      assert.equal(reply.body["code"], "permission_denied");
    });
    it("UpdateProduct renames for a holder of the permission", async () => {
      const reply = await post(
        url,
        "example.v1.ProductService/UpdateProduct",
        { productId: 2, name: "Conical burr grinder" },
        tokens.editor,
      );
      assert.equal(reply.status, 200);
      assert.equal(reply.body["name"], "Conical burr grinder");
      const read = await call("ProductService/GetProduct", { productId: 2 });
      assert.equal(read.body["name"], "Conical burr grinder");
    });
    it("UpdateProduct of an unknown product is NOT_FOUND, a blank name INVALID_ARGUMENT", async () => {
      const unknown = await call("ProductService/UpdateProduct", { productId: 404, name: "y" }, tokens.editor);
      assert.equal(unknown.body["code"], "not_found");
      const blank = await call("ProductService/UpdateProduct", { productId: 1, name: "  " }, tokens.editor);
      assert.equal(blank.body["code"], "invalid_argument");
    });
  });

  describe("AccountService (service rule: authenticated)", () => {
    it("GetProfile refuses anonymous callers", async () => {
      const reply = await call("AccountService/GetProfile", {});
      assert.equal(reply.status, 401);
    });
    it("GetProfile returns the caller with effective permissions", async () => {
      const reply = await call("AccountService/GetProfile", {}, tokens.editor);
      assert.deepEqual(reply.body, {
        id: users.editor.id,
        username: "editor",
        email: "editor@example.com",
        permissions: ["products.change_product"],
      });
      const admin = await call("AccountService/GetProfile", {}, tokens.admin);
      assert.equal(admin.body["isStaff"], true);
      assert.equal(admin.body["isSuperuser"], true);
    });
    it("UpdateProfile changes the email, and the next GetProfile sees it", async () => {
      const reply = await call("AccountService/UpdateProfile", { email: "bob@new.example" }, tokens.bob);
      assert.equal(reply.status, 200);
      assert.equal(reply.body["email"], "bob@new.example");
      // The cached principal is dropped by the database's notification, which arrives asynchronously.
      let seen: unknown;
      for (let i = 0; i < 50 && seen !== "bob@new.example"; i++) {
        seen = (await call("AccountService/GetProfile", {}, tokens.bob)).body["email"];
        if (seen !== "bob@new.example") await sleep(20);
      }
      assert.equal(seen, "bob@new.example");
      const bad = await call("AccountService/UpdateProfile", { email: "not an address" }, tokens.bob);
      assert.equal(bad.body["code"], "invalid_argument");
    });
    it("WatchNotifications streams to the caller over gRPC (h2c), and refuses anonymous callers", async () => {
      const client = createClient(AccountService, createGrpcTransport({ baseUrl: url }));
      const received: { sequence: number; text: string }[] = [];
      for await (const message of client.watchNotifications(
        {},
        { headers: { authorization: `Bearer ${tokens.alice}` } },
      )) {
        assert.ok(message.sentAt !== undefined);
        received.push({ sequence: message.sequence, text: message.text });
      }
      assert.deepEqual(
        received.map((m) => m.sequence),
        [1, 2, 3],
      );
      assert.match(received[0]!.text, /alice/);
      const refused = await failure(
        (async () => {
          for await (const _ of client.watchNotifications({})) assert.fail("a message reached an anonymous caller");
        })(),
      );
      assert.equal(refused.code, Code.Unauthenticated);
    });
    it("GetProfile over gRPC (h2c) too", async () => {
      const client = createClient(AccountService, createGrpcTransport({ baseUrl: url }));
      const profile = await client.getProfile({}, { headers: { authorization: `Bearer ${tokens.alice}` } });
      assert.equal(profile.username, "alice");
      assert.equal((await failure(client.getProfile({}))).code, Code.Unauthenticated);
    });
  });

  describe("AdminService", () => {
    it("ListUsers: staff only", async () => {
      assert.equal((await call("AdminService/ListUsers", {})).status, 401);
      assert.equal((await call("AdminService/ListUsers", {}, tokens.alice)).status, 403);
      const reply = await call("AdminService/ListUsers", {}, tokens.staff);
      assert.equal(reply.status, 200);
      const names = (reply.body["users"] as { username: string }[]).map((u) => u.username);
      assert.deepEqual(names, ["admin", "staff", "editor", "alice", "bob"]);
    });
    it("DeleteUser: superuser only; unknown id NOT_FOUND; not oneself", async () => {
      const byStaff = await call("AdminService/DeleteUser", { userId: users.bob.id }, tokens.staff);
      assert.equal(byStaff.status, 403);
      assert.equal(byStaff.body["code"], "permission_denied");
      const unknown = await call("AdminService/DeleteUser", { userId: 999_999 }, tokens.admin);
      assert.equal(unknown.body["code"], "not_found");
      const self = await call("AdminService/DeleteUser", { userId: users.admin.id }, tokens.admin);
      assert.equal(self.body["code"], "failed_precondition");
      const ok = await call("AdminService/DeleteUser", { userId: users.bob.id }, tokens.admin);
      assert.equal(ok.status, 200);
      // Bob's token now names a user that does not exist.
      let status = 200;
      for (let i = 0; i < 50 && status === 200; i++) {
        status = (await call("AccountService/GetProfile", {}, tokens.bob)).status;
        if (status === 200) await sleep(20);
      }
      assert.equal(status, 401);
    });
  });

  describe("OrderService.UpdateOrder (owner or staff: a condition over the loaded order)", () => {
    it("lets the owner update", async () => {
      const reply = await call("OrderService/UpdateOrder", { orderId: aliceOrder, note: "ring twice" }, tokens.alice);
      assert.equal(reply.status, 200);
      assert.deepEqual(reply.body["order"], { id: aliceOrder, userId: users.alice.id, note: "ring twice" });
    });
    it("refuses another user with the rule's condition_message", async () => {
      const reply = await call("OrderService/UpdateOrder", { orderId: aliceOrder, note: "mine now" }, tokens.editor);
      assert.equal(reply.status, 403);
      assert.equal(reply.body["code"], "permission_denied");
      assert.equal(reply.body["message"], "you can only update your own orders");
    });
    it("lets staff update anyone's order", async () => {
      const reply = await call("OrderService/UpdateOrder", { orderId: aliceOrder, note: "checked" }, tokens.staff);
      assert.equal(reply.status, 200);
    });
    it("refuses an unknown order like somebody else's (no probing ids), and UNAUTHENTICATED without a token", async () => {
      const unknown = await call("OrderService/UpdateOrder", { orderId: 424_242, note: "" }, tokens.alice);
      assert.equal(unknown.status, 403);
      assert.equal(unknown.body["message"], "you can only update your own orders");
      const unknownForStaff = await call("OrderService/UpdateOrder", { orderId: 424_242, note: "" }, tokens.staff);
      assert.equal(unknownForStaff.status, 403);
      const anonymous = await call("OrderService/UpdateOrder", { orderId: aliceOrder, note: "" });
      assert.equal(anonymous.status, 401);
    });
  });

  it("serves gRPC health without the auth layer, even with a bad token", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl: url }));
    const answer = await client.check(
      { service: "example.v1.OrderService" },
      { headers: { authorization: "Bearer junk" } },
    );
    assert.equal(answer.status, HealthCheckResponse_ServingStatus.SERVING);
  });

  it("answers 404 for JWKS with an HS256 keyring, and for unknown paths", async () => {
    assert.equal((await fetch(`${url}/.well-known/jwks.json`)).status, 404);
    assert.equal((await fetch(`${url}/nothing/here`)).status, 404);
  });

  it("counts the decisions just made in /metrics", async () => {
    const response = await fetch(`${url}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
    const text = await response.text();
    const value = (labels: string) => {
      const line = text.split("\n").find((l) => l.startsWith(`protoguard_auth_decisions_total{${labels}}`));
      return line === undefined ? 0 : Number(line.split(" ").at(-1));
    };
    const update = 'method="/example.v1.ProductService/UpdateProduct"';
    assert.equal(value(`${update},outcome="deny",reason="TOKEN_MISSING"`), 1);
    assert.equal(value(`${update},outcome="deny",reason="PERMISSION_MISSING"`), 1);
    assert.equal(value(`${update},outcome="allow",reason="none"`), 3);
    assert.equal(value('method="/example.v1.AdminService/DeleteUser",outcome="deny",reason="SUPERUSER_REQUIRED"'), 1);
    assert.equal(value('method="/example.v1.UserService/GetUser",outcome="deny",reason="TOKEN_INVALID"'), 1);
    assert.match(text, /protoguard_auth_decision_seconds_bucket\{le="0.001",outcome="allow"\} \d+/);
    assert.match(text, /process_cpu_user_seconds_total/);
    // Health is not behind the auth layer, so it is never counted as a decision.
    assert.doesNotMatch(text, /grpc\.health/);
  });

  it("logs every decision as JSON, and never a token", async () => {
    const records = logLines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const decisions = records.filter((r) => r["msg"] === "auth decision");
    assert.ok(decisions.length > 20);
    const denied = decisions.find(
      (r) => r["method"] === "/example.v1.AdminService/ListUsers" && r["reason"] === "STAFF_REQUIRED",
    );
    assert.ok(denied, "the STAFF_REQUIRED denial is logged");
    assert.equal(denied["userId"], users.alice.id);
    assert.equal(denied["outcome"], "deny");
    assert.ok(typeof denied["latencyMs"] === "number");
    assert.ok(["prefilter", "gate", "interceptor"].includes(denied["stage"] as string));
    const allowed = decisions.find(
      (r) => r["method"] === "/example.v1.AccountService/GetProfile" && r["outcome"] === "allow",
    );
    assert.equal(typeof allowed?.["userId"], "number");
    // Refusals are answered by the pre-filter, before Connect reads a byte of the body.
    const streamDenial = decisions.find(
      (r) => r["method"] === "/example.v1.AccountService/WatchNotifications" && r["outcome"] === "deny",
    );
    assert.equal(streamDenial?.["stage"], "prefilter");
    const text = logLines.join("\n");
    for (const token of Object.values(tokens)) {
      assert.ok(!text.includes(token), "a token appears in the logs");
      // Not even its signature, the part that makes it usable.
      assert.ok(!text.includes(token.split(".")[2]!));
    }
    assert.ok(!text.includes("Bearer"));
  });

  it("rejects a malformed rule at start, naming the method", async () => {
    await assert.rejects(
      startServer({
        runtime: { database, keyring, verifier },
        routes: (router) => router.service(MalformedService, {}),
        port: 0,
        logger: pino({ level: "silent" }),
      }),
      (error: unknown) => error instanceof PolicyError && /MalformedService\/EmptyRule/.test(error.message),
    );
  });

  it("with an ES256 keyring: serves JWKS, the static page, CORS, and closes gracefully", async () => {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const esKeyring = await createKeyring([
      { alg: "ES256", privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString() },
    ]);
    const page = await mkdtemp(join(tmpdir(), "protoguard-page-"));
    await writeFile(join(page, "index.html"), "<!doctype html><title>protoguard</title>");
    const second = await startServer({
      runtime: { database, keyring: esKeyring, verifier: createTokenVerifier({ keyring: esKeyring }) },
      routes: exampleRoutes({ database }),
      resources: exampleResources({ database }),
      port: 0,
      logger: pino({ level: "silent" }),
      staticDir: page,
      corsOrigins: ["https://app.example"],
    });
    try {
      const jwks = await fetch(`${second.url}/.well-known/jwks.json`);
      assert.equal(jwks.status, 200);
      assert.equal(jwks.headers.get("content-type"), "application/jwk-set+json");
      const body = (await jwks.json()) as { keys: Record<string, unknown>[] };
      assert.equal(body.keys.length, 1);
      assert.equal(body.keys[0]!["kty"], "EC");
      assert.equal(body.keys[0]!["alg"], "ES256");
      assert.equal(body.keys[0]!["d"], undefined);

      const index = await fetch(`${second.url}/`);
      assert.equal(index.status, 200);
      assert.match(index.headers.get("content-type") ?? "", /^text\/html/);
      assert.match(await index.text(), /<title>protoguard<\/title>/);
      assert.equal((await fetch(`${second.url}/%2e%2e/%2e%2e/etc/passwd`)).status, 404);
      assert.equal((await fetch(`${second.url}/missing.js`)).status, 404);

      const preflight = await fetch(`${second.url}/example.v1.ProductService/GetProduct`, {
        method: "OPTIONS",
        headers: { origin: "https://app.example", "access-control-request-method": "POST" },
      });
      assert.equal(preflight.status, 204);
      assert.equal(preflight.headers.get("access-control-allow-origin"), "https://app.example");

      const token = (await createTokenIssuer({ keyring: esKeyring }).issueAccess(users.alice.id)).token;
      const profile = await post(second.url, "example.v1.AccountService/GetProfile", {}, token);
      assert.equal(profile.body["username"], "alice");
      // An HS256 token of the first server means nothing here.
      assert.equal((await post(second.url, "example.v1.AccountService/GetProfile", {}, tokens.alice)).status, 401);
    } finally {
      await second.close();
      await rm(page, { recursive: true, force: true });
    }
    await assert.rejects(fetch(`${second.url}/metrics`));
    // The runtime parts had no close: the database is still usable.
    assert.equal((await call("ProductService/GetProduct", { productId: 1 })).status, 200);
  });
});

const databaseUrl = postgresUrl;

describeOr(skipWithoutPostgres, "example migrations and seed on PostgreSQL", {}, () => {
  it("run once when two instances start together, and again as no-ops", async () => {
    await using maintenance = await createTestDatabase({ url: databaseUrl! });
    const url = maintenance.url!;
    const instances = await Promise.all([openDatabase({ url }), openDatabase({ url })]);
    try {
      const [first, second] = instances as [Database, Database];
      await Promise.all([migrateExample(first), migrateExample(second)]);
      const owner = await createUser(first.db, { username: "owner" });
      const seeded = await Promise.all([
        seedExample(first.db, { orderOwners: [owner.id] }),
        seedExample(second.db, { orderOwners: [owner.id] }),
      ]);
      assert.equal(seeded.flat().length, 2, "one of the two seeds created the orders");
      await migrateExample(first);
      assert.deepEqual(await seedExample(first.db, { orderOwners: [owner.id] }), []);
      assert.equal((await first.db.select().from(products)).length, 3);
      assert.equal((await first.db.select().from(orders)).length, 2);
    } finally {
      await Promise.all(instances.map((d) => d.close()));
    }
  });
});

describe("protoguard serve (child process)", () => {
  const name = "prints demo users and a buf curl line, answers Login, stops on SIGTERM with exit 0";
  it(name, { timeout: 180_000 }, async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "protoguard-serve-"));
    const env: NodeJS.ProcessEnv = { ...process.env, PROTOGUARD_DATA_DIR: dataDir, PROTOGUARD_SCRYPT_LOG_N: "10" };
    delete env["DATABASE_URL"];
    delete env["PORT"];
    delete env["PROTOGUARD_JWT_SECRET"];
    try {
      const child = spawn(process.execPath, ["--import", "tsx", join(root, "example/cli.ts"), "serve", "--port", "0"], {
        cwd: root,
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      let err = "";
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
      const exited = once(child, "exit");
      try {
        for (let waited = 0; !/^alice\b|\n {2}alice /m.test(out) || !out.includes("GetProfile"); waited += 100) {
          if (child.exitCode !== null || waited > 150_000) assert.fail(`serve did not start:\n${out}\n${err}`);
          await sleep(100);
        }
        const url = /serving on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
        assert.ok(url, out);
        for (const user of ["admin", "staff", "editor", "alice"]) {
          assert.match(out, new RegExp(`^ {2}${user} +\\S+ +`, "m"));
        }
        const password = /^ {2}alice +(\S+)/m.exec(out)![1]!;
        const curl = "npx buf curl --schema proto --protocol connect";
        const body = `'{"username":"alice","password":"${password}"}'`;
        assert.ok(out.includes(`${curl} -d ${body} ${url}/protoguard.v1.AuthService/Login`));
        assert.match(out, /AccountService\/GetProfile/);

        const login = await post(url, "protoguard.v1.AuthService/Login", { username: "alice", password });
        assert.equal(login.status, 200, JSON.stringify(login.body));
        const accessToken = login.body["accessToken"] as string;
        const call = (path: string, message: unknown) => post(url, `example.v1.${path}`, message, accessToken);
        const profile = await call("AccountService/GetProfile", {});
        assert.equal(profile.body["username"], "alice");
        // The banner names the seeded orders: "Orders: 1, 2 (editor); 3, 4 (alice): ..."
        const aliceOrder = Number(/^Orders: .*?(\d+), \d+ \(alice\)/m.exec(out)?.[1]);
        const editorOrder = Number(/^Orders: .*?(\d+), \d+ \(editor\)/m.exec(out)?.[1]);
        const own = await call("OrderService/UpdateOrder", { orderId: aliceOrder, note: "mine" });
        assert.equal(own.status, 200);
        const other = await call("OrderService/UpdateOrder", { orderId: editorOrder, note: "yours?" });
        assert.equal(other.status, 403);

        child.kill("SIGTERM");
        const [code] = await exited;
        assert.equal(code, 0, err);
        assert.ok(!out.includes(accessToken), "the access token was logged");
      } finally {
        if (child.exitCode === null) child.kill("SIGKILL");
      }

      // A second start on the same data directory: the port is taken, so it
      // fails with one line on stderr and exit 1, after closing the database.
      const blocker = net.createServer();
      blocker.listen(0, "127.0.0.1");
      await once(blocker, "listening");
      const port = (blocker.address() as net.AddressInfo).port;
      try {
        const again = spawn(process.execPath, ["--import", "tsx", join(root, "example/cli.ts"), "serve"], {
          cwd: root,
          env: { ...env, PORT: String(port), PROTOGUARD_JWT_SECRET: SECRET },
          stdio: ["ignore", "pipe", "pipe"],
        });
        let againErr = "";
        again.stderr.setEncoding("utf8").on("data", (chunk: string) => (againErr += chunk));
        const [code] = await once(again, "exit");
        assert.equal(code, 1);
        assert.deepEqual(againErr.trim().split("\n"), [`protoguard: port ${port} is already in use on 127.0.0.1`]);
      } finally {
        blocker.close();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
