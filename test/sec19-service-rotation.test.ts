// Issue 19 item 2: ServiceToken racing a rotation of the service's secret without grace. Exchanges
// read the secret's hash, then wait in the hasher's queue; a rotation commits meanwhile. Every
// token those exchanges got must be dead once the rotation has committed (none is newer than the
// rotation), and a successful exchange does not give its admission attempt back. A real server on
// loopback, real scrypt, the store's rotation; PostgreSQL when DATABASE_URL is set, else PGlite.
import assert from "node:assert/strict";
import * as http from "node:http";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { AuthService } from "../gen/protoguard/v1/auth_pb.js";
import { createKeyring, createTokenIssuer, createTokenVerifier } from "../src/exports/protoguard.js";
import { createAuthService, generateClientCredentials } from "../src/exports/auth-service.js";
import { createPasswordHasher } from "../src/lifecycle/passwords.js";
import { startServer, type RunningServer } from "../src/exports/server.js";
import { createServiceAccount, rotateServiceSecret } from "../src/exports/store.js";
import { createTestDatabase, type TestDatabase } from "../src/exports/testing.js";
import { bearer, expectError } from "./helpers/connect.js";
import { postgresUrl } from "./helpers/env.js";
import { TEST_SECRET } from "./helpers/secrets.js";

describe(`ServiceToken across a rotation without grace (${postgresUrl ? "postgres" : "pglite"})`, {
  timeout: 120_000,
}, () => {
  let database: TestDatabase;
  let server: RunningServer;
  let agent: http.Agent;
  let auth: Client<typeof AuthService>;
  // One hashing slot: concurrent exchanges queue, as under load.
  const hasher = createPasswordHasher({ scrypt: { logN: 14 }, maxConcurrent: 1, maxQueue: 64 });

  before(async () => {
    database = postgresUrl ? await createTestDatabase({ url: postgresUrl }) : await createTestDatabase();
    const keyring = await createKeyring([{ alg: "HS256", secret: TEST_SECRET }]);
    const issuer = createTokenIssuer({ keyring });
    const verifier = createTokenVerifier({ keyring });
    const service = createAuthService({
      database,
      issuer,
      verifier,
      passwordHasher: hasher,
      loginAdmission: { burst: 40, perMinute: 1 },
    });
    server = await startServer({
      runtime: { database, keyring, verifier },
      routes: (router) => router.service(AuthService, service),
      port: 0,
      logger: pino({ level: "silent" }),
      graceMs: 200,
    });
    agent = new http.Agent({ keepAlive: true });
    auth = createClient(
      AuthService,
      createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", nodeOptions: { agent } }),
    );
  });
  after(async () => {
    agent?.destroy();
    await server?.close();
    await database?.close();
  });

  it("no token minted from the old secret outlives the rotation's commit", async () => {
    const old = generateClientCredentials();
    await createServiceAccount(database.db, {
      name: "racer",
      clientId: old.clientId,
      secretHash: await hasher.hash(old.clientSecret),
    });
    const nextHash = await hasher.hash(generateClientCredentials().clientSecret);

    const exchanges = Array.from({ length: 12 }, () =>
      auth.serviceToken({ clientId: old.clientId, clientSecret: old.clientSecret }).then(
        (reply) => reply.accessToken,
        (error: unknown) => ConnectError.from(error),
      ),
    );
    // Once one exchange has its token, the others have read the hash and wait for the hasher.
    await Promise.race(exchanges);
    await rotateServiceSecret(database.db, "racer", nextHash, 0);
    const outcomes = await Promise.all(exchanges);
    const tokens = outcomes.filter((o): o is string => typeof o === "string");
    for (const o of outcomes) {
      if (typeof o !== "string") assert.equal(o.code, Code.Unauthenticated, o.message);
    }
    assert.ok(tokens.length >= 1, "at least the exchange that finished first got a token");

    // Give the rotation's notice a moment to reach the principal cache, then try every token.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const alive: string[] = [];
    for (const token of tokens) {
      try {
        await auth.whoAmI({}, bearer(token));
        alive.push(token);
      } catch (error) {
        assert.equal(ConnectError.from(error).code, Code.Unauthenticated);
      }
    }
    assert.equal(alive.length, 0, `${alive.length} of ${tokens.length} tokens from the rotated-away secret still work`);
  });

  it("a successful exchange spends its admission attempt", async () => {
    const creds = generateClientCredentials();
    await createServiceAccount(database.db, {
      name: "spender",
      clientId: creds.clientId,
      secretHash: await hasher.hash(creds.clientSecret),
    });
    // What the first test left of the 40-attempt budget of 127.0.0.1, then one more.
    let granted = 0;
    for (let i = 0; i < 41; i++) {
      try {
        await auth.serviceToken({ clientId: creds.clientId, clientSecret: creds.clientSecret });
        granted++;
      } catch (error) {
        await expectError(Promise.reject(error), Code.ResourceExhausted, "LOGIN_THROTTLED");
        break;
      }
    }
    assert.ok(granted <= 40 - 12 + 1, `${granted} successful exchanges from a spent budget`);
  });
});
