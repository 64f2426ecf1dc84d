/**
 * Moving from Django (issue 24) against a real Django project: Debian's Django,
 * REST framework and simplejwt, test/django/ migrated into a fresh PostgreSQL
 * database, users and grants made through the ORM by test/django/seed.py and
 * refresh tokens minted with `RefreshToken.for_user`. Then `protoguard import
 * django`, Login with each Django password, permission checks through a
 * Connect call, the adoption of simplejwt refresh tokens with reuse detection,
 * and side by side: Django's access tokens here, protoguard's in Django, and a
 * change in Django honoured by the next import.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { eq } from "drizzle-orm";
import postgres from "postgres";
import { GuardedService } from "../gen/guardtest/v1/guarded_pb.js";
import { AuthService } from "../gen/protoguard/v1/auth_pb.js";
import { simplejwtAdoptionFromConfig } from "../src/cli/simplejwt-adoption.js";
import { authErrorReason } from "../src/connect/errors.js";
import { changePassword, deactivateUser } from "../src/lifecycle/auth-service.js";
import { createSimplejwtAdoption } from "../src/lifecycle/simplejwt-adoption.js";
import { loadConfig } from "../src/runtime/config.js";
import * as schema from "../src/store/schema.js";
import { createUser, deleteUser, findCredentials } from "../src/store/users.js";
import { openSimplejwtBlacklist, type SimplejwtBlacklist } from "../src/store/simplejwt-tokens.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/database.js";
import { createTestAuth, type TestAuth } from "../src/exports/testing.js";
import { assertOk, cleanEnv, runCliCaptured } from "./helpers/cli.js";
import { bearer, expectError, failure } from "./helpers/connect.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";
import { guardedRoutes } from "./helpers/guarded-service.js";

const PYTHON = "/usr/bin/python3";
const DJANGO_DIR = fileURLToPath(new URL("./django/", import.meta.url));
/** Django's SECRET_KEY, and so simplejwt's SIGNING_KEY; shared with protoguard in side-by-side mode. */
const DJANGO_KEY = `django-insecure-${randomBytes(24).toString("hex")}`;

function whyDjangoMissing(): string | undefined {
  if (skipWithoutPostgres !== undefined) return skipWithoutPostgres;
  if (!existsSync(PYTHON)) return `${PYTHON} not found: Django migration tests skipped`;
  const probe = spawnSync(PYTHON, ["-c", "import django, rest_framework, rest_framework_simplejwt, psycopg2"], {
    encoding: "utf8",
  });
  if (probe.status !== 0) {
    return "python3-django, python3-djangorestframework, python3-djangorestframework-simplejwt or python3-psycopg2 missing: Django migration tests skipped";
  }
  return undefined;
}

interface Seeded {
  rs256_public_key: string;
  passwords: Record<string, string>;
  ids: Record<string, number>;
  hashes: Record<string, string>;
  tokens: Record<string, string>;
}

describeOr(whyDjangoMissing(), "migrating from Django", { timeout: 300_000, concurrency: false }, () => {
  const djangoDb = `protoguard_django_${randomBytes(6).toString("hex")}`;
  let djangoUrl: string;
  let maintenance: postgres.Sql;
  let target: TestDatabase;
  let seeded: Seeded;
  /** Side by side: protoguard signs with Django's key, and adopts simplejwt refresh tokens. */
  let shared: TestAuth;
  /** protoguard only: its own key; simplejwt refresh tokens are still adopted. */
  let own: TestAuth;
  let blacklist: SimplejwtBlacklist;

  const djangoEnv = () => ({ ...process.env, DJANGO_DB_NAME: djangoDb, DJANGO_SECRET_KEY: DJANGO_KEY });
  async function python(args: string[]): Promise<string> {
    const proc = spawn(PYTHON, args, { cwd: DJANGO_DIR, env: djangoEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    proc.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    proc.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const code = await new Promise<number | null>((resolve, reject) => {
      proc.on("error", reject);
      proc.on("close", resolve);
    });
    assert.equal(code, 0, `python ${args.join(" ")} failed:\n${stderr}`);
    return stdout;
  }
  const importDjango = (...flags: string[]) =>
    runCliCaptured(
      ["import", "django", "--database-url", djangoUrl, ...flags],
      cleanEnv({ DATABASE_URL: target.url!, PROTOGUARD_JWT_SECRET: DJANGO_KEY }),
    );
  const counts = (stdout: string) => {
    const m =
      /users (\d+) created, (\d+) updated, (\d+) deactivated, (\d+) unchanged, (\d+) skipped; groups (\d+) created; permissions (\d+) created; grants (\d+) added, (\d+) removed/.exec(
        stdout,
      );
    assert.ok(m, stdout);
    const [created, updated, deactivated, unchanged, skipped, groups, permissions, added, removed] = m
      .slice(1)
      .map(Number);
    return { created, updated, deactivated, unchanged, skipped, groups, permissions, added, removed };
  };

  before(async () => {
    maintenance = postgres(postgresUrl!, { max: 1, onnotice: () => {} });
    await maintenance.unsafe(`create database ${djangoDb}`);
    const url = new URL(postgresUrl!);
    url.pathname = `/${djangoDb}`;
    djangoUrl = url.href;
    await python(["manage.py", "migrate", "-v0"]);
    seeded = JSON.parse(await python(["seed.py", "seed"])) as Seeded;
    target = await createTestDatabase({ url: postgresUrl });
    blacklist = openSimplejwtBlacklist(djangoUrl);
    const simplejwt = createSimplejwtAdoption({ signingKey: DJANGO_KEY, blacklist });
    shared = await createTestAuth({
      database: target,
      routes: guardedRoutes,
      keys: [{ alg: "HS256", secret: DJANGO_KEY }],
      principalCacheEntries: 0,
      authService: () => ({ simplejwt, loginAdmission: false }),
    });
    // As `protoguard serve` builds it from the environment.
    const fromEnv = simplejwtAdoptionFromConfig(
      loadConfig({ PROTOGUARD_SIMPLEJWT_SIGNING_KEY: DJANGO_KEY, PROTOGUARD_DJANGO_DATABASE_URL: djangoUrl }),
    );
    own = await createTestAuth({
      database: target,
      routes: guardedRoutes,
      principalCacheEntries: 0,
      authService: () => ({ simplejwt: fromEnv, loginAdmission: false }),
    });
  });

  after(async () => {
    await shared?.close();
    await own?.close();
    await blacklist?.close();
    await target?.close();
    await maintenance?.unsafe(`drop database if exists ${djangoDb} with (force)`);
    await maintenance?.end();
  });

  it("imports users with Django's ids, hashes, flags, groups and permissions, and reports what it cannot verify", async () => {
    const dry = await importDjango("--dry-run");
    assertOk(dry);
    assert.match(dry.stdout, /^dry run/);
    assert.equal((await target.db.select().from(schema.users)).length, 0, "a dry run writes nothing");

    const result = await importDjango();
    assertOk(result);
    const c = counts(result.stdout);
    const djangoUsers = Object.keys(seeded.ids).length;
    assert.deepEqual(
      { created: c.created, updated: c.updated, deactivated: c.deactivated, groups: c.groups },
      { created: djangoUsers, updated: 0, deactivated: 0, groups: 1 },
    );
    assert.deepEqual(counts(dry.stdout), c, "the dry run reported exactly what the import did");
    assert.match(result.stdout, /must reset password: "frank" \(hash scheme "md5"/);
    assert.match(result.stdout, /note: ignored columns of auth_user: first_name, last_name/);

    for (const [username, id] of Object.entries(seeded.ids)) {
      const row = await findCredentials(target.db, username);
      assert.equal(row?.id, id, `${username} keeps Django's id`);
    }
    const alice = (await findCredentials(target.db, "alice"))!;
    assert.match(alice.password, /^pbkdf2_sha256\$/, "the hash is kept as Django wrote it");
    assert.equal(alice.email, "alice@example.com");
    const root = (await findCredentials(target.db, "root"))!;
    assert.deepEqual([root.isStaff, root.isSuperuser], [true, true]);
    assert.equal((await findCredentials(target.db, "carol"))!.isActive, false);
    assert.equal((await findCredentials(target.db, "nopass"))!.password, "", "unusable stays unusable");
    assert.equal((await findCredentials(target.db, "frank"))!.passwordResetRequired, true);

    // The id sequence continues after Django's ids.
    const next = await createUser(target.db, { username: "made_in_protoguard" });
    assert.ok(next.id > Math.max(...Object.values(seeded.ids)));
    // Side by side, accounts are made in Django: its next id would collide with this one.
    await deleteUser(target.db, next.username);
  });

  it("refuses a bad command line, and says so when the Django database cannot be read", async () => {
    const env = cleanEnv({ DATABASE_URL: target.url!, PROTOGUARD_JWT_SECRET: DJANGO_KEY });
    assert.equal((await runCliCaptured(["import", "django"], env)).code, 2);
    assert.equal((await runCliCaptured(["import", "django", "--database-url", "sqlite:///db.sqlite3"], env)).code, 2);
    const missing = new URL(djangoUrl);
    missing.pathname = `/${djangoDb}_missing`;
    const result = await runCliCaptured(["import", "django", "--database-url", missing.href], env);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /cannot read the Django database/);
    const badTable = await runCliCaptured(
      ["import", "django", "--database-url", djangoUrl, "--user-table", "no_such_table"],
      env,
    );
    assert.equal(badTable.code, 1);
    assert.match(badTable.stderr, /no table "no_such_table"/);
  });

  it("a second import changes nothing", async () => {
    const result = await importDjango();
    assertOk(result);
    const c = counts(result.stdout);
    assert.deepEqual(
      [c.created, c.updated, c.deactivated, c.groups, c.permissions, c.added, c.removed],
      [0, 0, 0, 0, 0, 0, 0],
    );
    assert.equal(c.unchanged, Object.keys(seeded.ids).length);
  });

  it("Login accepts each Django password (pbkdf2, bcrypt_sha256, argon2, scrypt) and upgrades the hash", async () => {
    const client = createClient(AuthService, shared.transport);
    for (const [username, password] of Object.entries(seeded.passwords)) {
      if (username === "carol" || username === "frank") continue;
      const { user } = await client.login({ username, password });
      assert.equal(user?.id, seeded.ids[username]);
      const stored = (await findCredentials(target.db, username))!.password;
      assert.match(stored, /^\$scrypt\$/, `${username}'s ${seeded.hashes[username]} hash was upgraded`);
      await client.login({ username, password });
      await expectError(
        client.login({ username, password: `${password}-wrong` }),
        Code.Unauthenticated,
        "INVALID_CREDENTIALS",
      );
    }
    await expectError(
      client.login({ username: "carol", password: seeded.passwords["carol"]! }),
      Code.Unauthenticated,
      "INVALID_CREDENTIALS",
    );
    await expectError(
      client.login({ username: "nopass", password: "anything" }),
      Code.Unauthenticated,
      "INVALID_CREDENTIALS",
    );
    // Never silently locked out: the answer says what to do, whatever the password.
    await expectError(
      client.login({ username: "frank", password: seeded.passwords["frank"]! }),
      Code.Unauthenticated,
      "PASSWORD_RESET_REQUIRED",
    );
  });

  it("permissions and groups from Django decide Connect calls, with Django's own access tokens", async () => {
    const guarded = createClient(GuardedService, shared.transport);
    const alice = await guarded.permissionUnary({ text: "x" }, bearer(seeded.tokens["alice_access"]!));
    assert.equal(alice.username, "alice");
    const bob = await guarded.permissionUnary({ text: "x" }, bearer(seeded.tokens["bob_access"]!));
    assert.equal(bob.username, "bob", "shop.view_order through the support group");
    const session = await createClient(AuthService, shared.transport).login({
      username: "gina",
      password: seeded.passwords["gina"]!,
    });
    await expectError(
      guarded.permissionUnary({ text: "x" }, bearer(session.accessToken)),
      Code.PermissionDenied,
      "PERMISSION_MISSING",
    );
    await expectError(
      guarded.staffUnary({ text: "x" }, bearer(seeded.tokens["alice_access"]!)),
      Code.PermissionDenied,
      "STAFF_REQUIRED",
    );
  });

  it("Django accepts protoguard's access tokens when both share the signing key", async () => {
    const session = await createClient(AuthService, shared.transport).login({
      username: "alice",
      password: seeded.passwords["alice"]!,
    });
    const verdict = JSON.parse(await python(["seed.py", "check-access", session.accessToken])) as {
      ok: boolean;
      user_id?: number;
    };
    assert.deepEqual(verdict, { ok: true, user_id: seeded.ids["alice"], username: "alice" }, JSON.stringify(verdict));
    const forged = `${session.accessToken.slice(0, -4)}AAAA`;
    assert.equal((JSON.parse(await python(["seed.py", "check-access", forged])) as { ok: boolean }).ok, false);
  });

  it("Refresh adopts a live simplejwt refresh token once; presenting it again revokes the family", async () => {
    const auth = createClient(AuthService, own.transport);
    const first = await auth.refresh({ refreshToken: seeded.tokens["alice_refresh"]! });
    const who = await auth.whoAmI({}, bearer(first.accessToken));
    assert.equal(who.user?.id, seeded.ids["alice"]);
    const second = await auth.refresh({ refreshToken: first.refreshToken });
    await expectError(
      auth.refresh({ refreshToken: seeded.tokens["alice_refresh"]! }),
      Code.Unauthenticated,
      "TOKEN_REVOKED",
    );
    await expectError(auth.refresh({ refreshToken: second.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(auth.whoAmI({}, bearer(second.accessToken)), Code.Unauthenticated, "TOKEN_REVOKED");
  });

  it("with one key on both sides, adoption and reuse detection work the same", async () => {
    const auth = createClient(AuthService, shared.transport);
    const first = await auth.refresh({ refreshToken: seeded.tokens["root_refresh"]! });
    const next = await auth.refresh({ refreshToken: first.refreshToken });
    await expectError(
      auth.refresh({ refreshToken: seeded.tokens["root_refresh"]! }),
      Code.Unauthenticated,
      "TOKEN_REVOKED",
    );
    await expectError(auth.refresh({ refreshToken: next.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
  });

  it("concurrent presentations of one simplejwt token: exactly one is adopted", async () => {
    const auth = createClient(AuthService, own.transport);
    const results = await Promise.allSettled(
      Array.from({ length: 4 }, () => auth.refresh({ refreshToken: seeded.tokens["gina_refresh"]! })),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    for (const r of results) {
      if (r.status === "rejected") assert.equal(authErrorReason(ConnectError.from(r.reason)), "TOKEN_REVOKED");
    }
  });

  it("a user imported with an unverifiable hash logs in once given a new password", async () => {
    const frank = (await findCredentials(target.db, "frank"))!;
    await changePassword(target, frank.id, "frank-new-password", shared.passwordHasher);
    assert.equal((await findCredentials(target.db, "frank"))!.passwordResetRequired, false);
    const { user } = await createClient(AuthService, shared.transport).login({
      username: "frank",
      password: "frank-new-password",
    });
    assert.equal(user?.id, seeded.ids["frank"]);
  });

  it("an RS256 simplejwt setup: its refresh tokens are adopted with Django's VERIFYING_KEY", async () => {
    // As serve builds it: PROTOGUARD_SIMPLEJWT_VERIFYING_KEY names the PEM file (RS256 by default).
    const dir = await mkdtemp(join(tmpdir(), "protoguard-simplejwt-"));
    await writeFile(join(dir, "verifying.pem"), seeded.rs256_public_key);
    const simplejwt = simplejwtAdoptionFromConfig(
      loadConfig({ PROTOGUARD_SIMPLEJWT_VERIFYING_KEY: join(dir, "verifying.pem") }),
    );
    await rm(dir, { recursive: true });
    await using rs = await createTestAuth({
      database: target,
      routes: guardedRoutes,
      principalCacheEntries: 0,
      authService: () => ({ simplejwt, loginAdmission: false }),
    });
    const auth = createClient(AuthService, rs.transport);
    const token = seeded.tokens["alice_rs256_refresh"]!;
    assert.match(Buffer.from(token.split(".")[0]!, "base64url").toString(), /"RS256"/);
    const pair = await auth.refresh({ refreshToken: token });
    assert.equal((await auth.whoAmI({}, bearer(pair.accessToken))).user?.id, seeded.ids["alice"]);
    await expectError(auth.refresh({ refreshToken: token }), Code.Unauthenticated, "TOKEN_REVOKED");
    // The HS256 adoption does not take it.
    await expectError(
      createClient(AuthService, own.transport).refresh({ refreshToken: token }),
      Code.Unauthenticated,
      "TOKEN_INVALID",
    );
  });

  it("fails closed: with the blacklist unreachable, Refresh answers UNAVAILABLE and adopts nothing", async () => {
    const dead = openSimplejwtBlacklist("postgres://postgres@127.0.0.1:1/nowhere");
    try {
      await using down = await createTestAuth({
        database: target,
        routes: guardedRoutes,
        principalCacheEntries: 0,
        authService: () => ({
          simplejwt: createSimplejwtAdoption({ signingKey: DJANGO_KEY, blacklist: dead }),
          loginAdmission: false,
        }),
      });
      await expectError(
        createClient(AuthService, down.transport).refresh({
          refreshToken: seeded.tokens["gina_refresh_before_change"]!,
        }),
        Code.Unavailable,
        "AUTH_BACKEND_UNAVAILABLE",
      );
    } finally {
      await dead.close();
    }
  });

  it("a blacklisted or expired simplejwt refresh token is refused", async () => {
    const auth = createClient(AuthService, own.transport);
    await expectError(
      auth.refresh({ refreshToken: seeded.tokens["bob_blacklisted_refresh"]! }),
      Code.Unauthenticated,
      "TOKEN_REVOKED",
    );
    await expectError(
      auth.refresh({ refreshToken: seeded.tokens["alice_expired_refresh"]! }),
      Code.Unauthenticated,
      "TOKEN_EXPIRED",
    );
    for (const name of ["bob_blacklisted_refresh", "alice_expired_refresh"]) {
      const { jti } = JSON.parse(Buffer.from(seeded.tokens[name]!.split(".")[1]!, "base64url").toString()) as {
        jti: string;
      };
      const rows = await target.db.select().from(schema.refreshTokens).where(eq(schema.refreshTokens.jti, jti));
      assert.equal(rows.length, 0, `nothing was recorded for ${name}`);
    }
  });

  it("after changes in Django, the next import applies exactly the difference", async () => {
    const auth = createClient(AuthService, shared.transport);
    const rootSession = await auth.login({ username: "root", password: seeded.passwords["root"]! });
    // Cut off in protoguard only: an import that finds erin unchanged in Django leaves that be.
    await deactivateUser(target, "erin");
    const changed = JSON.parse(await python(["seed.py", "change"])) as Pick<Seeded, "ids" | "passwords">;

    const result = await importDjango();
    assertOk(result);
    const c = counts(result.stdout);
    // alice's email, gina's password; root deactivated; hank new; bob's new grant and permission.
    assert.deepEqual([c.created, c.updated, c.deactivated, c.added, c.removed, c.permissions], [1, 2, 1, 1, 0, 1]);

    assert.equal((await findCredentials(target.db, "alice"))!.email, "alice@new.example.com");
    assert.match(
      (await findCredentials(target.db, "alice"))!.password,
      /^\$scrypt\$/,
      "an unchanged Django hash does not undo protoguard's upgrade",
    );
    const hank = await auth.login({ username: "hank", password: changed.passwords["hank"]! });
    assert.equal(hank.user?.id, changed.ids["hank"]);
    await auth.login({ username: "gina", password: changed.passwords["gina"]! });
    await expectError(
      auth.login({ username: "gina", password: seeded.passwords["gina"]! }),
      Code.Unauthenticated,
      "INVALID_CREDENTIALS",
    );
    // Deactivated in Django: protoguard refuses the login and the tokens it issued before.
    await expectError(
      auth.login({ username: "root", password: seeded.passwords["root"]! }),
      Code.Unauthenticated,
      "INVALID_CREDENTIALS",
    );
    const refused = await failure(auth.whoAmI({}, bearer(rootSession.accessToken)));
    assert.equal(refused.code, Code.Unauthenticated);
    assert.equal((await findCredentials(target.db, "erin"))!.isActive, false);
    // gina's password changed in Django: her simplejwt refresh tokens from before are refused.
    await expectError(
      createClient(AuthService, own.transport).refresh({ refreshToken: seeded.tokens["gina_refresh_before_change"]! }),
      Code.Unauthenticated,
      "TOKEN_REVOKED",
    );
    const bob = await createClient(AuthService, shared.transport).whoAmI({}, bearer(seeded.tokens["bob_access"]!));
    assert.ok(bob.permissions.includes("shop.cancel_order"));

    const again = await importDjango();
    assertOk(again);
    const d = counts(again.stdout);
    assert.deepEqual([d.created, d.updated, d.deactivated, d.added, d.removed], [0, 0, 0, 0, 0]);
  });

  it("a custom user table with the usual fields imports; its unknown columns are noted", async () => {
    const django = postgres(djangoUrl, { max: 1, onnotice: () => {} });
    try {
      await django.unsafe(`
        create table accounts_account (
          id integer primary key, username varchar(150) not null unique, password varchar(128) not null,
          email varchar(254) not null, is_active boolean not null, nickname text);
        create table accounts_account_groups (id serial primary key, account_id integer not null, group_id integer not null);
        create table accounts_account_user_permissions (
          id serial primary key, account_id integer not null, permission_id integer not null);
        insert into accounts_account
          select 500, 'zoe', password, 'zoe@example.com', true, 'z' from auth_user where username = 'alice';
        insert into accounts_account_groups (account_id, group_id) select 500, id from auth_group where name = 'support';`);
      await using other = await createTestDatabase({ url: postgresUrl });
      const result = await runCliCaptured(
        ["import", "django", "--database-url", djangoUrl, "--user-table", "accounts_account"],
        cleanEnv({ DATABASE_URL: other.url!, PROTOGUARD_JWT_SECRET: DJANGO_KEY }),
      );
      assertOk(result);
      assert.equal(counts(result.stdout).created, 1);
      assert.match(result.stdout, /note: ignored columns of accounts_account: nickname/);
      assert.match(result.stdout, /note: accounts_account has no is_staff, is_superuser, date_joined, last_login/);
      const zoe = (await findCredentials(other.db, "zoe"))!;
      assert.equal(zoe.id, 500);
      assert.match(zoe.password, /^pbkdf2_sha256\$/);
      const memberships = await other.db.select().from(schema.userGroups).where(eq(schema.userGroups.userId, 500));
      assert.equal(memberships.length, 1);
    } finally {
      await django.end();
    }
  });
});
