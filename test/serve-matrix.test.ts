// `protoguard serve --workers 2` on PostgreSQL with every feature startServer wires at once:
// trusted issuers (a real JWKS server), gateway mode, TLS with client certificates, CORS, a
// condition with its resource loader, the static page. One server, so the suite pays for one
// start; every check is made on several fresh connections, which the primary hands to both
// workers in turn, so each feature is seen working in each process. Before this, a primary
// with trusted issuers refused to start (its auth layer had no identity resolver).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import * as https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { orders } from "../example/schema.js";
import { createKeyring, createTokenIssuer } from "../src/exports/protoguard.js";
import { createServiceAccount, createUser, grantUserPermissions } from "../src/exports/store.js";
import { createTestDatabase, type TestDatabase } from "../src/exports/testing.js";
import { cleanEnv } from "./helpers/cli.js";
import { describeOr, postgresUrl, skipWithoutOpenssl, skipWithoutPostgres } from "./helpers/env.js";
import { idpKey, signToken, startJwksServer, type IdpKey, type JwksServer } from "./helpers/idp.js";
import { TEST_SECRET } from "./helpers/secrets.js";
import { makeCa, makeClientCertificate, selfSignedCertificate, type Pem } from "./helpers/tls.js";

const root = join(import.meta.dirname, "..");
const ISSUER = "https://sso.example.com/realms/shop";
const ORIGIN = "https://app.example.com";
/** Fresh connections per check: with two workers taking them in turn, both answer. */
const CONNECTIONS = 4;

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

describeOr(
  skipWithoutPostgres ?? skipWithoutOpenssl,
  "protoguard serve --workers 2 with every startServer feature",
  { timeout: 300_000 },
  () => {
    let dir: string;
    let database: TestDatabase;
    let jwks: JwksServer;
    let key: IdpKey;
    let serverCa: string;
    let client: Pem;
    let url: string;
    let tokens: { alice: string; bob: string };
    let aliceId: number;
    let child: ReturnType<typeof spawn>;
    let output = "";

    /** One request on a connection of its own (no agent), over TLS, optionally with the client certificate. */
    function request(
      method: string,
      path: string,
      headers: Record<string, string>,
      body?: string,
      cert?: Pem,
    ): Promise<Reply> {
      return new Promise((resolve, reject) => {
        const req = https.request(
          `${url}${path}`,
          {
            method,
            headers,
            agent: false,
            ca: serverCa,
            ...(cert !== undefined && { cert: cert.cert, key: cert.key }),
          },
          (res) => {
            let text = "";
            res.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
          },
        );
        req.on("error", reject);
        req.end(body);
      });
    }

    /** A Connect unary JSON call; answers `status code-or-field`, e.g. "200" or "403 permission_denied". */
    async function call(method: string, message: unknown, headers: Record<string, string> = {}, cert?: Pem) {
      const reply = await request(
        "POST",
        `/${method}`,
        { "content-type": "application/json", ...headers },
        JSON.stringify(message),
        cert,
      );
      const json = JSON.parse(reply.body) as Record<string, unknown>;
      return reply.status === 200 ? { status: 200, json } : { status: reply.status, code: json["code"], json };
    }

    /** `check` on {@link CONNECTIONS} fresh connections at once. */
    const everywhere = <T>(check: () => Promise<T>) => Promise.all(Array.from({ length: CONNECTIONS }, check));

    function idpClaims(username: string) {
      const iat = Math.floor(Date.now() / 1000);
      return {
        iss: ISSUER,
        aud: "shop-api",
        sub: `${username}-${randomUUID()}`,
        iat,
        exp: iat + 300,
        preferred_username: username,
      };
    }

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), "protoguard-serve-matrix-"));
      const serverPem = await selfSignedCertificate(dir);
      serverCa = serverPem.cert;
      await makeCa(dir, "client-ca");
      client = await makeClientCertificate(
        dir,
        "client-ca",
        "billing",
        "/O=Example/CN=billing",
        "spiffe://example.org/billing",
      );
      const page = join(dir, "page");
      await mkdir(page);
      await writeFile(join(page, "index.html"), "<!doctype html><title>matrix page</title>\n");

      jwks = await startJwksServer();
      key = await idpKey("kc-1");
      jwks.publish("/certs", [key]);
      const issuers = join(dir, "issuers.json");
      await writeFile(
        issuers,
        JSON.stringify([
          {
            issuer: ISSUER,
            jwks_url: `${jwks.origin}/certs`,
            audience: "shop-api",
            subject_claim: "sub",
            username_claim: "preferred_username",
            provision: true,
          },
        ]),
      );

      database = await createTestDatabase({ url: postgresUrl! });
      const alice = await createUser(database.db, { username: "alice" });
      const bob = await createUser(database.db, { username: "bob" });
      aliceId = alice.id;
      await createServiceAccount(database.db, {
        name: "billing",
        clientId: "matrix-billing",
        secretHash: "unused",
        tlsIdentity: "spiffe://example.org/billing",
      });
      await grantUserPermissions(database.db, "billing", ["products.change_product"]);
      const issuer = createTokenIssuer({ keyring: await createKeyring([{ alg: "HS256", secret: TEST_SECRET }]) });
      tokens = {
        alice: (await issuer.issueAccess(alice.id)).token,
        bob: (await issuer.issueAccess(bob.id)).token,
      };

      const env = cleanEnv({
        DATABASE_URL: database.url!,
        PROTOGUARD_JWT_SECRET: TEST_SECRET,
        PROTOGUARD_LOG_LEVEL: "warn",
        PROTOGUARD_TRUSTED_ISSUERS: issuers,
        PROTOGUARD_GATEWAY_HEADER: "x-jwt-payload",
        PROTOGUARD_GATEWAY_TRUSTED_PEERS: "127.0.0.1,::1",
        PROTOGUARD_TLS_CERT: join(dir, "cert.pem"),
        PROTOGUARD_TLS_KEY: join(dir, "key.pem"),
        PROTOGUARD_TLS_CLIENT_CA: join(dir, "client-ca.pem"),
        PROTOGUARD_CORS_ORIGINS: ORIGIN,
        MATRIX_STATIC_DIR: page,
      });
      child = spawn(
        process.execPath,
        [
          "--import",
          "tsx",
          "example/cli.ts",
          "serve",
          "--routes",
          "test/helpers/matrix-app.ts",
          "--port",
          "0",
          "--workers",
          "2",
        ],
        { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] },
      );
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
      let match: RegExpExecArray | null = null;
      for (let waited = 0; match === null; waited += 50) {
        match = /serving on (https:\/\/127\.0\.0\.1:\d+) \(.*, 2 worker processes\)/.exec(output);
        if (match !== null) break;
        if (child.exitCode !== null || waited > 150_000) assert.fail(`serve did not start:\n${output}`);
        await sleep(50);
      }
      url = match[1]!;
    });

    after(async () => {
      if (child !== undefined && child.exitCode === null) child.kill("SIGKILL");
      await jwks?.close();
      await database?.close();
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    });

    it("protoguard's own tokens", async () => {
      for (const reply of await everywhere(() =>
        call("example.v1.AccountService/GetProfile", {}, { authorization: `Bearer ${tokens.alice}` }),
      )) {
        assert.equal(reply.status, 200, JSON.stringify(reply.json));
        assert.equal(reply.json["username"], "alice");
      }
    });

    it("a trusted issuer's token, its subject provisioned as a user", async () => {
      for (const reply of await everywhere(async () =>
        call(
          "example.v1.AccountService/GetProfile",
          {},
          { authorization: `Bearer ${await signToken(key, idpClaims("kc-user"))}` },
        ),
      )) {
        assert.equal(reply.status, 200, JSON.stringify(reply.json));
      }
    });

    it("gateway mode: a trusted peer's verified claims", async () => {
      for (const reply of await everywhere(() =>
        call(
          "example.v1.AccountService/GetProfile",
          {},
          { "x-jwt-payload": Buffer.from(JSON.stringify(idpClaims("gw-user"))).toString("base64url") },
        ),
      )) {
        assert.equal(reply.status, 200, JSON.stringify(reply.json));
      }
    });

    it("a verified client certificate is its service account", async () => {
      // Authorized by the certificate alone (products.change_product): the handler answers that
      // product 999999 does not exist. Without the certificate, nobody: unauthenticated.
      const update = { productId: 999_999, name: "renamed" };
      for (const reply of await everywhere(() => call("example.v1.ProductService/UpdateProduct", update, {}, client))) {
        assert.equal(reply.code, "not_found", JSON.stringify(reply.json));
      }
      for (const reply of await everywhere(() => call("example.v1.ProductService/UpdateProduct", update))) {
        assert.equal(reply.code, "unauthenticated", JSON.stringify(reply.json));
      }
    });

    it("a condition with its resource loader", async () => {
      const [order] = await database.db.insert(orders).values({ userId: aliceId, note: "" }).returning();
      const change = { orderId: order!.id, note: "leave at the door" };
      for (const reply of await everywhere(() =>
        call("example.v1.OrderService/UpdateOrder", change, { authorization: `Bearer ${tokens.alice}` }),
      )) {
        assert.equal(reply.status, 200, JSON.stringify(reply.json));
      }
      for (const reply of await everywhere(() =>
        call("example.v1.OrderService/UpdateOrder", change, { authorization: `Bearer ${tokens.bob}` }),
      )) {
        assert.equal(reply.code, "permission_denied", JSON.stringify(reply.json));
      }
    });

    it("CORS preflight and the static page", async () => {
      for (const reply of await everywhere(() =>
        request("OPTIONS", "/example.v1.AccountService/GetProfile", {
          origin: ORIGIN,
          "access-control-request-method": "POST",
          "access-control-request-headers": "authorization,content-type",
        }),
      )) {
        assert.equal(reply.headers["access-control-allow-origin"], ORIGIN);
      }
      for (const reply of await everywhere(() => request("GET", "/", {}))) {
        assert.equal(reply.status, 200);
        assert.match(reply.body, /matrix page/);
      }
    });

    it("stops every process on SIGTERM", async () => {
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      const [code] = await exited;
      assert.equal(code, 0, output);
    });
  },
);
