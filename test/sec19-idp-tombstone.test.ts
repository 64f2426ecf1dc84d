// Issue 19 item 1: on an issuer that provisions users, `protoguard user delete` and
// `protoguard user unlink` stay final for that (issuer, subject): the next call with the very same
// IdP token is refused UNAUTHENTICATED IDENTITY_NOT_LINKED instead of provisioning a fresh account,
// until an admin runs `protoguard user link`. Item 4: `user link` refuses a service account. A real
// server over HTTP/2, a real JWKS server, the CLI in this process against the same PostgreSQL
// database (the CLI and the server share it, as in production).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, it } from "node:test";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { eq } from "drizzle-orm";
import { pino } from "pino";
import { GuardedService } from "../gen/guardtest/v1/guarded_pb.js";
import { createKeyring, createTokenVerifier } from "../src/exports/protoguard.js";
import { startServer, type RunningServer } from "../src/exports/server.js";
import { findExternalIdentity } from "../src/exports/store.js";
import { externalIdentities, users } from "../src/store/schema.js";
import { createTestDatabase, type TestDatabase } from "../src/exports/testing.js";
import { assertOk, cleanEnv, runCliCaptured, type CliResult } from "./helpers/cli.js";
import { bearer, eventually, expectError } from "./helpers/connect.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";
import { guardedRoutes } from "./helpers/guarded-service.js";
import { idpKey, signToken, startJwksServer, type IdpKey, type JwksServer } from "./helpers/idp.js";

const ISSUER = "https://sso.example.com/realms/tombstone";

describeOr(skipWithoutPostgres, "deleted or unlinked IdP users stay out", { timeout: 120_000 }, () => {
  let database: TestDatabase;
  let jwks: JwksServer;
  let key: IdpKey;
  let server: RunningServer;
  let client: Client<typeof GuardedService>;
  let env: NodeJS.ProcessEnv;
  const cli = (...args: string[]): Promise<CliResult> => runCliCaptured(args, env);

  const token = (sub: string, username: string) => {
    const iat = Math.floor(Date.now() / 1000);
    return signToken(key, {
      iss: ISSUER,
      aud: "shop-api",
      sub,
      iat,
      exp: iat + 600,
      jti: randomUUID(),
      preferred_username: username,
    });
  };
  const usersNamed = async (prefix: string) =>
    (await database.db.select({ username: users.username }).from(users)).filter((u) => u.username.startsWith(prefix))
      .length;

  before(async () => {
    database = await createTestDatabase({ driver: "postgres", url: postgresUrl! });
    env = cleanEnv({ DATABASE_URL: database.url!, PROTOGUARD_JWT_SECRET: "a-test-hs256-secret-of-at-least-32-bytes!" });
    jwks = await startJwksServer();
    key = await idpKey("kc-tomb");
    jwks.publish("/certs", [key]);
    const local = await idpKey("local");
    const keyring = await createKeyring([{ alg: "RS256", privateKey: local.privateKey, kid: "local" }]);
    const trustedIssuers = [
      { issuer: ISSUER, jwks_url: `${jwks.origin}/certs`, audience: "shop-api", provision: true },
    ];
    server = await startServer({
      runtime: { database, keyring, verifier: createTokenVerifier({ keyring }), trustedIssuers },
      routes: guardedRoutes,
      port: 0,
      logger: pino({ level: "silent" }),
      graceMs: 200,
    });
    client = createClient(GuardedService, createConnectTransport({ baseUrl: server.url, httpVersion: "2" }));
  });
  after(async () => {
    await server?.close();
    await jwks?.close();
    await database?.close();
  });

  for (const how of ["delete", "unlink"] as const) {
    it(`user ${how}: the same IdP token does not provision the subject again until user link`, async () => {
      const sub = randomUUID();
      const name = `tomb-${how}`;
      const first = await token(sub, name);
      assert.equal((await client.authenticatedUnary({ text: "x" }, bearer(first))).username, name);
      assert.equal(await usersNamed(name), 1);

      const removed = how === "delete" ? await cli("user", "delete", name) : await cli("user", "unlink", ISSUER, sub);
      assertOk(removed);
      // The cached link is dropped by the database's notice; then the very same token is refused.
      await eventually(
        () =>
          expectError(
            client.authenticatedUnary({ text: "x" }, bearer(first)),
            Code.Unauthenticated,
            "IDENTITY_NOT_LINKED",
          ),
        10_000,
      );
      // ...and so is a fresh token of the same subject, however often it is tried.
      for (let i = 0; i < 3; i++) {
        await expectError(
          client.authenticatedUnary({ text: "x" }, bearer(await token(sub, name))),
          Code.Unauthenticated,
          "IDENTITY_NOT_LINKED",
        );
      }
      assert.equal(await findExternalIdentity(database.db, ISSUER, sub), undefined, "no new link");
      assert.equal(await usersNamed(name), how === "delete" ? 0 : 1, "no fresh account");

      // An admin lets the subject back in, as an account of their choice.
      const target = `${name}-back`;
      assertOk(await cli("user", "create", target, "--password", "pw-pw-pw-pw"));
      assertOk(await cli("user", "link", target, ISSUER, sub));
      // (A token issued before that account existed is revoked for it: a fresh one, once the second turns.)
      await eventually(async () => {
        assert.equal((await client.authenticatedUnary({ text: "x" }, bearer(await token(sub, name)))).username, target);
      }, 10_000);
    });
  }

  it("a subject the IdP shows for the first time is still provisioned", async () => {
    const sub = randomUUID();
    assert.equal(
      (await client.authenticatedUnary({ text: "x" }, bearer(await token(sub, "tomb-new")))).username,
      "tomb-new",
    );
    const rows = await database.db.select().from(externalIdentities).where(eq(externalIdentities.subject, sub));
    assert.equal(rows.length, 1);
  });

  it("user link refuses a service account (item 4)", async () => {
    assertOk(await cli("service", "create", "billing"));
    const sub = randomUUID();
    const linked = await cli("user", "link", "billing", ISSUER, sub);
    assert.equal(linked.code, 1, linked.stdout);
    assert.match(linked.stderr, /service account/);
    assert.equal(await findExternalIdentity(database.db, ISSUER, sub), undefined);
  });
});
