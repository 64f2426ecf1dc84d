// One source for each token default, and a refusal for a token's lifetime that says so.
// A server wired by hand (createTokenIssuer + createTokenVerifier + createAuth, as README
// shows) gets the same bounds as `protoguard serve` from the same numbers: the verifier's
// lifetime bound follows the issuer's TTL options, and loadConfig's defaults are the
// library's. A token above the bound is refused TOKEN_LIFETIME_EXCEEDED (not the generic
// TOKEN_INVALID), with the bound in the ErrorInfo metadata and in the decision log.
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { pino } from "pino";
import { Registry } from "prom-client";
import { GuardedService, StaffOnlyService, UnannotatedService } from "../gen/guardtest/v1/guarded_pb.js";
import {
  authErrorMetadata,
  authErrorReason,
  createAuth,
  createKeyring,
  createTokenIssuer,
  createTokenVerifier,
  type Keyring,
} from "../src/exports/protoguard.js";
import { TOKEN_DEFAULTS } from "../src/exports/core.js";
import { createObservability, loadConfig } from "../src/exports/server.js";
import { createPrincipalSource, createUser } from "../src/exports/store.js";
import { createTestDatabase, type TestDatabase } from "../src/exports/testing.js";
import { bearer } from "./helpers/connect.js";
import { guardedRoutes } from "./helpers/guarded-service.js";
import { TEST_SECRET } from "./helpers/secrets.js";

describe("token lifetime defaults and refusals", { timeout: 120_000 }, () => {
  let database: TestDatabase;
  let keyring: Keyring;
  let userId: number;
  const logLines: Record<string, unknown>[] = [];

  before(async () => {
    database = await createTestDatabase();
    keyring = await createKeyring([{ alg: "HS256", secret: TEST_SECRET }]);
    userId = (await createUser(database.db, { username: "alice" })).id;
  });
  after(async () => {
    await database?.close();
  });

  /** A client of GuardedService behind createAuth with `verifier`, logging decisions into logLines. */
  async function clientWith(verifier: ReturnType<typeof createTokenVerifier>) {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split("\n")) if (line !== "") logLines.push(JSON.parse(line));
        done();
      },
    });
    const observability = createObservability({ logger: pino({ level: "info" }, sink), registry: new Registry() });
    const principals = await createPrincipalSource({ database, maxEntries: 0, listen: false });
    const auth = createAuth({
      verifier,
      principals,
      services: [GuardedService, StaffOnlyService, UnannotatedService],
      onDecision: observability.onDecision,
    });
    const transport = createRouterTransport(guardedRoutes, {
      router: { interceptors: [auth.interceptor], requestGate: auth.requestGate },
    });
    return { client: createClient(GuardedService, transport), close: () => principals.close() };
  }

  it("an hour-long token on a default verifier: TOKEN_LIFETIME_EXCEEDED, with the bound, logged", async () => {
    const issuer = createTokenIssuer({ keyring, accessTtlSeconds: 3600 });
    const { client, close } = await clientWith(createTokenVerifier({ keyring }));
    try {
      const token = (await issuer.issueAccess(userId)).token;
      const error = await client.authenticatedUnary({ text: "x" }, bearer(token)).then(
        () => assert.fail("an hour-long token was accepted by a verifier bounded at 300 s"),
        (e: unknown) => ConnectError.from(e),
      );
      assert.equal(error.code, Code.Unauthenticated);
      assert.equal(authErrorReason(error), "TOKEN_LIFETIME_EXCEEDED");
      assert.equal(authErrorMetadata(error)["maxLifetimeSeconds"], String(TOKEN_DEFAULTS.accessTtlSeconds));
      const logged = logLines.find((line) => line["reason"] === "TOKEN_LIFETIME_EXCEEDED");
      assert.ok(logged, `no decision log line names the reason: ${JSON.stringify(logLines)}`);
      assert.equal(logged["maxLifetimeSeconds"], String(TOKEN_DEFAULTS.accessTtlSeconds));
      assert.equal(logged["detail"], "LIFETIME_EXCEEDED");

      // Every other refusal of a token names what was wrong in the log too (the client sees the reason).
      const foreign = createTokenIssuer({ keyring, audience: "another-api" });
      await client.authenticatedUnary({ text: "x" }, bearer((await foreign.issueAccess(userId)).token)).catch(() => {});
      const invalid = logLines.find((line) => line["reason"] === "TOKEN_INVALID");
      assert.equal(invalid?.["detail"], "AUDIENCE_MISMATCH", JSON.stringify(logLines));
    } finally {
      await close();
    }
  });

  it("one options object for issuer and verifier: the verifier's bound is the issuer's TTL", async () => {
    const tokens = { keyring, accessTtlSeconds: 3600 };
    const issuer = createTokenIssuer(tokens);
    const { client, close } = await clientWith(createTokenVerifier(tokens));
    try {
      const reply = await client.authenticatedUnary({ text: "x" }, bearer((await issuer.issueAccess(userId)).token));
      assert.equal(reply.username, "alice");
    } finally {
      await close();
    }
  });

  it("loadConfig's defaults are the library's", async () => {
    const config = loadConfig({});
    assert.equal(config.accessTtlSeconds, TOKEN_DEFAULTS.accessTtlSeconds);
    assert.equal(config.refreshTtlSeconds, TOKEN_DEFAULTS.refreshTtlSeconds);
    assert.equal(config.leewaySeconds, TOKEN_DEFAULTS.leewaySeconds);
    assert.equal(config.serviceTokenTtlSeconds, TOKEN_DEFAULTS.serviceTokenTtlSeconds);
    const issuer = createTokenIssuer({ keyring });
    assert.equal(issuer.accessTtlSeconds, TOKEN_DEFAULTS.accessTtlSeconds);
    assert.equal(issuer.refreshTtlSeconds, TOKEN_DEFAULTS.refreshTtlSeconds);
    assert.equal(createTokenVerifier({ keyring }).leewaySeconds, TOKEN_DEFAULTS.leewaySeconds);

    // A verifier given the issuer's TTL accepts what that issuer mints.
    const verifier = createTokenVerifier({ keyring, accessTtlSeconds: 3600 });
    const token = (await createTokenIssuer({ keyring, accessTtlSeconds: 3600 }).issueAccess(userId)).token;
    assert.equal((await verifier.verify(token, "access")).ok, true);
  });
});
