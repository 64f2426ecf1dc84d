/**
 * `protoguard service …` through `runCli`, against a PGlite data directory
 * (and PostgreSQL when DATABASE_URL is set): the printed client credentials
 * then work at AuthService/ServiceToken over the same database, grants
 * decide what the service may call, and the `user` commands refuse to
 * manage it.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, createClient } from "@connectrpc/connect";
import { AuthService } from "../src/exports/auth-service.js";
import { KindService } from "../gen/guardtest/v1/kinds_pb.js";
import { openDatabase, type Database } from "../src/exports/store.js";
import { createTestAuth, createTestDatabase, type TestDatabase } from "../src/exports/testing.js";
import { assertOk, cleanEnv, runCliCaptured } from "./helpers/cli.js";
import { bearer, expectError } from "./helpers/connect.js";
import { postgresUrl } from "./helpers/env.js";

const cli = runCliCaptured;

interface Created {
  name: string;
  id: number;
  client_id: string;
  client_secret: string;
  tls_identity: string | null;
}

for (const backend of ["pglite", "postgres"] as const) {
  const skip = backend === "postgres" && postgresUrl === undefined;
  describe(`protoguard service (${backend})`, {
    skip: skip && "DATABASE_URL not set: PostgreSQL part skipped",
    timeout: 600_000,
  }, () => {
    let dir: string;
    let pg: TestDatabase | undefined;
    let env: NodeJS.ProcessEnv;

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), "protoguard-service-cli-"));
      if (backend === "postgres") {
        // A throwaway database of its own; the CLI connects to it by URL.
        pg = await createTestDatabase({ url: postgresUrl });
        env = cleanEnv({ DATABASE_URL: pg.url!, PROTOGUARD_JWT_SECRET: "a-test-hs256-secret-of-at-least-32-bytes!" });
      } else {
        env = cleanEnv({ PROTOGUARD_DATA_DIR: dir });
      }
    });
    after(async () => {
      await pg?.close();
      await rm(dir, { recursive: true, force: true });
    });

    /** Runs `work` with the CLI's database open (PGlite allows one process at a time). */
    async function withDatabase<T>(work: (database: Database) => Promise<T>): Promise<T> {
      const database = await openDatabase(
        backend === "postgres" ? { url: env["DATABASE_URL"] } : { dataDir: env["PROTOGUARD_DATA_DIR"] },
      );
      try {
        return await work(database);
      } finally {
        await database.close();
      }
    }

    it("create, grant, exchange, revoke, rotate, list and delete", async () => {
      const created = await cli(
        ["service", "create", "billing", "--tls-identity", "spiffe://example.org/billing"],
        env,
      );
      assertOk(created);
      const account = JSON.parse(created.stdout) as Created;
      assert.equal(account.name, "billing");
      assert.match(account.client_id, /^svc_[0-9a-f]{32}$/);
      assert.match(account.client_secret, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(account.tls_identity, "spiffe://example.org/billing");
      assertOk(await cli(["service", "grant", "billing", "billing.charge"], env));

      // The secret is stored hashed, never as printed.
      const listed = await cli(["service", "list"], env);
      assertOk(listed);
      assert.equal(listed.stdout.includes(account.client_secret), false);
      const [entry] = JSON.parse(listed.stdout) as { name: string; permissions: string[]; client_id: string }[];
      assert.deepEqual(
        { name: entry?.name, permissions: entry?.permissions, client_id: entry?.client_id },
        { name: "billing", permissions: ["billing.charge"], client_id: account.client_id },
      );

      // What the CLI printed works at ServiceToken, and the grant decides what the service may call.
      await withDatabase(async (database) => {
        const t = await createTestAuth({
          database,
          routes: (router) =>
            router.service(KindService, {
              forUsers: () => ({}),
              forServices: () => ({}),
              chargeForServices: () => ({ text: "charged" }),
              authenticated: () => ({}),
              charge: () => ({ text: "charged" }),
              public: () => ({}),
            }),
          authService: true,
        });
        try {
          const auth = createClient(AuthService, t.transport);
          const kinds = createClient(KindService, t.transport);
          const { accessToken } = await auth.serviceToken({
            clientId: account.client_id,
            clientSecret: account.client_secret,
          });
          assert.equal((await kinds.chargeForServices({}, bearer(accessToken))).text, "charged");
          await expectError(kinds.forUsers({}, bearer(accessToken)), Code.PermissionDenied, "PRINCIPAL_KIND");
          await expectError(
            auth.login({ username: "billing", password: account.client_secret }),
            Code.Unauthenticated,
            "INVALID_CREDENTIALS",
          );
        } finally {
          await t.close();
        }
      });

      const revoked = await cli(["service", "revoke", "billing", "billing.charge"], env);
      assertOk(revoked);
      assert.match(revoked.stdout, /revoked 1 grant from service "billing"/);

      const rotated = await cli(["service", "rotate", "billing", "--grace", "600"], env);
      assertOk(rotated);
      const rotation = JSON.parse(rotated.stdout) as {
        client_id: string;
        client_secret: string;
        previous_secret_expires_at: string;
      };
      assert.equal(rotation.client_id, account.client_id);
      assert.notEqual(rotation.client_secret, account.client_secret);
      assert.ok(Date.parse(rotation.previous_secret_expires_at) > Date.now() + 500_000);
      await withDatabase(async (database) => {
        const t = await createTestAuth({ database, routes: () => {}, authService: true });
        try {
          const auth = createClient(AuthService, t.transport);
          // Both secrets work during the grace period.
          await auth.serviceToken({ clientId: account.client_id, clientSecret: account.client_secret });
          await auth.serviceToken({ clientId: account.client_id, clientSecret: rotation.client_secret });
        } finally {
          await t.close();
        }
      });

      assertOk(await cli(["service", "delete", "billing"], env));
      const after = await cli(["service", "list"], env);
      assertOk(after);
      assert.deepEqual(JSON.parse(after.stdout), []);
    });

    it("keeps people and services apart, and refuses bad input before touching the store", async () => {
      assertOk(await cli(["service", "create", "reports", "--tls-identity", "CN=reports, O=Example"], env));
      assertOk(await cli(["user", "create", "alice", "--password", "a-long-password-1"], env));

      for (const args of [
        ["user", "grant", "reports", "shop.view_order"],
        ["user", "revoke", "reports", "shop.view_order"],
        ["user", "deactivate", "reports"],
        ["user", "delete", "reports"],
        ["user", "set-password", "reports", "--password", "x-long-password"],
        ["token", "reports"],
        ["otp", "enable", "reports"],
      ]) {
        const refused = await cli(args, env);
        assert.equal(refused.code, 1, args.join(" "));
        assert.match(refused.stderr, /"reports" is a service account: manage it with "protoguard service"/);
      }
      for (const args of [
        ["service", "grant", "alice", "shop.view_order"],
        ["service", "delete", "alice"],
        ["service", "rotate", "alice"],
      ]) {
        const refused = await cli(args, env);
        assert.equal(refused.code, 1, args.join(" "));
        assert.match(refused.stderr, /"alice" is a user, not a service account/);
      }
      const duplicate = await cli(["service", "create", "alice"], env);
      assert.equal(duplicate.code, 1);
      assert.match(duplicate.stderr, /a user or service named "alice" already exists/);
      const taken = await cli(["service", "create", "reports2", "--tls-identity", "CN=reports,O=Example"], env);
      assert.equal(taken.code, 1);
      assert.match(taken.stderr, /TLS identity "CN=reports,O=Example" is already mapped/);

      for (const [args, message] of [
        [["service", "create", "bad name"], /invalid username "bad name"/],
        [["service", "create", "x", "--tls-identity", "not a dn"], /invalid TLS identity/],
        [["service", "rotate", "reports", "--grace", "-5"], /--grace must be a whole number of seconds/],
        [["service", "grant", "reports", "nodot"], /invalid permission "nodot"/],
        [["service", "grant", "reports"], /missing <name> <permission>/],
      ] as const) {
        const refused = await cli(args, env);
        assert.notEqual(refused.code, 0, args.join(" "));
        assert.match(refused.stderr, message);
      }
      const listed = JSON.parse((await cli(["service", "list"], env)).stdout) as {
        name: string;
        tls_identity: string;
      }[];
      assert.deepEqual(
        listed.map((s) => [s.name, s.tls_identity]),
        [["reports", "CN=reports,O=Example"]],
      );
    });
  });
}
