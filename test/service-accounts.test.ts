/**
 * Service accounts through the public API: created in the store, exchanging
 * client credentials for a token at AuthService/ServiceToken, then calling
 * methods whose rules admit users, services or both. Runs on PGlite, and on
 * PostgreSQL as well when DATABASE_URL is set.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, createClient, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { decodeJwt } from "jose";
import { KindService } from "../gen/guardtest/v1/kinds_pb.js";
import {
  createKeyring,
  createTokenIssuer,
  createTokenVerifier,
  getPrincipal,
  getUser,
  requirePermission,
  requireUser,
} from "../src/exports/protoguard.js";
import { describeRule, planRule, principalKind } from "../src/exports/core.js";
import { PrincipalKind, RuleSchema } from "../gen/protoguard/v1/options_pb.js";
import {
  AuthService,
  createAuthService,
  generateClientCredentials,
  generateClientSecret,
} from "../src/exports/auth-service.js";
import { ConfigError, loadConfig } from "../src/runtime/config.js";
import {
  createServiceAccount,
  deleteServiceAccount,
  grantUserPermissions,
  listServiceAccounts,
  revokeUserPermissions,
  rotateServiceSecret,
  setPasswordHash,
  setServiceActive,
  type ServiceAccountInfo,
} from "../src/exports/store.js";
import { createTestAuth, createTestDatabase, type TestAuth, type TestDatabase } from "../src/exports/testing.js";
import { issueSession } from "../src/lifecycle/sessions.js";
import { bearer, expectError } from "./helpers/connect.js";
import { postgresUrl } from "./helpers/env.js";

/** Handlers that say who called: `getUser` / `getPrincipal` as text, and a requireUser / requirePermission probe. */
function kindRoutes(router: ConnectRouter): void {
  const who = (_req: { text: string }, ctx: HandlerContext) => {
    const principal = getPrincipal(ctx);
    const kind = principal === undefined ? "anonymous" : principalKind(principal);
    return { text: `user=${getUser(ctx)?.username ?? "-"} kind=${kind}`, username: principal?.username ?? "" };
  };
  router.service(KindService, {
    forUsers: (req, ctx) => ({ text: req.text, username: requireUser(ctx).username }),
    forServices: who,
    chargeForServices: who,
    authenticated(req, ctx) {
      if (req.text === "require-user") requireUser(ctx);
      if (req.text === "require-permission") requirePermission(ctx, "billing.charge");
      return who(req, ctx);
    },
    charge: who,
    public: who,
  });
}

/** A mutable clock for the AuthService (grace periods); the issuer keeps real time. */
let clock = Date.now();

async function fixture(database?: TestDatabase): Promise<TestAuth> {
  return createTestAuth({
    routes: kindRoutes,
    authService: () => ({ now: () => clock }),
    ...(database !== undefined && { database }),
  });
}

for (const backend of ["pglite", "postgres"] as const) {
  const skip = backend === "postgres" && postgresUrl === undefined;
  describe(`service accounts (${backend})`, {
    skip: skip && "DATABASE_URL not set: PostgreSQL part skipped",
    timeout: 180_000,
  }, () => {
    let db: TestDatabase | undefined;
    let t: TestAuth;
    let auth: ReturnType<typeof createClient<typeof AuthService>>;
    let kinds: ReturnType<typeof createClient<typeof KindService>>;

    before(async () => {
      if (backend === "postgres") db = await createTestDatabase({ url: postgresUrl });
      t = await fixture(db);
      auth = createClient(AuthService, t.transport);
      kinds = createClient(KindService, t.transport);
    });
    after(async () => {
      await t?.close();
      await db?.close();
    });

    /** A new service account with fresh credentials, created through the store. */
    async function newService(name: string, permissions: string[] = []) {
      const credentials = generateClientCredentials();
      const account = await createServiceAccount(t.database.db, {
        name,
        clientId: credentials.clientId,
        secretHash: await t.passwordHasher.hash(credentials.clientSecret),
      });
      if (permissions.length > 0) await grantUserPermissions(t.database.db, name, permissions);
      return { account, ...credentials };
    }

    /**
     * Runs a write and waits until the principal cache has dropped what it
     * knew of `userId`: on PostgreSQL the notification arrives a moment
     * after the commit, and the next call must not race it.
     */
    async function settled<T>(userId: number, write: () => Promise<T>): Promise<T> {
      let seen!: () => void;
      const invalidated = new Promise<void>((resolve) => (seen = resolve));
      const stop = t.principals.onInvalidation((event) => {
        if (event.kind === "all" || (event.kind === "user" && event.userId === userId)) seen();
      });
      try {
        const result = await write();
        await invalidated;
        return result;
      } finally {
        stop();
      }
    }

    const exchange = (clientId: string, clientSecret: string) => auth.serviceToken({ clientId, clientSecret });

    it("exchanges client credentials for a short-lived access token of the service's user row, with no refresh token", async () => {
      const svc = await newService("billing-exchange");
      const response = await exchange(svc.clientId, svc.clientSecret);
      assert.equal(response.tokenType, "Bearer");
      assert.equal(response.expiresIn, 300);
      const claims = decodeJwt(response.accessToken);
      assert.equal(claims["user_id"], svc.account.id);
      assert.equal(claims["token_type"], "access");
      assert.equal((claims.exp as number) - Math.floor(claims.iat as number), 300);
      assert.equal(Object.keys(response).includes("refreshToken"), false);
      const me = await auth.whoAmI({}, bearer(response.accessToken));
      assert.equal(me.kind, "service");
      assert.equal(me.user?.username, "billing-exchange");
      // The access token is no refresh token either.
      await expectError(auth.refresh({ refreshToken: response.accessToken }), Code.Unauthenticated, "TOKEN_WRONG_TYPE");
      // Nor does a refresh token minted for it by hand (internal API) refresh.
      const handMade = await issueSession(t.database.db, t.issuer, svc.account.id);
      await expectError(auth.refresh({ refreshToken: handMade.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    });

    it("refuses a wrong secret, an unknown client id and empty fields alike", async () => {
      const svc = await newService("billing-wrong");
      const message = "invalid client credentials";
      await expectError(
        exchange(svc.clientId, generateClientSecret()),
        Code.Unauthenticated,
        "INVALID_CREDENTIALS",
        message,
      );
      await expectError(
        exchange("svc_unknown", svc.clientSecret),
        Code.Unauthenticated,
        "INVALID_CREDENTIALS",
        message,
      );
      await expectError(exchange(svc.clientId, ""), Code.Unauthenticated, "INVALID_CREDENTIALS", message);
      await expectError(exchange("", svc.clientSecret), Code.Unauthenticated, "INVALID_CREDENTIALS", message);
      await expectError(
        exchange("x".repeat(65), svc.clientSecret),
        Code.Unauthenticated,
        "INVALID_CREDENTIALS",
        message,
      );
    });

    it("never lets a service account log in with a password, even one written into its row", async () => {
      const svc = await newService("billing-login");
      await expectError(
        auth.login({ username: "billing-login", password: svc.clientSecret }),
        Code.Unauthenticated,
        "INVALID_CREDENTIALS",
        "invalid credentials",
      );
      await setPasswordHash(t.database.db, svc.account.id, await t.passwordHasher.hash("a-known-password"));
      await expectError(
        auth.login({ username: "billing-login", password: "a-known-password" }),
        Code.Unauthenticated,
        "INVALID_CREDENTIALS",
        "invalid credentials",
      );
    });

    it("principal_kind rules: a user is refused on service-only methods, a service on user-only ones", async () => {
      const svc = await newService("billing-kinds", ["billing.charge"]);
      const service = bearer((await exchange(svc.clientId, svc.clientSecret)).accessToken);
      const alice = await t.createUser({ username: "alice-kinds", permissions: ["billing.charge"] });
      const user = await t.authHeaders(alice);

      assert.equal((await kinds.forServices({}, service)).text, "user=- kind=service");
      assert.equal((await kinds.chargeForServices({}, service)).text, "user=- kind=service");
      assert.equal((await kinds.forUsers({ text: "hi" }, { headers: user })).username, "alice-kinds");

      await expectError(
        kinds.forUsers({}, service),
        Code.PermissionDenied,
        "PRINCIPAL_KIND",
        "only users may call this method",
      );
      await expectError(
        kinds.forServices({}, { headers: user }),
        Code.PermissionDenied,
        "PRINCIPAL_KIND",
        "only service accounts may call this method",
      );
      // The permission alone does not make a person a service.
      await expectError(kinds.chargeForServices({}, { headers: user }), Code.PermissionDenied, "PRINCIPAL_KIND");
      // Anonymous callers are unauthenticated, never PRINCIPAL_KIND.
      await expectError(kinds.forServices({}), Code.Unauthenticated, "TOKEN_MISSING");
    });

    it("old rules keep their meaning: authenticated admits a service, a permission rule only with the grant", async () => {
      const svc = await newService("billing-old-rules");
      const service = bearer((await exchange(svc.clientId, svc.clientSecret)).accessToken);
      assert.equal((await kinds.authenticated({}, service)).text, "user=- kind=service");
      assert.equal((await kinds.public({}, service)).text, "user=- kind=service");
      await expectError(kinds.charge({}, service), Code.PermissionDenied, "PERMISSION_MISSING");
      await expectError(kinds.chargeForServices({}, service), Code.PermissionDenied, "PERMISSION_MISSING");

      await settled(svc.account.id, () => grantUserPermissions(t.database.db, "billing-old-rules", ["billing.charge"]));
      assert.equal((await kinds.charge({}, service)).text, "user=- kind=service");
      assert.equal((await kinds.chargeForServices({}, service)).text, "user=- kind=service");

      await settled(svc.account.id, () =>
        revokeUserPermissions(t.database.db, "billing-old-rules", ["billing.charge"]),
      );
      await expectError(kinds.charge({}, service), Code.PermissionDenied, "PERMISSION_MISSING");
    });

    it("handlers: getUser is only for people; requireUser refuses a service with PERMISSION_DENIED; requirePermission serves both", async () => {
      const svc = await newService("billing-helpers", ["billing.charge"]);
      const service = bearer((await exchange(svc.clientId, svc.clientSecret)).accessToken);
      await expectError(
        kinds.authenticated({ text: "require-user" }, service),
        Code.PermissionDenied,
        "PRINCIPAL_KIND",
        "only users may call this method",
      );
      assert.equal((await kinds.authenticated({ text: "require-permission" }, service)).text, "user=- kind=service");
      const bob = await t.createUser({ username: "bob-helpers" });
      assert.equal(
        (await kinds.authenticated({ text: "require-user" }, { headers: await t.authHeaders(bob) })).text,
        "user=bob-helpers kind=user",
      );
    });

    it("rotation: with a grace period both secrets work until it ends; without one the old secret and its tokens die at once", async () => {
      const svc = await newService("billing-rotate", ["billing.charge"]);
      const oldToken = bearer((await exchange(svc.clientId, svc.clientSecret)).accessToken);
      const rotatedAt = new Date();
      clock = rotatedAt.getTime();
      const second = generateClientSecret();
      const secondHash = await t.passwordHasher.hash(second);
      const rotated = await settled(svc.account.id, () =>
        rotateServiceSecret(t.database.db, "billing-rotate", secondHash, 60, rotatedAt),
      );
      assert.equal(rotated.previousSecretExpiresAt?.getTime(), rotatedAt.getTime() + 60_000);
      // Tokens issued before a graceful rotation stay valid.
      assert.equal((await kinds.charge({}, oldToken)).text, "user=- kind=service");
      clock = rotatedAt.getTime() + 30_000;
      await exchange(svc.clientId, svc.clientSecret);
      await exchange(svc.clientId, second);
      clock = rotatedAt.getTime() + 61_000;
      await expectError(exchange(svc.clientId, svc.clientSecret), Code.Unauthenticated, "INVALID_CREDENTIALS");
      const secondToken = bearer((await exchange(svc.clientId, second)).accessToken);
      clock = Date.now();

      const third = generateClientSecret();
      const thirdHash = await t.passwordHasher.hash(third);
      await settled(svc.account.id, () => rotateServiceSecret(t.database.db, "billing-rotate", thirdHash, 0));
      await expectError(exchange(svc.clientId, second), Code.Unauthenticated, "INVALID_CREDENTIALS");
      await expectError(kinds.charge({}, secondToken), Code.Unauthenticated, "TOKEN_REVOKED");
      assert.equal(
        (await kinds.charge({}, bearer((await exchange(svc.clientId, third)).accessToken))).text,
        "user=- kind=service",
      );
    });

    it("deactivation and deletion kill outstanding tokens and the credentials", async () => {
      const svc = await newService("billing-gone", ["billing.charge"]);
      const token = bearer((await exchange(svc.clientId, svc.clientSecret)).accessToken);
      assert.equal((await kinds.charge({}, token)).text, "user=- kind=service");

      await settled(svc.account.id, () => setServiceActive(t.database.db, "billing-gone", false));
      await expectError(kinds.charge({}, token), Code.Unauthenticated, "USER_INACTIVE");
      await expectError(exchange(svc.clientId, svc.clientSecret), Code.Unauthenticated, "INVALID_CREDENTIALS");
      await settled(svc.account.id, () => setServiceActive(t.database.db, "billing-gone", true));
      // Reactivated, but the token from before stays dead.
      await expectError(kinds.charge({}, token), Code.Unauthenticated, "TOKEN_REVOKED");
      const fresh = bearer((await exchange(svc.clientId, svc.clientSecret)).accessToken);
      assert.equal((await kinds.charge({}, fresh)).text, "user=- kind=service");

      await settled(svc.account.id, () => deleteServiceAccount(t.database.db, "billing-gone"));
      await expectError(kinds.charge({}, fresh), Code.Unauthenticated, "USER_INACTIVE");
      await expectError(exchange(svc.clientId, svc.clientSecret), Code.Unauthenticated, "INVALID_CREDENTIALS");
      const names = (await listServiceAccounts(t.database.db)).map((a: ServiceAccountInfo) => a.name);
      assert.equal(names.includes("billing-gone"), false);
    });
  });
}

describe("service account configuration", () => {
  it("PROTOGUARD_SERVICE_TOKEN_TTL defaults to 300 or the access TTL, and may not exceed it", () => {
    assert.equal(loadConfig({}).serviceTokenTtlSeconds, 300);
    assert.equal(loadConfig({ PROTOGUARD_ACCESS_TTL: "60" }).serviceTokenTtlSeconds, 60);
    assert.equal(loadConfig({ PROTOGUARD_SERVICE_TOKEN_TTL: "30" }).serviceTokenTtlSeconds, 30);
    assert.throws(
      () => loadConfig({ PROTOGUARD_ACCESS_TTL: "60", PROTOGUARD_SERVICE_TOKEN_TTL: "120" }),
      (error: Error) =>
        error instanceof ConfigError &&
        /PROTOGUARD_SERVICE_TOKEN_TTL must be an integer from 1 to 60/.test(error.message),
    );
  });

  it("PROTOGUARD_TLS_CLIENT_CA needs TLS", () => {
    assert.throws(
      () => loadConfig({ PROTOGUARD_TLS_CLIENT_CA: "ca.pem" }),
      (error: Error) =>
        error instanceof ConfigError && /PROTOGUARD_TLS_CLIENT_CA needs PROTOGUARD_TLS_CERT/.test(error.message),
    );
    const config = loadConfig({
      PROTOGUARD_TLS_CERT: "c.pem",
      PROTOGUARD_TLS_KEY: "k.pem",
      PROTOGUARD_TLS_CLIENT_CA: "ca.pem",
    });
    assert.equal(config.tlsClientCaPath, "ca.pem");
  });

  it("createAuthService refuses a service token lifetime above the access lifetime", async () => {
    const database = await createTestDatabase();
    try {
      const keyring = await createKeyring([{ alg: "HS256", secret: "a-config-test-secret-of-at-least-32-bytes" }]);
      const issuer = createTokenIssuer({ keyring, accessTtlSeconds: 60 });
      const verifier = createTokenVerifier({ keyring });
      assert.throws(
        () => createAuthService({ database, issuer, verifier, serviceTokenTtlSeconds: 61 }),
        /serviceTokenTtlSeconds must be an integer in 1..60/,
      );
      assert.throws(() => createAuthService({ database, issuer, verifier, serviceTokenTtlSeconds: 0 }), RangeError);
    } finally {
      await database.close();
    }
  });
});

describe("principal_kind in planned rules", () => {
  it("plans, describes and validates the kind", () => {
    const services = planRule(
      create(RuleSchema, { principalKind: PrincipalKind.SERVICE, permissions: ["billing.charge"] }),
    );
    assert.ok(!("problems" in services));
    assert.equal(describeRule(services), "principal_kind: SERVICE; permissions: billing.charge");
    const users = planRule({ principalKind: "user" });
    assert.ok(!("problems" in users));
    assert.equal(describeRule(users), "principal_kind: USER");
    // Without a kind the plan is what it always was.
    assert.deepEqual(planRule({ authenticated: true }), {
      kind: "user",
      permissions: [],
      staff: false,
      superuser: false,
    });
  });

  it("refuses public with a kind, SERVICE with staff or superuser, and unknown kinds", () => {
    const problems = (rule: Parameters<typeof planRule>[0]) => {
      const planned = planRule(rule);
      return "problems" in planned ? planned.problems.join(" | ") : "";
    };
    assert.match(problems({ public: true, principalKind: "service" }), /public cannot be combined with principal_kind/);
    assert.match(
      problems({ principalKind: "service", staff: true }),
      /SERVICE cannot be combined with staff or superuser/,
    );
    assert.match(problems({ principalKind: "service", superuser: true }), /SERVICE cannot be combined/);
    assert.equal(problems({ principalKind: "user", staff: true }), "");
    assert.match(
      problems(create(RuleSchema, { principalKind: 7 as PrincipalKind })),
      /principal_kind 7 is not a known kind/,
    );
    assert.match(
      problems(create(RuleSchema, { public: true, principalKind: PrincipalKind.USER })),
      /public cannot be combined with principal_kind/,
    );
  });
});
