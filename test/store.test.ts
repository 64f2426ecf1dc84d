import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { count, eq, sql } from "drizzle-orm";
import {
  StoreError,
  addUsersToGroup,
  createGroup,
  createUser,
  deleteUser,
  ensurePermissions,
  findUserByUsername,
  getUserById,
  grantGroupPermissions,
  grantUserPermissions,
  loadPrincipal,
  migrateDatabase,
  openDatabase,
  removeUsersFromGroup,
  revokeGroupPermissions,
  revokeUserPermissions,
  setPasswordHash,
  setUserActive,
} from "../src/exports/store.js";
import { permissions, refreshTokens, revokedTokens, userGroups, userPermissions, users } from "../src/store/schema.js";
import type { DrizzleDb } from "../src/exports/store.js";
import type { PrincipalLookup } from "../src/exports/core.js";
import { findCredentials } from "../src/store/users.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/database.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";

// Every migration drizzle-kit generated, per its journal.
const MIGRATIONS: number = (
  JSON.parse(readFileSync(new URL("../drizzle/meta/_journal.json", import.meta.url), "utf8")) as { entries: unknown[] }
).entries.length;

// PGlite needs 2-5 s to start; PostgreSQL database creation is quick.
const SUITE_TIMEOUT = 60_000;

function assertStoreError(code: StoreError["code"]) {
  return (error: unknown) => {
    assert.ok(error instanceof StoreError, `expected StoreError, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  };
}

function okPermissions(lookup: PrincipalLookup): string[] {
  assert.equal(lookup.status, "ok");
  return [...(lookup as Extract<PrincipalLookup, { status: "ok" }>).principal.permissions].sort();
}

async function migrationCount(db: DrizzleDb): Promise<number> {
  const [row] = await db.select({ n: sql<number>`count(*)::int` }).from(sql`drizzle.__drizzle_migrations`);
  return row!.n;
}

function storeSuite(open: () => Promise<TestDatabase>): void {
  let database: TestDatabase;
  let db: DrizzleDb;

  before(async () => {
    database = await open();
    db = database.db;
  });
  after(async () => {
    await database?.close();
  });

  it("migrating again is a no-op", async () => {
    const applied = await migrationCount(db);
    assert.equal(applied, MIGRATIONS);
    await createUser(db, { username: "migrate-survivor" });
    await migrateDatabase(database);
    await migrateDatabase(database);
    assert.equal(await migrationCount(db), applied);
    assert.ok(await findUserByUsername(db, "migrate-survivor"));
  });

  it("creates users with defaults and refuses a duplicate username", async () => {
    const user = await createUser(db, { username: "alice", email: "alice@example.com" });
    assert.ok(user.id > 0);
    assert.equal(user.username, "alice");
    assert.equal(user.email, "alice@example.com");
    // The admin API hands out no secrets, not even as undefined fields.
    assert.ok(!("password" in user) && !("totpSecret" in user));
    assert.equal((await findCredentials(db, "alice"))?.password, "");
    assert.equal(user.isActive, true);
    assert.equal(user.isStaff, false);
    assert.equal(user.isSuperuser, false);
    assert.equal(user.totpEnabled, false);
    assert.equal(user.totpLastStep, null);
    assert.ok(user.credentialsChangedAt instanceof Date);
    assert.deepEqual(await getUserById(db, user.id), user);
    assert.equal(await getUserById(db, 2 ** 40), undefined);

    await assert.rejects(createUser(db, { username: "alice" }), assertStoreError("DUPLICATE_USERNAME"));
  });

  it("refuses invalid usernames", async () => {
    for (const bad of ["", "has space", "x".repeat(151), "semi;colon", "ﬁ;"]) {
      await assert.rejects(createUser(db, { username: bad }), assertStoreError("INVALID_INPUT"), bad);
    }
    // Stored in NFKC form, as Django's normalize_username does: a look-alike
    // spelling is the same account, so it cannot be registered twice.
    const ligature = await createUser(db, { username: "ﬁnnegan" });
    assert.equal(ligature.username, "finnegan");
    await assert.rejects(createUser(db, { username: "finnegan" }), assertStoreError("DUPLICATE_USERNAME"));
    const fullwidth = await createUser(db, { username: "ｂｏｂｂｙ" });
    assert.equal(fullwidth.username, "bobby");
    assert.equal((await findUserByUsername(db, "ｂｏｂｂｙ"))?.id, fullwidth.id);
    const ok = await createUser(db, { username: "é.u+s-e_r@x" });
    assert.equal(ok.username, "é.u+s-e_r@x");
    await createUser(db, { username: "y".repeat(150) });
  });

  it("loads direct and group permissions, deduplicated, in one lookup", async () => {
    const user = await createUser(db, { username: "perm-user", isStaff: true });
    await grantUserPermissions(db, "perm-user", ["books.view_book", "books.add_book"]);
    await createGroup(db, "editors");
    await grantGroupPermissions(db, "editors", ["books.change_book", "books.view_book"]);
    await addUsersToGroup(db, "editors", ["perm-user"]);

    const lookup = await loadPrincipal(db, user.id);
    assert.deepEqual(okPermissions(lookup), ["books.add_book", "books.change_book", "books.view_book"]);
    assert.ok(lookup.status === "ok");
    assert.equal(lookup.principal.id, user.id);
    assert.equal(lookup.principal.username, "perm-user");
    assert.equal(lookup.principal.isStaff, true);
    assert.equal(lookup.principal.isSuperuser, false);

    // A user without grants gets an empty set, not another user's rows.
    const plain = await createUser(db, { username: "no-perms" });
    assert.deepEqual(okPermissions(await loadPrincipal(db, plain.id)), []);
  });

  it("gives a superuser every permission row", async () => {
    await ensurePermissions(db, ["super.one", "super.two"]);
    const su = await createUser(db, { username: "root-user", isSuperuser: true });
    const all = await db.select({ appLabel: permissions.appLabel, codename: permissions.codename }).from(permissions);
    const expected = all.map((p) => `${p.appLabel}.${p.codename}`).sort();
    assert.ok(expected.includes("super.two"));
    assert.deepEqual(okPermissions(await loadPrincipal(db, su.id)), expected);
  });

  it("reports inactive and unknown users", async () => {
    const user = await createUser(db, { username: "sleeper", isActive: false });
    assert.deepEqual(await loadPrincipal(db, user.id), { status: "inactive" });
    // Inactive wins over revoked: the account state is what matters.
    assert.deepEqual(await loadPrincipal(db, user.id, { jti: "x", issuedAt: 0 }), { status: "inactive" });

    assert.deepEqual(await loadPrincipal(db, 2_000_000_000), { status: "not_found" });
    assert.deepEqual(await loadPrincipal(db, 0), { status: "not_found" });
    assert.deepEqual(await loadPrincipal(db, 2 ** 31), { status: "not_found" });
    assert.deepEqual(await loadPrincipal(db, 1.5), { status: "not_found" });
  });

  it("deactivation is reported and bumps credentials_changed_at", async () => {
    const user = await createUser(db, { username: "to-deactivate" });
    const before = user.credentialsChangedAt.getTime();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const updated = await setUserActive(db, "to-deactivate", false);
    assert.equal(updated.isActive, false);
    assert.ok(updated.credentialsChangedAt.getTime() > before);
    assert.deepEqual(await loadPrincipal(db, user.id), { status: "inactive" });
    const back = await setUserActive(db, "to-deactivate", true);
    assert.equal(back.isActive, true);
    assert.equal(okPermissions(await loadPrincipal(db, user.id)).length, 0);
    await assert.rejects(setUserActive(db, "nobody-here", false), assertStoreError("USER_NOT_FOUND"));
  });

  it("reports a revoked jti", async () => {
    const user = await createUser(db, { username: "revoked-jti" });
    const issuedAt = Math.floor(Date.now() / 1000) + 10;
    await db
      .insert(revokedTokens)
      .values({ jti: "jti-revoked-1", userId: user.id, expiresAt: new Date(Date.now() + 60_000) });
    assert.deepEqual(await loadPrincipal(db, user.id, { jti: "jti-revoked-1", issuedAt }), { status: "revoked" });
    assert.equal((await loadPrincipal(db, user.id, { jti: "jti-live-1", issuedAt })).status, "ok");
  });

  it("revokes tokens issued before credentials_changed_at", async () => {
    const user = await createUser(db, { username: "pw-change" });
    const changed = await setPasswordHash(db, user.id, "scrypt$new");
    assert.ok(!("password" in changed));
    assert.equal((await findCredentials(db, "pw-change"))?.password, "scrypt$new");
    // iat has millisecond precision (protoguard's issuer) or whole seconds (others).
    const changedAt = changed.credentialsChangedAt.getTime() / 1000;
    assert.deepEqual(await loadPrincipal(db, user.id, { jti: "j-old", issuedAt: changedAt - 0.001 }), {
      status: "revoked",
    });
    assert.deepEqual(await loadPrincipal(db, user.id, { jti: "j-whole", issuedAt: Math.floor(changedAt) - 1 }), {
      status: "revoked",
    });
    assert.equal((await loadPrincipal(db, user.id, { jti: "j-same", issuedAt: changedAt })).status, "ok");
    assert.equal((await loadPrincipal(db, user.id, { jti: "j-new", issuedAt: changedAt + 0.001 })).status, "ok");
    assert.deepEqual(await loadPrincipal(db, user.id, { jti: "j-nan", issuedAt: Number.NaN }), { status: "revoked" });

    // A rehash on login must not log anyone out.
    const rehashed = await setPasswordHash(db, user.id, "scrypt$rehash", { bumpCredentials: false });
    assert.equal(rehashed.credentialsChangedAt.getTime(), changed.credentialsChangedAt.getTime());
    await assert.rejects(setPasswordHash(db, 2_000_000_000, "x"), assertStoreError("USER_NOT_FOUND"));
  });

  it("revoking a permission takes effect on the next lookup", async () => {
    const user = await createUser(db, { username: "revoke-perm" });
    await grantUserPermissions(db, "revoke-perm", ["shop.refund", "shop.view"]);
    await createGroup(db, "refunders");
    await grantGroupPermissions(db, "refunders", ["shop.void"]);
    await addUsersToGroup(db, "refunders", ["revoke-perm"]);
    assert.deepEqual(okPermissions(await loadPrincipal(db, user.id)), ["shop.refund", "shop.view", "shop.void"]);

    assert.equal(await revokeUserPermissions(db, "revoke-perm", ["shop.refund", "shop.never_granted"]), 1);
    assert.deepEqual(okPermissions(await loadPrincipal(db, user.id)), ["shop.view", "shop.void"]);

    assert.equal(await revokeGroupPermissions(db, "refunders", ["shop.void"]), 1);
    assert.deepEqual(okPermissions(await loadPrincipal(db, user.id)), ["shop.view"]);

    await grantGroupPermissions(db, "refunders", ["shop.void"]);
    assert.equal(await removeUsersFromGroup(db, "refunders", ["revoke-perm"]), 1);
    assert.deepEqual(okPermissions(await loadPrincipal(db, user.id)), ["shop.view"]);
  });

  it("writes nothing when one permission string is bad", async () => {
    const user = await createUser(db, { username: "atomic-perm" });
    await assert.rejects(
      grantUserPermissions(db, "atomic-perm", ["atomic.good_one", "not a permission", "atomic.good_two"]),
      assertStoreError("INVALID_PERMISSION"),
    );
    const rows = await db.select().from(permissions).where(eq(permissions.appLabel, "atomic"));
    assert.deepEqual(rows, []);
    const [grants] = await db.select({ n: count() }).from(userPermissions).where(eq(userPermissions.userId, user.id));
    assert.equal(grants!.n, 0);
    await assert.rejects(ensurePermissions(db, ["atomic.ok", "bad"]), assertStoreError("INVALID_PERMISSION"));
    assert.deepEqual(await db.select().from(permissions).where(eq(permissions.appLabel, "atomic")), []);
    await assert.rejects(grantUserPermissions(db, "ghost-user", ["atomic.x"]), assertStoreError("USER_NOT_FOUND"));
    assert.deepEqual(await db.select().from(permissions).where(eq(permissions.appLabel, "atomic")), []);
  });

  it("adds nobody to a group when one username is unknown", async () => {
    await createUser(db, { username: "member-a" });
    await createUser(db, { username: "member-b" });
    const group = await createGroup(db, "atomic-group");
    await assert.rejects(
      addUsersToGroup(db, "atomic-group", ["member-a", "no-such-member", "member-b"]),
      (error: unknown) => assertStoreError("USER_NOT_FOUND")(error) && /no-such-member/.test((error as Error).message),
    );
    const [members] = await db.select({ n: count() }).from(userGroups).where(eq(userGroups.groupId, group.id));
    assert.equal(members!.n, 0);

    await addUsersToGroup(db, "atomic-group", ["member-a", "member-b", "member-a"]);
    const [after] = await db.select({ n: count() }).from(userGroups).where(eq(userGroups.groupId, group.id));
    assert.equal(after!.n, 2);

    await assert.rejects(addUsersToGroup(db, "no-such-group", ["member-a"]), assertStoreError("GROUP_NOT_FOUND"));
    await assert.rejects(createGroup(db, "atomic-group"), assertStoreError("DUPLICATE_GROUP"));
  });

  it("ensurePermissions returns ids in input order and reuses existing rows", async () => {
    const first = await ensurePermissions(db, ["order.b", "order.a"]);
    const second = await ensurePermissions(db, ["order.a", "order.c", "order.b", "order.a"]);
    assert.equal(second[0], first[1]);
    assert.equal(second[2], first[0]);
    assert.equal(second[3], first[1]);
    assert.equal(new Set([...first, ...second]).size, 3);
  });

  it("deleting a user cascades to grants, memberships and tokens", async () => {
    const user = await createUser(db, { username: "doomed" });
    await grantUserPermissions(db, "doomed", ["cascade.perm"]);
    await createGroup(db, "cascade-group");
    await addUsersToGroup(db, "cascade-group", ["doomed"]);
    const now = Date.now();
    await db.insert(revokedTokens).values({ jti: "doomed-jti", userId: user.id, expiresAt: new Date(now + 60_000) });
    await db.insert(refreshTokens).values({
      jti: "doomed-refresh",
      familyId: "family-1",
      userId: user.id,
      tokenHash: "a".repeat(64),
      accessJti: "doomed-access",
      accessExpiresAt: new Date(now + 60_000),
      issuedAt: new Date(now),
      expiresAt: new Date(now + 60_000),
    });

    await deleteUser(db, "doomed");
    assert.deepEqual(await loadPrincipal(db, user.id), { status: "not_found" });
    for (const [table, column] of [
      [userPermissions, userPermissions.userId],
      [userGroups, userGroups.userId],
      [revokedTokens, revokedTokens.userId],
      [refreshTokens, refreshTokens.userId],
    ] as const) {
      const [row] = await db.select({ n: count() }).from(table).where(eq(column, user.id));
      assert.equal(row!.n, 0);
    }
    // The permission and the group themselves stay.
    assert.equal((await db.select().from(permissions).where(eq(permissions.appLabel, "cascade"))).length, 1);
    assert.equal((await db.select().from(users).where(eq(users.username, "doomed"))).length, 0);
    await assert.rejects(deleteUser(db, "doomed"), assertStoreError("USER_NOT_FOUND"));
  });
}

describe("store on PGlite", { timeout: SUITE_TIMEOUT }, () => {
  storeSuite(() => createTestDatabase({ driver: "pglite" }));

  it("keeps data across a reopen of its data directory", async () => {
    const dir = await mkdtemp(join(tmpdir(), "protoguard-pglite-"));
    try {
      const first = await openDatabase({ dataDir: dir });
      try {
        await migrateDatabase(first);
        await createUser(first.db, { username: "persistent" });
        await grantUserPermissions(first.db, "persistent", ["disk.kept"]);
      } finally {
        await first.close();
      }
      const second = await openDatabase({ dataDir: dir });
      try {
        await migrateDatabase(second);
        const user = await findUserByUsername(second.db, "persistent");
        assert.ok(user);
        assert.deepEqual(okPermissions(await loadPrincipal(second.db, user.id)), ["disk.kept"]);
      } finally {
        await second.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

const databaseUrl = postgresUrl;
describeOr(skipWithoutPostgres, "store on PostgreSQL", { timeout: SUITE_TIMEOUT }, () => {
  storeSuite(() => createTestDatabase({ driver: "postgres", url: databaseUrl! }));

  it("serializes concurrent migrations of one database", async () => {
    const fresh = await createTestDatabase({ driver: "postgres", url: databaseUrl!, migrate: false });
    const others = await Promise.all([openDatabase({ url: fresh.url! }), openDatabase({ url: fresh.url! })]);
    try {
      await Promise.all([fresh, ...others].map((d) => migrateDatabase(d)));
      assert.equal(await migrationCount(fresh.db), MIGRATIONS);
      const user = await createUser(fresh.db, { username: "after-race" });
      assert.equal((await loadPrincipal(fresh.db, user.id)).status, "ok");
    } finally {
      await Promise.all(others.map((d) => d.close()));
      await fresh.close();
    }
  });

  it("copies a template database: each copy is migrated, and none sees another's rows", async () => {
    const one = await createTestDatabase({ driver: "postgres", url: databaseUrl! });
    const two = await createTestDatabase({ driver: "postgres", url: databaseUrl! });
    try {
      assert.equal(await migrationCount(one.db), MIGRATIONS);
      await createUser(one.db, { username: "only-in-one" });
      assert.equal(await findUserByUsername(two.db, "only-in-one"), undefined);
      await createUser(two.db, { username: "only-in-one" });
    } finally {
      await Promise.all([one.close(), two.close()]);
    }
    const probe = await openDatabase({ url: databaseUrl!, max: 1 });
    try {
      const rows = await probe.db
        .select({ allow: sql<boolean>`datallowconn` })
        .from(sql`pg_database`)
        .where(sql`datname like 'protoguard\_template\_%' and datname not like '%\_building'`);
      assert.ok(rows.length >= 1, "a template database exists");
      assert.ok(
        rows.every((row) => row.allow === false),
        "templates take no connections, so copying never fails",
      );
    } finally {
      await probe.close();
    }
  });

  it("drops its throwaway database on close", async () => {
    const temp = await createTestDatabase({ driver: "postgres", url: databaseUrl! });
    const name = new URL(temp.url!).pathname.slice(1);
    assert.match(name, /^protoguard_test_[0-9a-z_]+$/);
    await temp.close();
    const probe = await openDatabase({ url: databaseUrl!, max: 1 });
    try {
      const rows = await probe.db
        .select({ n: sql<number>`count(*)::int` })
        .from(sql`pg_database`)
        .where(sql`datname = ${name}`);
      assert.equal(rows[0]!.n, 0);
    } finally {
      await probe.close();
    }
  });
});
