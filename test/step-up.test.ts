/**
 * Step-up: rules with `max_auth_age` / `require_totp` judged on the token's `auth_time` / `amr`,
 * `AuthService.StepUp`, and the client session's `onStepUp` retry; on PGlite and PostgreSQL,
 * through the public API, with a frozen clock shared by issuer, verifier and service.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, createClient, createRouterTransport, type Client, type Interceptor } from "@connectrpc/connect";
import { decodeJwt } from "jose";
import { AuthService } from "../gen/protoguard/v1/auth_pb.js";
import { UnannotatedService } from "../gen/guardtest/v1/guarded_pb.js";
import { authErrorMetadata } from "../src/exports/protoguard.js";
import { createPasswordHasher, enableTotp, generateTotp } from "../src/exports/auth-service.js";
import { createSession, type StepUpPrompt } from "../src/exports/client.js";
import { createAuthPolicy } from "../src/policy/policy.js";
import { describeRule, planRule, type RuleInit } from "../src/policy/rule.js";
import { checkExternalClaims } from "../src/identity/external-verifier.js";
import { resolveTrustedIssuers } from "../src/identity/trusted-issuers.js";
import { createTestAuth, createTestDatabase, type TestAuth } from "../src/exports/testing.js";
import type { Database } from "../src/exports/store.js";
import { eq } from "drizzle-orm";
import * as schema from "../src/store/schema.js";
import { bearer, eventually, expectError } from "./helpers/connect.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";
import { guardedRoutes } from "./helpers/guarded-service.js";

const T0 = 1_800_000_000_000;
const PASSWORD = "correct horse battery";

describe("planning max_auth_age and require_totp", () => {
  const problems = (rule: RuleInit) => {
    const planned = planRule(rule);
    return "problems" in planned ? planned.problems : [];
  };

  it("a duration in seconds, minutes or hours is planned, and implies authenticated", () => {
    assert.deepEqual(planRule({ maxAuthAge: "300s" }), {
      kind: "user",
      permissions: [],
      staff: false,
      superuser: false,
      stepUp: { maxAuthAgeSeconds: 300, requireTotp: false },
    });
    const minutes = planRule({ maxAuthAge: "5m", permissions: ["shop.refund"] });
    assert.ok(!("problems" in minutes) && minutes.kind === "user");
    assert.deepEqual(minutes.stepUp, { maxAuthAgeSeconds: 300, requireTotp: false });
    const totp = planRule({ requireTotp: true });
    assert.ok(!("problems" in totp) && totp.kind === "user");
    assert.deepEqual(totp.stepUp, { requireTotp: true });
    const hour = planRule({ maxAuthAge: "1h", requireTotp: true });
    assert.ok(!("problems" in hour) && hour.kind === "user");
    assert.deepEqual(hour.stepUp, { maxAuthAgeSeconds: 3600, requireTotp: true });
  });

  it("a malformed duration is refused, and so is public with a step-up field", () => {
    for (const bad of ["5 minutes", "0s", "1.5m", "300", "5d", "-5s", "1h30m", "9999999h"]) {
      const found = problems({ maxAuthAge: bad });
      assert.equal(found.length, 1, `${bad}: ${found.join("; ")}`);
      assert.match(found[0]!, /max_auth_age ".*" is not a duration/);
    }
    assert.match(
      problems({ public: true, requireTotp: true }).join(";"),
      /public cannot be combined with max_auth_age/,
    );
    assert.match(problems({ public: true, maxAuthAge: "5m" }).join(";"), /public cannot be combined with max_auth_age/);
  });

  it("the policy (server start, policy --check) refuses a malformed max_auth_age, and describes a good one", () => {
    assert.throws(
      () => createAuthPolicy({ services: [UnannotatedService], defaultRule: { maxAuthAge: "5 minutes" } }),
      (error: Error) => /server default rule: max_auth_age "5 minutes" is not a duration/.test(error.message),
    );
    const policy = createAuthPolicy({
      services: [UnannotatedService],
      defaultRule: { maxAuthAge: "5m", requireTotp: true },
    });
    assert.equal(describeRule(policy.defaultRule), "authenticated; max_auth_age: 300s; require_totp");
  });
});

describe("a trusted issuer's auth_time and amr", () => {
  it("are mapped onto the verified claims, and malformed ones are dropped", () => {
    const [config] = resolveTrustedIssuers([
      { issuer: "https://idp.example", jwks_url: "https://idp.example/jwks", audience: "api" },
    ]);
    const now = T0 / 1000;
    const base = { iss: "https://idp.example", aud: "api", sub: "u-1", iat: now - 10, exp: now + 300 };
    const claims = checkExternalClaims({ ...base, auth_time: now - 20, amr: ["pwd", "otp"] }, config!, "t", now);
    assert.equal(claims.authTime, now - 20);
    assert.deepEqual(claims.amr, ["pwd", "otp"]);
    const odd = checkExternalClaims({ ...base, auth_time: "yesterday", amr: "otp" }, config!, "t", now);
    assert.equal(odd.authTime, undefined);
    assert.equal(odd.amr, undefined);
  });
});

interface Fixture {
  t: TestAuth;
  auth: Client<typeof AuthService>;
  guarded: Client<typeof UnannotatedService>;
  clock: { ms: number };
}

async function fixture(defaultRule: RuleInit, database?: Database): Promise<Fixture> {
  const clock = { ms: T0 };
  const now = () => clock.ms;
  const t = await createTestAuth({
    ...(database && { database }),
    routes: guardedRoutes,
    defaultRule,
    now,
    passwordHasher: createPasswordHasher({ scrypt: { logN: 10 } }),
    authService: () => ({ now }),
  });
  return {
    t,
    auth: createClient(AuthService, t.transport),
    guarded: createClient(UnannotatedService, t.transport),
    clock,
  };
}

/** The app's transport: the guarded services behind the fixture's auth layer, `session` on the client side. */
function appTransport(f: Fixture, session: Interceptor) {
  return createRouterTransport(guardedRoutes, {
    router: { interceptors: [f.t.auth.interceptor], requestGate: f.t.auth.requestGate },
    transport: { interceptors: [session] },
  });
}

function stepUpSuite(database: () => Database | undefined) {
  let f: Fixture;
  let totp: Fixture;
  before(async () => {
    f = await fixture({ maxAuthAge: "60s" }, database());
    totp = await fixture({ requireTotp: true }, database());
  });
  after(async () => {
    await f?.t.close();
    await totp?.t.close();
  });

  it("a token older than max_auth_age is refused STEP_UP_REQUIRED with the bound; StepUp's token passes", async () => {
    await f.t.createUser({ username: "ada", password: PASSWORD });
    const login = await f.auth.login({ username: "ada", password: PASSWORD });
    const claims = decodeJwt(login.accessToken);
    assert.equal(claims.auth_time, T0 / 1000);
    assert.deepEqual(claims.amr, ["pwd"]);
    assert.equal((await f.guarded.anything({ text: "fresh" }, bearer(login.accessToken))).username, "ada");

    f.clock.ms += 61_000;
    const refused = await expectError(
      f.guarded.anything({ text: "stale" }, bearer(login.accessToken)),
      Code.Unauthenticated,
      "STEP_UP_REQUIRED",
    );
    assert.deepEqual(authErrorMetadata(refused), { maxAuthAgeSeconds: "60", requireTotp: "false" });

    await expectError(
      f.auth.stepUp({ password: "wrong" }, bearer(login.accessToken)),
      Code.Unauthenticated,
      "INVALID_CREDENTIALS",
    );
    const stepped = await f.auth.stepUp({ password: PASSWORD }, bearer(login.accessToken));
    const fresh = decodeJwt(stepped.accessToken);
    assert.equal(fresh.auth_time, f.clock.ms / 1000);
    assert.deepEqual(fresh.amr, ["pwd"]);
    const audited = await f.t.database.db
      .select({ subject: schema.auditEvents.subject })
      .from(schema.auditEvents)
      .where(eq(schema.auditEvents.type, "session.stepped_up"));
    assert.equal(audited.length, 1, "the step-up is audited");
    assert.equal((await f.guarded.anything({ text: "again" }, bearer(stepped.accessToken))).username, "ada");
    // The token it replaces is revoked: the session keeps one live access token.
    // On PostgreSQL the principal cache learns of the revocation by notification, a moment later.
    await eventually(
      () =>
        expectError(
          f.guarded.anything({ text: "old" }, bearer(login.accessToken)),
          Code.Unauthenticated,
          "TOKEN_REVOKED",
        ),
      2000,
    );

    // Same session: a refresh carries the stepped-up auth_time over, unchanged; logout revokes it.
    f.clock.ms += 10_000;
    const refreshed = await f.auth.refresh({ refreshToken: login.refreshToken });
    assert.equal(decodeJwt(refreshed.accessToken).auth_time, fresh.auth_time);
    await f.auth.logout({ refreshToken: refreshed.refreshToken });
    // On PostgreSQL the principal cache learns of the revocation by notification, a moment later.
    await eventually(
      () =>
        expectError(
          f.guarded.anything({ text: "out" }, bearer(stepped.accessToken)),
          Code.Unauthenticated,
          "TOKEN_REVOKED",
        ),
      2000,
    );
  });

  it("refresh keeps the login's auth_time, so it does not reset the step-up clock", async () => {
    await f.t.createUser({ username: "bo", password: PASSWORD });
    const loginAt = f.clock.ms;
    const login = await f.auth.login({ username: "bo", password: PASSWORD });
    f.clock.ms += 61_000;
    const refreshed = await f.auth.refresh({ refreshToken: login.refreshToken });
    assert.equal(decodeJwt(refreshed.accessToken).auth_time, loginAt / 1000);
    await expectError(
      f.guarded.anything({ text: "x" }, bearer(refreshed.accessToken)),
      Code.Unauthenticated,
      "STEP_UP_REQUIRED",
    );
  });

  it("StepUp failures count against the login throttle", async () => {
    await f.t.createUser({ username: "cy", password: PASSWORD });
    const login = await f.auth.login({ username: "cy", password: PASSWORD });
    for (let i = 0; i < 6; i++) {
      await expectError(
        f.auth.stepUp({ password: `guess-${i}` }, bearer(login.accessToken)),
        Code.Unauthenticated,
        "INVALID_CREDENTIALS",
      );
    }
    await expectError(
      f.auth.stepUp({ password: PASSWORD }, bearer(login.accessToken)),
      Code.ResourceExhausted,
      "LOGIN_THROTTLED",
    );
    await expectError(f.auth.login({ username: "cy", password: PASSWORD }), Code.ResourceExhausted, "LOGIN_THROTTLED");
  });

  it("StepUp needs a valid access token", async () => {
    await expectError(f.auth.stepUp({ password: PASSWORD }), Code.Unauthenticated, "TOKEN_MISSING");
    await expectError(f.auth.stepUp({ password: PASSWORD }, bearer("a.b.c")), Code.Unauthenticated, "TOKEN_MALFORMED");
  });

  it("require_totp refuses a pwd-only token; StepUp needs the code and its token passes", async () => {
    await totp.t.createUser({ username: "di", password: PASSWORD });
    const login = await totp.auth.login({ username: "di", password: PASSWORD });
    const refused = await expectError(
      totp.guarded.anything({ text: "x" }, bearer(login.accessToken)),
      Code.Unauthenticated,
      "STEP_UP_REQUIRED",
    );
    assert.deepEqual(authErrorMetadata(refused), { requireTotp: "true" });
    // Without TOTP enrolled, no code can be given: the password alone still shows no otp.
    const pwdOnly = await totp.auth.stepUp({ password: PASSWORD }, bearer(login.accessToken));
    assert.deepEqual(decodeJwt(pwdOnly.accessToken).amr, ["pwd"]);
    await expectError(
      totp.guarded.anything({ text: "x" }, bearer(pwdOnly.accessToken)),
      Code.Unauthenticated,
      "STEP_UP_REQUIRED",
    );

    const { secret } = await enableTotp(totp.t.database, "di");
    await expectError(
      totp.auth.stepUp({ password: PASSWORD }, bearer(pwdOnly.accessToken)),
      Code.Unauthenticated,
      "INVALID_CREDENTIALS",
    );
    const wrong = generateTotp(secret, totp.clock.ms) === "000000" ? "000001" : "000000";
    await expectError(
      totp.auth.stepUp({ password: PASSWORD, otpCode: wrong }, bearer(pwdOnly.accessToken)),
      Code.Unauthenticated,
      "INVALID_CREDENTIALS",
    );
    const stepped = await totp.auth.stepUp(
      { password: PASSWORD, otpCode: generateTotp(secret, totp.clock.ms) },
      bearer(pwdOnly.accessToken),
    );
    assert.deepEqual(decodeJwt(stepped.accessToken).amr, ["pwd", "otp"]);
    assert.equal((await totp.guarded.anything({ text: "ok" }, bearer(stepped.accessToken))).username, "di");
  });

  it("the client session asks onStepUp, steps up and retries the call once", async () => {
    await f.t.createUser({ username: "eve", password: PASSWORD });
    const prompts: StepUpPrompt[] = [];
    const session = createSession({
      transport: f.t.transport,
      now: () => f.clock.ms,
      onStepUp: async (required) => {
        prompts.push(required);
        return { password: PASSWORD };
      },
    });
    await session.login({ username: "eve", password: PASSWORD });
    const client = createClient(UnannotatedService, appTransport(f, session.interceptor));
    f.clock.ms += 61_000;
    assert.equal((await client.anything({ text: "after" })).username, "eve");
    assert.deepEqual(prompts, [{ maxAuthAge: 60, requireTotp: false }]);
    // The stepped-up token is kept: the next call needs no prompt.
    assert.equal((await client.anything({ text: "next" })).username, "eve");
    assert.equal(prompts.length, 1);

    // A callback that gives up: the refusal reaches the caller, after one prompt.
    const giveUp = createSession({ transport: f.t.transport, now: () => f.clock.ms, onStepUp: async () => undefined });
    await giveUp.login({ username: "eve", password: PASSWORD });
    f.clock.ms += 61_000;
    await expectError(
      createClient(UnannotatedService, appTransport(f, giveUp.interceptor)).anything({ text: "no" }),
      Code.Unauthenticated,
      "STEP_UP_REQUIRED",
    );
  });
}

describe("step-up on PGlite", () => {
  stepUpSuite(() => undefined);
});

describeOr(skipWithoutPostgres, "step-up on PostgreSQL", { timeout: 120_000 }, () => {
  let database: Database | undefined;
  before(async () => {
    database = await createTestDatabase({ driver: "postgres", url: postgresUrl! });
  });
  after(async () => {
    await database?.close();
  });
  describe("suite", () => stepUpSuite(() => database));
});
