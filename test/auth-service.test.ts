/**
 * The AuthService end to end, over Connect's in-memory transport behind the
 * auth layer: login (uniform failures, TOTP, throttling, Django hashes),
 * refresh rotation with reuse detection and its race, logout, and the
 * account operations that must end sessions.
 */
import assert from "node:assert/strict";
import { pbkdf2Sync } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
  type CallOptions,
  type Client,
  type HandlerContext,
} from "@connectrpc/connect";
import { eq } from "drizzle-orm";
import { create } from "@bufbuild/protobuf";
import { AuthService, LoginRequestSchema } from "../gen/protoguard/v1/auth_pb.js";
import { authErrorReason } from "../src/exports/protoguard.js";
import { createUser, grantGroupPermissions, type Database } from "../src/exports/store.js";
import * as schema from "../src/store/schema.js";
import {
  changePassword,
  createAuthService,
  createPasswordHasher,
  deactivateUser,
  enableTotp,
  generateTotp,
  PasswordBusyError,
  type AuthServiceOptions,
  type PasswordHasher,
} from "../src/exports/auth-service.js";
import { createTestAuth, createTestDatabase, type TestAuth } from "../src/exports/testing.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";
import { expectError, failure } from "./helpers/connect.js";

const INVALID = { code: Code.Unauthenticated, message: "invalid credentials", reason: "INVALID_CREDENTIALS" };
const THROTTLED = {
  code: Code.ResourceExhausted,
  message: "too many failed attempts, try again later",
  reason: "LOGIN_THROTTLED",
};

/** What a client can observe of a failure; two failures that must be indistinguishable compare equal. */
function observable(err: ConnectError) {
  // authErrorReason is typed for the auth layer's reasons; Login adds its own.
  return { code: err.code, message: err.rawMessage, reason: authErrorReason(err) as string | undefined };
}

function bearer(token: string): CallOptions {
  return { headers: { authorization: `Bearer ${token}` } };
}

/** A hasher that counts its calls, to prove where work was (not) done. */
function countingHasher(inner: PasswordHasher) {
  const calls = { hash: 0, verify: 0, dummyVerify: 0 };
  const hasher: PasswordHasher = {
    hash: (p) => (calls.hash++, inner.hash(p)),
    verify: (p, e) => (calls.verify++, inner.verify(p, e)),
    dummyVerify: (p) => (calls.dummyVerify++, inner.dummyVerify(p)),
  };
  return { hasher, calls };
}

interface Fixture {
  t: TestAuth;
  client: Client<typeof AuthService>;
  calls: { hash: number; verify: number; dummyVerify: number };
  /** Added to `Date.now()` for the service's clock (throttling, TOTP). */
  clock: { offsetMs: number };
  serviceNow(): number;
}

/**
 * scrypt cost for every hasher here: these tests are about sessions,
 * throttling and errors, not the hash's strength (passwords.test.ts checks
 * the default cost), and each login hashes at least once.
 */
const TEST_LOG_N = 10;

/** The test kit serving AuthService, with a counting hasher and a clock the test can move. */
async function authServiceFixture(database?: Database, tokenClockSkewMs = 0): Promise<Fixture> {
  const base = createPasswordHasher({ scrypt: { logN: TEST_LOG_N } });
  const { hasher, calls } = countingHasher(base);
  const clock = { offsetMs: 0 };
  const serviceNow = () => Date.now() + clock.offsetMs;
  const t = await createTestAuth({
    ...(database && { database }),
    ...(tokenClockSkewMs !== 0 && { now: () => Date.now() + tokenClockSkewMs }),
    passwordHasher: base,
    routes: () => {},
    // Reuse detection as such: the reuse grace window (refresh-grace.test.ts) is off here.
    authService: () => ({ passwordHasher: hasher, now: serviceNow, refreshReuseGraceSeconds: 0 }),
  });
  return { t, client: createClient(AuthService, t.transport), calls, clock, serviceNow };
}

/** A six-digit code that no step in the ±1 window produces. */
function wrongTotp(secret: string, now: number): string {
  const valid = new Set([-30_000, 0, 30_000].map((d) => generateTotp(secret, now + d)));
  for (let n = 0; ; n++) {
    const code = String(n).padStart(6, "0");
    if (!valid.has(code)) return code;
  }
}

function djangoPbkdf2(password: string, salt: string, iterations: number): string {
  const key = pbkdf2Sync(password, salt, iterations, 32, "sha256").toString("base64");
  return `pbkdf2_sha256$${iterations}$${salt}$${key}`;
}

async function userRow(db: Database["db"], username: string) {
  const [row] = await db.select().from(schema.users).where(eq(schema.users.username, username));
  assert.ok(row, `no user ${username}`);
  return row;
}

async function familyRows(db: Database["db"], userId: number) {
  return db.select().from(schema.refreshTokens).where(eq(schema.refreshTokens.userId, userId));
}

describe("AuthService on PGlite", { timeout: 180_000 }, () => {
  let f: Fixture;
  let db: Database["db"];

  before(async () => {
    f = await authServiceFixture();
    db = f.t.database.db;
  });
  after(async () => f?.t.close());

  it("login returns the simplejwt-shaped pair and the user; WhoAmI works with the access token", async () => {
    const alice = await f.t.createUser({
      username: "alice",
      email: "alice@example.com",
      password: "correct horse battery staple",
      isStaff: true,
      permissions: ["zeta.view_z", "alpha.view_a"],
      groups: ["middle"],
    });
    await grantGroupPermissions(db, "middle", ["mid.change_m"]);
    const before = Date.now();
    const res = await f.client.login({ username: "alice", password: "correct horse battery staple" });
    assert.deepEqual(
      { id: res.user?.id, username: res.user?.username, email: res.user?.email },
      { id: alice.id, username: "alice", email: "alice@example.com" },
    );

    const access = await f.t.verifier.verify(res.accessToken, "access");
    const refresh = await f.t.verifier.verify(res.refreshToken, "refresh");
    assert.ok(access.ok && refresh.ok, "both tokens verify as their own type");
    for (const [claims, type, ttl] of [
      [access.claims, "access", f.t.issuer.accessTtlSeconds],
      [refresh.claims, "refresh", f.t.issuer.refreshTtlSeconds],
    ] as const) {
      assert.equal(claims.payload.token_type, type);
      assert.equal(claims.payload.user_id, alice.id);
      assert.match(String(claims.payload.jti), /^[0-9a-f]{32}$/);
      assert.equal(typeof claims.payload.iat, "number");
      assert.ok(claims.issuedAt * 1000 >= before - 1);
      assert.equal(claims.expiresAt, Math.floor(claims.issuedAt) + ttl);
    }
    assert.notEqual(access.claims.jti, refresh.claims.jti);
    assert.ok((await userRow(db, "alice")).lastLogin, "last_login is set");

    const me = await f.client.whoAmI({}, bearer(res.accessToken));
    assert.equal(me.user?.id, alice.id);
    assert.equal(me.user?.username, "alice");
    assert.equal(me.isStaff, true);
    assert.equal(me.isSuperuser, false);
    assert.deepEqual(me.permissions, ["alpha.view_a", "mid.change_m", "zeta.view_z"]);
  });

  it("WhoAmI without a token is UNAUTHENTICATED, and a refresh token is not an access token", async () => {
    await expectError(f.client.whoAmI({}), Code.Unauthenticated, "TOKEN_MISSING");
    const res = await f.client.login({ username: "alice", password: "correct horse battery staple" });
    await expectError(f.client.whoAmI({}, bearer(res.refreshToken)), Code.Unauthenticated, "TOKEN_WRONG_TYPE");
  });

  it("unknown user, wrong password, disabled account, missing and wrong TOTP all fail identically", async () => {
    await f.t.createUser({ username: "bob", password: "bob-password" });
    await f.t.createUser({ username: "carol", password: "carol-password", isActive: false });
    await f.t.createUser({ username: "dave", password: "dave-password" });
    const { secret } = await enableTotp(f.t.database, "dave", "protoguard-test");

    const dummyBefore = f.calls.dummyVerify;
    const errors = [
      await failure(f.client.login({ username: "nobody", password: "whatever" })),
      await failure(f.client.login({ username: "bob", password: "not-bobs" })),
      await failure(f.client.login({ username: "carol", password: "carol-password" })),
      await failure(f.client.login({ username: "dave", password: "dave-password" })),
      await failure(
        f.client.login({ username: "dave", password: "dave-password", otpCode: wrongTotp(secret, f.serviceNow()) }),
      ),
      await failure(f.client.login({ username: "dave", password: "dave-password", otpCode: "12345" })),
    ];
    for (const err of errors) assert.deepEqual(observable(err), INVALID);
    assert.equal(f.calls.dummyVerify, dummyBefore + 1, "the unknown user costs a dummy verification");
    // The right password and a right code still work afterwards.
    const ok = await f.client.login({
      username: "dave",
      password: "dave-password",
      otpCode: generateTotp(secret, f.serviceNow()),
    });
    assert.ok(ok.accessToken);
  });

  it("TOTP: required once enabled, accepted once, a replayed code refused, the next step accepted", async () => {
    await f.t.createUser({ username: "erin", password: "erin-password" });
    assert.ok(await f.client.login({ username: "erin", password: "erin-password" }), "no code needed before enrolment");
    const { secret, uri } = await enableTotp(f.t.database, "erin", "Example Shop");
    assert.match(uri, /^otpauth:\/\/totp\/Example%20Shop:erin\?/);
    assert.ok(uri.includes(`secret=${secret}`));
    assert.deepEqual(
      observable(await failure(f.client.login({ username: "erin", password: "erin-password" }))),
      INVALID,
    );

    const at = f.serviceNow();
    const code = generateTotp(secret, at);
    const res = await f.client.login({ username: "erin", password: "erin-password", otpCode: code });
    assert.ok(res.accessToken);
    assert.equal((await userRow(db, "erin")).totpLastStep, Math.floor(at / 30_000));
    assert.deepEqual(
      observable(await failure(f.client.login({ username: "erin", password: "erin-password", otpCode: code }))),
      INVALID,
      "the same code twice",
    );
    f.clock.offsetMs += 30_000;
    const next = generateTotp(secret, f.serviceNow());
    assert.ok((await f.client.login({ username: "erin", password: "erin-password", otpCode: next })).accessToken);
  });

  it("throttling: after 5 free failures a failure locks the username; the lock expires", async () => {
    await f.t.createUser({ username: "frank", password: "frank-password" });
    for (let i = 1; i <= 6; i++) {
      assert.deepEqual(
        observable(await failure(f.client.login({ username: "frank", password: `guess-${i}` }))),
        INVALID,
      );
    }
    const verifies = f.calls.verify;
    // Locked: even the right password is refused, without checking it.
    const locked = await failure(f.client.login({ username: "frank", password: "frank-password" }));
    assert.deepEqual(observable(locked), THROTTLED);
    assert.equal(f.calls.verify, verifies, "a locked attempt costs no password check");
    // Other usernames are unaffected.
    assert.ok((await f.client.login({ username: "alice", password: "correct horse battery staple" })).accessToken);

    f.clock.offsetMs += 1_100; // the first lock is 1 s
    assert.ok((await f.client.login({ username: "frank", password: "frank-password" })).accessToken);
    const rows = await db.select().from(schema.loginAttempts).where(eq(schema.loginAttempts.username, "frank"));
    assert.equal(rows.length, 0, "success forgets the failures");
    assert.deepEqual(
      observable(await failure(f.client.login({ username: "frank", password: "again-wrong" }))),
      INVALID,
    );
  });

  it("throttling: an unknown username is throttled exactly like a real one", async () => {
    const real: ReturnType<typeof observable>[] = [];
    const ghost: ReturnType<typeof observable>[] = [];
    await f.t.createUser({ username: "grace", password: "grace-password" });
    for (let i = 0; i < 8; i++) {
      real.push(observable(await failure(f.client.login({ username: "grace", password: `no-${i}` }))));
      ghost.push(observable(await failure(f.client.login({ username: "ghost", password: `no-${i}` }))));
    }
    assert.deepEqual(ghost, real);
    assert.deepEqual(real, [...Array(6).fill(INVALID), THROTTLED, THROTTLED]);
    // Exact match: the store does not case-fold, so "Ghost" is another key.
    assert.deepEqual(observable(await failure(f.client.login({ username: "Ghost", password: "x" }))), INVALID);
  });

  it("throttling holds under concurrency: 20 parallel guesses, only 6 are checked", async () => {
    await f.t.createUser({ username: "heidi", password: "heidi-password" });
    const verifies = f.calls.verify;
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => failure(f.client.login({ username: "heidi", password: `parallel-${i}` }))),
    );
    const counts = { invalid: 0, throttled: 0 };
    for (const err of results) {
      const seen = observable(err);
      if (seen.reason === "INVALID_CREDENTIALS") counts.invalid++;
      else if (seen.reason === "LOGIN_THROTTLED") counts.throttled++;
      else assert.fail(`unexpected ${JSON.stringify(seen)}`);
    }
    assert.deepEqual(counts, { invalid: 6, throttled: 14 });
    assert.equal(f.calls.verify - verifies, 6, "locked attempts never reach the hasher");
  });

  it("throttling backoff never overflows, however many failures a username has", async () => {
    await db.insert(schema.loginAttempts).values({ username: "ivan", failures: 5_000, updatedAt: new Date() });
    assert.deepEqual(observable(await failure(f.client.login({ username: "ivan", password: "x" }))), INVALID);
    const [row] = await db.select().from(schema.loginAttempts).where(eq(schema.loginAttempts.username, "ivan"));
    const lockMs = row!.lockedUntil!.getTime() - f.serviceNow();
    assert.ok(lockMs > 50_000 && lockMs <= 60_000, `lock capped at maxLockMs, got ${lockMs} ms`);
    assert.deepEqual(observable(await failure(f.client.login({ username: "ivan", password: "x" }))), THROTTLED);
  });

  it("refresh rotates; reusing the old token revokes the whole family, access tokens included", async () => {
    const judy = await f.t.createUser({ username: "judy", password: "judy-password" });
    const first = await f.client.login({ username: "judy", password: "judy-password" });
    const second = await f.client.refresh({ refreshToken: first.refreshToken });
    assert.notEqual(second.refreshToken, first.refreshToken);
    assert.notEqual(second.accessToken, first.accessToken);
    assert.equal((await f.client.whoAmI({}, bearer(second.accessToken))).user?.username, "judy");

    await expectError(f.client.refresh({ refreshToken: first.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    // The revocation was committed although that call failed.
    const rows = await familyRows(db, judy.id);
    assert.equal(rows.length, 2);
    assert.ok(
      rows.every((r) => r.revokedAt !== null),
      "every token of the family is revoked",
    );
    await expectError(f.client.refresh({ refreshToken: second.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(f.client.whoAmI({}, bearer(second.accessToken)), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(f.client.whoAmI({}, bearer(first.accessToken)), Code.Unauthenticated, "TOKEN_REVOKED");
    // Another session of the same user is untouched.
    const other = await f.client.login({ username: "judy", password: "judy-password" });
    assert.ok((await f.client.refresh({ refreshToken: other.refreshToken })).accessToken);
  });

  it("an access token on Refresh or Logout is TOKEN_WRONG_TYPE; garbage is refused, never INTERNAL", async () => {
    const res = await f.client.login({ username: "alice", password: "correct horse battery staple" });
    await expectError(f.client.refresh({ refreshToken: res.accessToken }), Code.Unauthenticated, "TOKEN_WRONG_TYPE");
    await expectError(f.client.logout({ refreshToken: res.accessToken }), Code.Unauthenticated, "TOKEN_WRONG_TYPE");
    await expectError(f.client.refresh({ refreshToken: "" }), Code.Unauthenticated, "TOKEN_MALFORMED");
    // One base64url character is not even a byte: not a canonical segment.
    await expectError(f.client.refresh({ refreshToken: "a.b.c" }), Code.Unauthenticated, "TOKEN_MALFORMED");
    await expectError(f.client.refresh({ refreshToken: "YQ.Yg.Yw" }), Code.Unauthenticated, "TOKEN_INVALID");
    // Signed by us but never recorded as a session.
    const stray = await f.t.issuer.issueRefresh(res.user!.id);
    await expectError(f.client.refresh({ refreshToken: stray.token }), Code.Unauthenticated, "TOKEN_REVOKED");
  });

  raceSuite(() => f);

  it("logout revokes the refresh token and the access token; it is idempotent", async () => {
    await f.t.createUser({ username: "mallory", password: "mallory-password" });
    const res = await f.client.login({ username: "mallory", password: "mallory-password" });
    assert.ok(await f.client.whoAmI({}, bearer(res.accessToken)));
    await f.client.logout({ refreshToken: res.refreshToken });
    await expectError(f.client.refresh({ refreshToken: res.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(f.client.whoAmI({}, bearer(res.accessToken)), Code.Unauthenticated, "TOKEN_REVOKED");
    await f.client.logout({ refreshToken: res.refreshToken });
    await expectError(f.client.logout({ refreshToken: "not-a-token" }), Code.Unauthenticated, "TOKEN_MALFORMED");
  });

  it("a password change ends earlier sessions; the new password works, the old one does not", async () => {
    const niaj = await f.t.createUser({ username: "niaj", password: "old-password" });
    const before = await f.client.login({ username: "niaj", password: "old-password" });
    const rotated = await f.client.refresh({ refreshToken: before.refreshToken });
    const hasher = createPasswordHasher({ scrypt: { logN: TEST_LOG_N } });
    await changePassword(f.t.database, niaj.id, "new-password", hasher);

    for (const token of [before.accessToken, rotated.accessToken]) {
      await expectError(f.client.whoAmI({}, bearer(token)), Code.Unauthenticated, "TOKEN_REVOKED");
    }
    await expectError(f.client.refresh({ refreshToken: rotated.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    assert.deepEqual(
      observable(await failure(f.client.login({ username: "niaj", password: "old-password" }))),
      INVALID,
    );
    const after = await f.client.login({ username: "niaj", password: "new-password" });
    assert.equal((await f.client.whoAmI({}, bearer(after.accessToken))).user?.username, "niaj");
    assert.ok((await f.client.refresh({ refreshToken: after.refreshToken })).accessToken);
    await assert.rejects(changePassword(f.t.database, niaj.id, "x".repeat(4097), hasher), RangeError);
  });

  it("deactivation ends sessions and refuses login", async () => {
    await f.t.createUser({ username: "olivia", password: "olivia-password" });
    const res = await f.client.login({ username: "olivia", password: "olivia-password" });
    await deactivateUser(f.t.database, "olivia");
    await expectError(f.client.whoAmI({}, bearer(res.accessToken)), Code.Unauthenticated, "USER_INACTIVE");
    await expectError(f.client.refresh({ refreshToken: res.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    assert.deepEqual(
      observable(await failure(f.client.login({ username: "olivia", password: "olivia-password" }))),
      INVALID,
    );
  });

  it("a Django pbkdf2_sha256 hash logs in and is upgraded to scrypt without ending sessions", async () => {
    const peggy = await createUser(db, {
      username: "peggy",
      passwordHash: djangoPbkdf2("django-pass", "s4ltyS4lt", 1000),
    });
    const changedAt = (await userRow(db, "peggy")).credentialsChangedAt;
    assert.deepEqual(observable(await failure(f.client.login({ username: "peggy", password: "wrong" }))), INVALID);
    const first = await f.client.login({ username: "peggy", password: "django-pass" });
    assert.equal(first.user?.id, peggy.id);
    const row = await userRow(db, "peggy");
    assert.match(row.password, new RegExp(`^\\$scrypt\\$ln=${TEST_LOG_N},r=8,p=1\\$`));
    assert.equal(row.credentialsChangedAt.getTime(), changedAt.getTime(), "a rehash is not a password change");

    const second = await f.client.login({ username: "peggy", password: "django-pass" });
    assert.equal((await userRow(db, "peggy")).password, row.password, "a current hash is left alone");
    for (const res of [first, second]) assert.ok(await f.client.whoAmI({}, bearer(res.accessToken)));
  });

  it("inputs over the caps fail like any bad credential, before any hashing; long passwords work", async () => {
    const longPassword = "é".repeat(2048); // 4096 UTF-8 bytes, exactly the cap
    await f.t.createUser({ username: "quentin", password: longPassword });
    const hashing = () => f.calls.verify + f.calls.dummyVerify;
    const before = hashing();
    for (const req of [
      { username: "q".repeat(151), password: "p" },
      { username: "quentin", password: `${longPassword}a` },
      { username: "", password: "p" },
      { username: "nul\u0000name", password: "p" },
    ]) {
      assert.deepEqual(observable(await failure(f.client.login(req))), INVALID, req.username.slice(0, 20));
    }
    assert.equal(hashing(), before, "nothing over the caps was hashed");
    assert.ok((await f.client.login({ username: "quentin", password: longPassword })).accessToken);
    // 150 code points (300 UTF-16 units) is within the cap: looked up, so it costs a dummy check.
    const dummies = f.calls.dummyVerify;
    assert.deepEqual(observable(await failure(f.client.login({ username: "😀".repeat(150), password: "p" }))), INVALID);
    assert.equal(f.calls.dummyVerify, dummies + 1);
  });
});

describe("AuthService with a token clock running ahead of the database's", { timeout: 60_000 }, () => {
  let f: Fixture;
  before(async () => {
    f = await authServiceFixture(undefined, 5_000);
  });
  after(async () => f?.t.close());

  // Tokens issued "after" the credentials change by the issuer's clock are
  // not caught by `iat < credentials_changed_at`; revocation by jti must.
  it("a password change still ends every session", async () => {
    const user = await f.t.createUser({ username: "skewed", password: "old-password" });
    const res = await f.client.login({ username: "skewed", password: "old-password" });
    assert.ok(await f.client.whoAmI({}, bearer(res.accessToken)));
    await changePassword(f.t.database, user.id, "new-password", createPasswordHasher({ scrypt: { logN: TEST_LOG_N } }));
    await expectError(f.client.whoAmI({}, bearer(res.accessToken)), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(f.client.refresh({ refreshToken: res.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
  });

  it("deactivation still ends every session", async () => {
    await f.t.createUser({ username: "skewed-2", password: "password" });
    const res = await f.client.login({ username: "skewed-2", password: "password" });
    await deactivateUser(f.t.database, "skewed-2");
    await expectError(f.client.whoAmI({}, bearer(res.accessToken)), Code.Unauthenticated, "USER_INACTIVE");
    await expectError(f.client.refresh({ refreshToken: res.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
  });
});

describe("AuthService failure modes", { timeout: 60_000 }, () => {
  const hasher = createPasswordHasher({ scrypt: { logN: TEST_LOG_N } });

  async function standalone(options: Partial<AuthServiceOptions> & Pick<AuthServiceOptions, "database">) {
    const t = await createTestAuth({ routes: () => {}, passwordHasher: hasher });
    const service = createAuthService({ issuer: t.issuer, verifier: t.verifier, passwordHasher: hasher, ...options });
    const client = createClient(
      AuthService,
      createRouterTransport((r) => r.service(AuthService, service)),
    );
    return { t, client, service };
  }

  it("a database that is down answers UNAVAILABLE with a generic message, never the SQL", async () => {
    const dead = await createTestDatabase();
    await dead.close();
    const { t, client, service } = await standalone({ database: dead });
    try {
      const user = await t.createUser({ username: "rupert", password: "rupert-password" });
      const refreshToken = (await t.issuer.issueRefresh(user.id)).token;
      for (const call of [
        () => client.login({ username: "rupert", password: "rupert-password" }),
        () => client.refresh({ refreshToken }),
        () => client.logout({ refreshToken }),
      ]) {
        const err = await expectError(
          call(),
          Code.Unavailable,
          "AUTH_BACKEND_UNAVAILABLE",
          "authentication backend unavailable, try again later",
        );
        assert.deepEqual(err.details, err.details.slice(0, 1), "nothing beyond the ErrorInfo reaches the client");
      }
      // Server-side, the database error stays attached for logs.
      const direct = await failure(
        Promise.resolve(
          service.login(create(LoginRequestSchema, { username: "rupert", password: "x" }), {} as HandlerContext),
        ),
      );
      assert.equal(direct.code, Code.Unavailable);
      assert.ok(direct.cause instanceof Error, "the database error is kept as the cause");
    } finally {
      await t.close();
    }
  });

  it("a saturated password hasher is RESOURCE_EXHAUSTED, not a credential failure", async () => {
    const t0 = await createTestDatabase();
    const busy: PasswordHasher = {
      hash: () => Promise.reject(new PasswordBusyError()),
      verify: () => Promise.reject(new PasswordBusyError()),
      dummyVerify: () => Promise.reject(new PasswordBusyError()),
    };
    const { t, client } = await standalone({ database: t0, passwordHasher: busy });
    try {
      await createUser(t0.db, { username: "sybil", passwordHash: await hasher.hash("sybil-password") });
      for (const username of ["sybil", "nobody-at-all"]) {
        await expectError(
          client.login({ username, password: "sybil-password" }),
          Code.ResourceExhausted,
          "LOGIN_THROTTLED",
        );
      }
    } finally {
      await t.close();
      await t0.close();
    }
  });
});

/**
 * Of N concurrent refreshes with one token exactly one succeeds; the others
 * are reuse, so the family (the winner's new pair included) ends revoked.
 */
function raceSuite(fixture: () => Fixture) {
  it("10 concurrent refreshes with one token: exactly one succeeds", async () => {
    const f = fixture();
    const db = f.t.database.db;
    const username = `racer-${Math.random().toString(36).slice(2, 8)}`;
    const user = await f.t.createUser({ username, password: "racer-password" });
    const res = await f.client.login({ username, password: "racer-password" });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 10 }, () => f.client.refresh({ refreshToken: res.refreshToken })),
    );
    const won = outcomes.filter((o) => o.status === "fulfilled");
    assert.equal(won.length, 1, "exactly one refresh wins");
    for (const o of outcomes) {
      if (o.status === "rejected") {
        const err = ConnectError.from(o.reason);
        assert.equal(err.code, Code.Unauthenticated, err.message);
        assert.equal(authErrorReason(err), "TOKEN_REVOKED");
      }
    }
    const rows = await familyRows(db, user.id);
    assert.equal(rows.length, 2, "one successor issued, not more");
    assert.ok(
      rows.every((r) => r.revokedAt !== null),
      "the losers' reuse revoked the family",
    );
    const winner = (won[0] as PromiseFulfilledResult<{ accessToken: string; refreshToken: string }>).value;
    await expectError(f.client.refresh({ refreshToken: winner.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(f.client.whoAmI({}, bearer(winner.accessToken)), Code.Unauthenticated, "TOKEN_REVOKED");
    const revoked = await db
      .select({ jti: schema.revokedTokens.jti })
      .from(schema.revokedTokens)
      .where(eq(schema.revokedTokens.userId, user.id));
    assert.deepEqual(
      revoked.map((r) => r.jti).sort(),
      rows.map((r) => r.accessJti).sort(),
      "both sessions' access tokens are revoked by jti",
    );
  });
}

describeOr(skipWithoutPostgres, "AuthService on PostgreSQL", { timeout: 120_000 }, () => {
  let f: Fixture;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;

  before(async () => {
    database = await createTestDatabase({ driver: "postgres", url: postgresUrl! });
    f = await authServiceFixture(database);
  });
  after(async () => {
    await f?.t.close();
    await database?.close();
  });

  raceSuite(() => f);

  it("repeated refresh races never deadlock (every loser is TOKEN_REVOKED, never UNAVAILABLE)", async () => {
    await f.t.createUser({ username: "stampede", password: "stampede-password" });
    const seen = new Map<string, number>();
    for (let round = 0; round < 30; round++) {
      const res = await f.client.login({ username: "stampede", password: "stampede-password" });
      const outcomes = await Promise.allSettled(
        Array.from({ length: 40 }, () => f.client.refresh({ refreshToken: res.refreshToken })),
      );
      for (const o of outcomes) {
        const key = o.status === "fulfilled" ? "ok" : `${Code[ConnectError.from(o.reason).code]}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
      }
    }
    assert.deepEqual(Object.fromEntries(seen), { ok: 30, Unauthenticated: 30 * 39 });
  });

  it("throttling holds under concurrency on a connection pool too", async () => {
    await f.t.createUser({ username: "pooled", password: "pooled-password" });
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => failure(f.client.login({ username: "pooled", password: `p-${i}` }))),
    );
    const reasons = results.map((e) => observable(e).reason);
    assert.equal(reasons.filter((r) => r === "INVALID_CREDENTIALS").length, 6);
    assert.equal(reasons.filter((r) => r === "LOGIN_THROTTLED").length, 14);
  });

  it("refresh rotation and logout", async () => {
    await f.t.createUser({ username: "pg-user", password: "pg-password" });
    const first = await f.client.login({ username: "pg-user", password: "pg-password" });
    const second = await f.client.refresh({ refreshToken: first.refreshToken });
    await expectError(f.client.refresh({ refreshToken: first.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(f.client.whoAmI({}, bearer(second.accessToken)), Code.Unauthenticated, "TOKEN_REVOKED");
    const third = await f.client.login({ username: "pg-user", password: "pg-password" });
    await f.client.logout({ refreshToken: third.refreshToken });
    await expectError(f.client.whoAmI({}, bearer(third.accessToken)), Code.Unauthenticated, "TOKEN_REVOKED");
  });
});
