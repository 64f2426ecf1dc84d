/**
 * The read side: store functions (directory.ts, who-can.ts) on PGlite and PostgreSQL, and the
 * CLI commands over them (`user list|show|activate`, `group list|show|revoke|remove|delete`,
 * `permission list`, `session list|revoke`, `who-can`).
 */
import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import {
  addUsersToGroup,
  createGroup,
  createUser,
  grantGroupPermissions,
  grantUserPermissions,
  setUserActive,
  StoreError,
} from "../src/exports/store.js";
import { planRule, type PlannedRule, type RuleInit } from "../src/policy/rule.js";
import { groupDetail, listGroups, listPermissions, listUsers, userDetail } from "../src/store/directory.js";
import { createServiceAccount } from "../src/store/service-accounts.js";
import { whoCan } from "../src/store/who-can.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/database.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";

const SUITE_TIMEOUT = 60_000;

function plan(init: RuleInit): PlannedRule {
  const planned = planRule(init);
  assert.ok(!("problems" in planned), JSON.stringify(planned));
  return planned;
}

/** alice (direct + via group editors), bob (staff, via editors), root (superuser), carol (inactive), svc (service). */
async function seed(database: TestDatabase): Promise<void> {
  const db = database.db;
  await createUser(db, { username: "alice", email: "alice@example.com" });
  await createUser(db, { username: "bob", email: "bob@shop.example", isStaff: true });
  await createUser(db, { username: "root", isStaff: true, isSuperuser: true });
  await createUser(db, { username: "carol", email: "CAROL@example.com" });
  await createServiceAccount(db, { name: "svc", clientId: "svc-client", secretHash: "x" });
  await createGroup(db, "editors");
  await createGroup(db, "viewers");
  await createGroup(db, "empty");
  await grantGroupPermissions(db, "editors", ["shop.change_product", "shop.view_product"]);
  await grantGroupPermissions(db, "viewers", ["shop.view_product"]);
  await grantUserPermissions(db, "alice", ["shop.view_product", "shop.delete_product"]);
  await grantUserPermissions(db, "carol", ["shop.change_product", "shop.view_product"]);
  await grantUserPermissions(db, "svc", ["shop.view_product"]);
  await addUsersToGroup(db, "editors", ["alice", "bob"]);
  await addUsersToGroup(db, "viewers", ["svc"]);
  await setUserActive(db, "carol", false);
}

function storeSuite(open: () => Promise<TestDatabase>): void {
  let database: TestDatabase;
  before(async () => {
    database = await open();
    await seed(database);
  });
  after(() => database?.close());

  it("listUsers pages by username, searches username and email, people only unless asked", async () => {
    const all = await listUsers(database.db);
    assert.deepEqual(
      all.users.map((u) => u.username),
      ["alice", "bob", "carol", "root"],
    );
    assert.equal(all.next, undefined);
    const withServices = await listUsers(database.db, { includeServices: true });
    assert.deepEqual(
      withServices.users.map((u) => [u.username, u.kind]),
      [
        ["alice", "user"],
        ["bob", "user"],
        ["carol", "user"],
        ["root", "user"],
        ["svc", "service"],
      ],
    );
    const first = await listUsers(database.db, { limit: 2 });
    assert.deepEqual(
      first.users.map((u) => u.username),
      ["alice", "bob"],
    );
    assert.equal(first.next, "bob");
    const second = await listUsers(database.db, { limit: 2, after: first.next! });
    assert.deepEqual(
      second.users.map((u) => u.username),
      ["carol", "root"],
    );
    assert.equal(second.next, undefined);
    const found = await listUsers(database.db, { search: "EXAMPLE.COM" });
    assert.deepEqual(
      found.users.map((u) => u.username),
      ["alice", "carol"],
    );
    // LIKE metacharacters are matched literally.
    assert.deepEqual((await listUsers(database.db, { search: "%" })).users, []);
    const carol = all.users.find((u) => u.username === "carol")!;
    assert.equal(carol.isActive, false);
    assert.equal(carol.lastLogin, null);
    assert.ok(carol.dateJoined instanceof Date);
    assert.ok(!("password" in carol) && !("totpSecret" in carol));
    await assert.rejects(listUsers(database.db, { limit: 0 }), (e) => e instanceof StoreError);
    await assert.rejects(listUsers(database.db, { limit: 501 }), (e) => e instanceof StoreError);
  });

  it("userDetail names every source of each effective permission", async () => {
    const alice = await userDetail(database.db, "alice");
    assert.deepEqual(alice.groups, ["editors"]);
    assert.deepEqual(alice.directPermissions, ["shop.delete_product", "shop.view_product"]);
    assert.deepEqual(alice.effectivePermissions, [
      { permission: "shop.change_product", sources: ["group:editors"] },
      { permission: "shop.delete_product", sources: ["direct"] },
      { permission: "shop.view_product", sources: ["direct", "group:editors"] },
    ]);
    const root = await userDetail(database.db, "root");
    assert.equal(root.user.isSuperuser, true);
    assert.deepEqual(root.directPermissions, []);
    assert.deepEqual(
      root.effectivePermissions.map((p) => [p.permission, p.sources]),
      [
        ["shop.change_product", ["superuser"]],
        ["shop.delete_product", ["superuser"]],
        ["shop.view_product", ["superuser"]],
      ],
    );
    const svc = await userDetail(database.db, "svc");
    assert.equal(svc.user.kind, "service");
    assert.deepEqual(svc.effectivePermissions, [
      { permission: "shop.view_product", sources: ["direct", "group:viewers"] },
    ]);
    await assert.rejects(
      userDetail(database.db, "nobody"),
      (e) => e instanceof StoreError && e.code === "USER_NOT_FOUND",
    );
  });

  it("listGroups, groupDetail and listPermissions count holders", async () => {
    assert.deepEqual(await listGroups(database.db), [
      { name: "editors", memberCount: 2, permissions: ["shop.change_product", "shop.view_product"] },
      { name: "empty", memberCount: 0, permissions: [] },
      { name: "viewers", memberCount: 1, permissions: ["shop.view_product"] },
    ]);
    assert.deepEqual(await groupDetail(database.db, "editors"), {
      group: { name: "editors", memberCount: 2, permissions: ["shop.change_product", "shop.view_product"] },
      members: ["alice", "bob"],
    });
    await assert.rejects(
      groupDetail(database.db, "nope"),
      (e) => e instanceof StoreError && e.code === "GROUP_NOT_FOUND",
    );
    assert.deepEqual(await listPermissions(database.db), [
      { permission: "shop.change_product", name: "", userCount: 1, groupCount: 1 },
      { permission: "shop.delete_product", name: "", userCount: 1, groupCount: 0 },
      { permission: "shop.view_product", name: "", userCount: 3, groupCount: 2 },
    ]);
  });

  it("whoCan: permission rules list users, groups and service accounts; inactive users never", async () => {
    const change = await whoCan(database.db, plan({ permissions: ["shop.change_product"] }));
    assert.deepEqual(change, {
      rule: "permissions: shop.change_product",
      conditions: [],
      public: false,
      // carol holds it directly but is inactive; root is a superuser.
      users: ["alice", "bob", "root"],
      groups: ["editors"],
      serviceAccounts: [],
      memberRequirements: [],
    });
    const view = await whoCan(database.db, plan({ permissions: ["shop.view_product"] }));
    assert.deepEqual(view.users, ["alice", "bob", "root"]);
    assert.deepEqual(view.groups, ["editors", "viewers"]);
    assert.deepEqual(view.serviceAccounts, ["svc"]);
    // Both permissions: alice has delete directly and change via editors.
    const both = await whoCan(database.db, plan({ permissions: ["shop.change_product", "shop.delete_product"] }));
    assert.deepEqual(both.users, ["alice", "root"]);
    assert.deepEqual(both.groups, []);
    // A permission nobody was granted: only superusers.
    const unknown = await whoCan(database.db, plan({ permissions: ["shop.refund_order"] }));
    assert.deepEqual([unknown.users, unknown.groups, unknown.serviceAccounts], [["root"], [], []]);
  });

  it("whoCan: staff, superuser, principal kind, authenticated, public and conditions", async () => {
    const staff = await whoCan(database.db, plan({ staff: true, permissions: ["shop.change_product"] }));
    assert.deepEqual(staff.users, ["bob", "root"]);
    assert.deepEqual(staff.groups, ["editors"]);
    assert.deepEqual(staff.memberRequirements, ["staff"]);
    assert.equal(staff.rule, "staff; permissions: shop.change_product");
    const superuser = await whoCan(database.db, plan({ superuser: true }));
    assert.deepEqual([superuser.users, superuser.groups, superuser.serviceAccounts], [["root"], [], []]);
    const services = await whoCan(database.db, plan({ principalKind: "service", permissions: ["shop.view_product"] }));
    assert.deepEqual([services.users, services.serviceAccounts], [[], ["svc"]]);
    assert.deepEqual(services.groups, ["editors", "viewers"]);
    assert.deepEqual(services.memberRequirements, ["a service account"]);
    const people = await whoCan(database.db, plan({ principalKind: "user", permissions: ["shop.view_product"] }));
    assert.deepEqual([people.users, people.serviceAccounts], [["alice", "bob", "root"], []]);
    const anyone = await whoCan(database.db, plan({ authenticated: true }));
    assert.deepEqual([anyone.users, anyone.groups, anyone.serviceAccounts], [["alice", "bob", "root"], [], ["svc"]]);
    const conditional = await whoCan(
      database.db,
      plan({ permissions: ["shop.view_product"], condition: "request.shop_id == principal.id" }),
    );
    assert.deepEqual(conditional.conditions, ["and only if request.shop_id == principal.id"]);
    assert.deepEqual(conditional.users, ["alice", "bob", "root"]);
    const open = await whoCan(database.db, plan({ public: true }));
    assert.deepEqual(open, {
      rule: "public",
      conditions: [],
      public: true,
      users: [],
      groups: [],
      serviceAccounts: [],
      memberRequirements: [],
    });
  });
}

describeOr(undefined, "read side on PGlite", { timeout: SUITE_TIMEOUT }, () => {
  storeSuite(() => createTestDatabase({ driver: "pglite" }));
});

describeOr(skipWithoutPostgres, "read side on PostgreSQL", { timeout: SUITE_TIMEOUT }, () => {
  storeSuite(() => createTestDatabase({ driver: "postgres", url: postgresUrl! }));
});
