/**
 * The core promise, through the public API on Connect's in-memory transport:
 * every rule kind on every RPC kind, and every kind of bad token.
 */
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { SignJWT } from "jose";
import { GuardedService, StaffOnlyService, UnannotatedService } from "../gen/guardtest/v1/guarded_pb.js";
import { MalformedRuleService, MalformedService } from "../gen/guardtest/v1/malformed_pb.js";
import { authErrorReason, PolicyError, type DecisionEvent } from "../src/exports/protoguard.js";
import { createAuthPolicy } from "../src/exports/core.js";
import { deleteUser, revokeUserPermissions, setUserActive } from "../src/exports/store.js";
import { findUserByUsername } from "../src/store/users.js";
import { createTestAuth, type TestAuth } from "../src/exports/testing.js";
import { guardedRoutes } from "./helpers/guarded-service.js";
import { collect, eventually } from "./helpers/connect.js";
import { TEST_SECRET as SECRET } from "./helpers/secrets.js";

async function expectCode(promise: Promise<unknown>, code: Code, reason?: string): Promise<ConnectError> {
  try {
    await promise;
  } catch (e) {
    const err = ConnectError.from(e);
    assert.equal(err.code, code, `expected ${Code[code]}, got ${Code[err.code]}: ${err.message}`);
    if (reason !== undefined) assert.equal(authErrorReason(err), reason);
    return err;
  }
  assert.fail(`expected ${Code[code]}, but the call succeeded`);
}

async function* stream<T>(...items: T[]) {
  for (const item of items) yield item;
}

describe("rules enforced over the in-memory transport", { timeout: 120_000 }, () => {
  let t: TestAuth;
  let client: Client<typeof GuardedService>;
  let staffOnly: Client<typeof StaffOnlyService>;
  let unannotated: Client<typeof UnannotatedService>;
  const h: Record<string, { authorization: string }> = {};
  const events: DecisionEvent[] = [];

  before(async () => {
    t = await createTestAuth({
      routes: guardedRoutes,
      keys: [{ alg: "HS256", secret: SECRET }],
      onDecision: (e) => events.push(e),
    });
    client = createClient(GuardedService, t.transport);
    staffOnly = createClient(StaffOnlyService, t.transport);
    unannotated = createClient(UnannotatedService, t.transport);
    const users = {
      plain: await t.createUser({ username: "plain" }),
      viewer: await t.createUser({ username: "viewer", permissions: ["shop.view_order"] }),
      grouped: await t.createUser({ username: "grouped", groups: ["order-admins"] }),
      staff: await t.createUser({ username: "staff", isStaff: true }),
      root: await t.createUser({ username: "root", isSuperuser: true }),
    };
    await t.createUser({ username: "admin-group-seed", groups: ["order-admins"] });
    const { grantGroupPermissions } = await import("../src/exports/store.js");
    await grantGroupPermissions(t.database.db, "order-admins", ["shop.view_order", "shop.change_order"]);
    for (const [name, user] of Object.entries(users)) h[name] = await t.authHeaders(user);
  });
  after(async () => t?.close());

  it("public: anonymous allowed, and a token still identifies the caller", async () => {
    assert.equal((await client.publicUnary({ text: "a" })).username, "");
    assert.equal((await client.publicUnary({ text: "a" }, { headers: h.viewer })).username, "viewer");
  });

  it("public: a bad token is still refused, not silently ignored", async () => {
    await expectCode(
      client.publicUnary({}, { headers: { authorization: "Bearer YQ.Yg.Yw" } }),
      Code.Unauthenticated,
      "TOKEN_INVALID",
    );
  });

  it("authenticated: no token is UNAUTHENTICATED, any active user passes", async () => {
    const err = await expectCode(client.authenticatedUnary({}), Code.Unauthenticated, "TOKEN_MISSING");
    assert.equal(err.rawMessage, "authentication required");
    assert.equal((await client.authenticatedUnary({}, { headers: h.plain })).username, "plain");
  });

  it("permission: granted directly or through a group; missing is PERMISSION_DENIED", async () => {
    assert.equal((await client.permissionUnary({}, { headers: h.viewer })).username, "viewer");
    assert.equal((await client.permissionUnary({}, { headers: h.grouped })).username, "grouped");
    const err = await expectCode(
      client.permissionUnary({}, { headers: h.plain }),
      Code.PermissionDenied,
      "PERMISSION_MISSING",
    );
    assert.match(err.rawMessage, /shop\.view_order/);
    await expectCode(client.permissionUnary({}), Code.Unauthenticated, "TOKEN_MISSING");
  });

  it("several permissions: all are required", async () => {
    await expectCode(
      client.twoPermissionsUnary({}, { headers: h.viewer }),
      Code.PermissionDenied,
      "PERMISSION_MISSING",
    );
    assert.equal((await client.twoPermissionsUnary({}, { headers: h.grouped })).username, "grouped");
  });

  it("staff and superuser", async () => {
    assert.equal((await client.staffUnary({}, { headers: h.staff })).username, "staff");
    await expectCode(client.staffUnary({}, { headers: h.viewer }), Code.PermissionDenied, "STAFF_REQUIRED");
    assert.equal((await client.superuserUnary({}, { headers: h.root })).username, "root");
    await expectCode(client.superuserUnary({}, { headers: h.staff }), Code.PermissionDenied, "SUPERUSER_REQUIRED");
  });

  it("a superuser holds every permission, even one no row names", async () => {
    assert.equal((await client.twoPermissionsUnary({}, { headers: h.root })).username, "root");
  });

  it("server default (authenticated) covers unannotated methods", async () => {
    await expectCode(client.defaultUnary({}), Code.Unauthenticated, "TOKEN_MISSING");
    await expectCode(unannotated.anything({}), Code.Unauthenticated, "TOKEN_MISSING");
    assert.equal((await unannotated.anything({}, { headers: h.plain })).username, "plain");
  });

  it("service rule applies to methods without their own; a method rule overrides it", async () => {
    await expectCode(staffOnly.inherited({}, { headers: h.plain }), Code.PermissionDenied, "STAFF_REQUIRED");
    assert.equal((await staffOnly.inherited({}, { headers: h.staff })).username, "staff");
    assert.equal((await staffOnly.overridden({})).username, "");
    await expectCode(collect(staffOnly.inheritedServerStream({}, { headers: h.plain })), Code.PermissionDenied);
  });

  it("server streaming", async () => {
    assert.deepEqual(
      (await collect(client.publicServerStream({ text: "x" }))).map((p) => p.username),
      ["", ""],
    );
    await expectCode(
      collect(client.permissionServerStream({}, { headers: h.plain })),
      Code.PermissionDenied,
      "PERMISSION_MISSING",
    );
    await expectCode(collect(client.permissionServerStream({})), Code.Unauthenticated, "TOKEN_MISSING");
    assert.equal((await collect(client.permissionServerStream({}, { headers: h.viewer }))).length, 2);
  });

  it("client streaming", async () => {
    const ok = await client.staffClientStream(stream({ text: "a" }, { text: "b" }), { headers: h.staff });
    assert.deepEqual([ok.text, ok.username], ["a,b", "staff"]);
    await expectCode(
      client.staffClientStream(stream({ text: "a" }), { headers: h.plain }),
      Code.PermissionDenied,
      "STAFF_REQUIRED",
    );
    await expectCode(client.staffClientStream(stream({ text: "a" })), Code.Unauthenticated, "TOKEN_MISSING");
    assert.equal((await client.publicClientStream(stream({ text: "z" }))).text, "z");
  });

  it("bidi streaming", async () => {
    const out = await collect(client.superuserBidiStream(stream({ text: "1" }, { text: "2" }), { headers: h.root }));
    assert.deepEqual(
      out.map((p) => `${p.text}:${p.username}`),
      ["1:root", "2:root"],
    );
    await expectCode(
      collect(client.superuserBidiStream(stream({ text: "1" }), { headers: h.staff })),
      Code.PermissionDenied,
    );
    await expectCode(
      collect(client.authenticatedBidiStream(stream({ text: "1" }))),
      Code.Unauthenticated,
      "TOKEN_MISSING",
    );
  });

  it("expired tokens say so, with reason TOKEN_EXPIRED", async () => {
    const past = await createTestAuth({
      routes: guardedRoutes,
      database: t.database,
      keys: [{ alg: "HS256", secret: SECRET }],
      now: () => Date.now() - 3600_000,
    });
    try {
      const old = await past.accessToken((await past.createUser({ username: "time-traveller" })).id);
      const err = await expectCode(
        client.authenticatedUnary({}, { headers: { authorization: `Bearer ${old}` } }),
        Code.Unauthenticated,
        "TOKEN_EXPIRED",
      );
      assert.match(err.rawMessage, /expired/);
    } finally {
      await past.close();
    }
  });

  it("a token signed with another secret is refused", async () => {
    const user = await t.createUser({ username: "forged" });
    const token = await new SignJWT({ token_type: "access", user_id: user.id, jti: "x".repeat(32) })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode("another-secret-that-is-at-least-32-bytes"));
    await expectCode(
      client.authenticatedUnary({}, { headers: { authorization: `Bearer ${token}` } }),
      Code.Unauthenticated,
      "TOKEN_INVALID",
    );
  });

  it("a token with an algorithm the key is not bound to is refused (RS256, none)", async () => {
    const user = await t.createUser({ username: "wrong-alg" });
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const rs = await new SignJWT({ token_type: "access", user_id: user.id, jti: "r".repeat(32) })
      .setProtectedHeader({ alg: "RS256" })
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(privateKey);
    await expectCode(
      client.authenticatedUnary({}, { headers: { authorization: `Bearer ${rs}` } }),
      Code.Unauthenticated,
      "TOKEN_INVALID",
    );
    const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const now = Math.floor(Date.now() / 1000);
    const payload = b64({ token_type: "access", user_id: user.id, jti: "n".repeat(32), iat: now, exp: now + 60 });
    const none = `${b64({ alg: "none", typ: "JWT" })}.${payload}.AAAA`;
    await expectCode(
      client.authenticatedUnary({}, { headers: { authorization: `Bearer ${none}` } }),
      Code.Unauthenticated,
    );
  });

  it("a refresh token is not an access token", async () => {
    const user = await t.createUser({ username: "refresher" });
    const refresh = await t.issuer.issueRefresh(user.id);
    await expectCode(
      client.authenticatedUnary({}, { headers: { authorization: `Bearer ${refresh.token}` } }),
      Code.Unauthenticated,
      "TOKEN_WRONG_TYPE",
    );
  });

  it("a simplejwt-shaped HS256 token made by another implementation is accepted", async () => {
    const user = await t.createUser({ username: "from-django" });
    const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
    // Whole-second iat, as simplejwt writes it; rounded up so it is not
    // before the account's creation (which would count as revoked).
    const now = Math.ceil(Date.now() / 1000);
    const input = `${b64({ typ: "JWT", alg: "HS256" })}.${b64({ token_type: "access", exp: now + 240, iat: now, jti: "0123456789abcdef0123456789abcdef", user_id: user.id })}`;
    const token = `${input}.${createHmac("sha256", SECRET).update(input).digest("base64url")}`;
    assert.equal(
      (await client.authenticatedUnary({}, { headers: { authorization: `Bearer ${token}` } })).username,
      "from-django",
    );
  });

  it("deleted and inactive users authenticate as nobody", async () => {
    const gone = await t.createUser({ username: "gone" });
    const idle = await t.createUser({ username: "idle" });
    const goneH = await t.authHeaders(gone);
    const idleH = await t.authHeaders(idle);
    assert.equal((await client.authenticatedUnary({}, { headers: goneH })).username, "gone");
    await deleteUser(t.database.db, "gone");
    await setUserActive(t.database.db, "idle", false);
    await eventually(async () => {
      await expectCode(client.authenticatedUnary({}, { headers: goneH }), Code.Unauthenticated, "USER_INACTIVE");
    }, 1000);
    await expectCode(client.authenticatedUnary({}, { headers: idleH }), Code.Unauthenticated, "USER_INACTIVE");
    // Even on a public method: the token names nobody who may act.
    await expectCode(client.publicUnary({}, { headers: idleH }), Code.Unauthenticated);
  });

  it("a revoked permission is PERMISSION_DENIED on the next call (cache invalidated)", async () => {
    const user = await t.createUser({ username: "demoted", permissions: ["shop.view_order"] });
    const headers = await t.authHeaders(user);
    assert.equal((await client.permissionUnary({}, { headers })).username, "demoted");
    await revokeUserPermissions(t.database.db, "demoted", ["shop.view_order"]);
    await eventually(() => expectCode(client.permissionUnary({}, { headers }), Code.PermissionDenied), 1000);
  });

  it("malformed authorization headers are UNAUTHENTICATED, never INTERNAL", async () => {
    for (const value of [
      "Basic abc",
      "Bearer",
      "Bearer  a.b.c",
      "Bearer a.b",
      "Bearer a.b.c.d",
      `Bearer ${"a".repeat(9000)}.b.c`,
      "bearer a.b!.c",
    ]) {
      await expectCode(
        client.authenticatedUnary({}, { headers: { authorization: value } }),
        Code.Unauthenticated,
        "TOKEN_MALFORMED",
      );
    }
  });

  it("reports each decision once, through the gate", () => {
    assert.ok(events.length > 0);
    assert.ok(events.every((e) => e.stage === "gate"));
    assert.ok(!JSON.stringify(events.map((e) => e.verdict.outcome)).includes("ey"));
  });
});

describe("createTestAuth fixtures", { timeout: 120_000 }, () => {
  it("each starts migrated and empty, sees nothing of another, and close() ends its PGlite", async () => {
    const first = await createTestAuth({ routes: guardedRoutes });
    const second = await createTestAuth({ routes: guardedRoutes });
    try {
      const user = await first.createUser({ username: "only-in-first", permissions: ["shop.view"], groups: ["g"] });
      assert.equal(await findUserByUsername(second.database.db, "only-in-first"), undefined);
      // Made after the first fixture had rows: still a copy of the empty, migrated database.
      const third = await createTestAuth({ routes: guardedRoutes });
      try {
        assert.equal(await findUserByUsername(third.database.db, "only-in-first"), undefined);
        const mine = await third.createUser({ username: "only-in-first" });
        assert.equal(mine.username, "only-in-first", "the same username is free in another fixture");
        assert.equal((await findUserByUsername(first.database.db, "only-in-first"))?.id, user.id);
      } finally {
        await third.close();
      }
      assert.ok(third.database.client.kind === "pglite" && third.database.client.pg.closed);
    } finally {
      await first.close();
      await second.close();
    }
    for (const t of [first, second]) assert.ok(t.database.client.kind === "pglite" && t.database.client.pg.closed);
  });
});

describe("an unreachable database fails closed", { timeout: 60_000 }, () => {
  it("protected methods are UNAVAILABLE with nothing internal; public methods keep working", async () => {
    const t = await createTestAuth({ routes: guardedRoutes });
    const client = createClient(GuardedService, t.transport);
    const headers = await t.authHeaders(await t.createUser({ username: "stranded", isStaff: true }));
    try {
      // The store goes away; this token's user was never looked up, so nothing is cached.
      await t.database.close();
      const err = await expectCode(client.staffUnary({}, { headers }), Code.Unavailable, "AUTH_BACKEND_UNAVAILABLE");
      assert.equal(err.rawMessage, "authentication backend unavailable, try again later");
      assert.doesNotMatch(JSON.stringify(err.details) + err.message, /select|pglite|closed|stack/i);
      await expectCode(collect(client.permissionServerStream({}, { headers })), Code.Unavailable);
      // Public methods still answer: anonymously, even when a token is sent.
      assert.equal((await client.publicUnary({ text: "x" })).username, "");
      assert.equal((await client.publicUnary({ text: "x" }, { headers })).username, "");
      // Refusals that need no database are still the usual ones.
      await expectCode(client.staffUnary({}), Code.Unauthenticated, "TOKEN_MISSING");
    } finally {
      await t.close();
    }
  });
});

describe("rules are validated at start-up", () => {
  it("names every method with a malformed rule", () => {
    assert.throws(
      () => createAuthPolicy({ services: [MalformedService, MalformedRuleService] }),
      (e: unknown) => {
        assert.ok(e instanceof PolicyError);
        const text = e.problems.join("\n");
        assert.match(text, /guardtest\.v1\.MalformedService\/PublicWithPermission: public cannot be combined/);
        assert.match(text, /MalformedService\/NotAPermission: permission "view order"/);
        assert.match(text, /MalformedService\/EmptyRule: the rule is empty/);
        assert.match(text, /service guardtest\.v1\.MalformedRuleService \(rule of method Inherits\)/);
        return true;
      },
    );
  });

  it("createTestAuth (and so createAuth) refuses to start with them", async () => {
    const { MalformedService: S } = await import("../gen/guardtest/v1/malformed_pb.js");
    await assert.rejects(
      createTestAuth({ routes: (r) => r.service(S, {}) }),
      (e: unknown) => e instanceof PolicyError && /PublicWithPermission/.test(e.message),
    );
  });

  it("a malformed server default is refused", () => {
    assert.throws(() => createAuthPolicy({ defaultRule: { permissions: ["nodot"] } }), PolicyError);
  });

  it("a public server default opens unannotated methods only", async () => {
    const t = await createTestAuth({ routes: guardedRoutes, defaultRule: { public: true } });
    try {
      const c = createClient(UnannotatedService, t.transport);
      assert.equal((await c.anything({})).username, "");
      await expectCode(createClient(GuardedService, t.transport).authenticatedUnary({}), Code.Unauthenticated);
    } finally {
      await t.close();
    }
  });
});
