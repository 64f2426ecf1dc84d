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
import { createKeyring, createTokenIssuer } from "../src/exports/protoguard.js";
import { issueSession } from "../src/lifecycle/sessions.js";
import { findUserByUsername } from "../src/store/users.js";
import { listSessions } from "../src/store/sessions.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertOk, cleanEnv, runCliCaptured } from "./helpers/cli.js";

/** Not one of the `protoguard.*` permissions every database holds for AdminService's rules. */
const isApplications = (p: { permission: string }): boolean => !p.permission.startsWith("protoguard.");
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
    // A superuser holds every permission the database knows, protoguard's own (seeded by the
    // migrations for AdminService's rules) among them.
    assert.deepEqual(root.effectivePermissions.find((p) => p.permission === "protoguard.view_user")?.sources, [
      "superuser",
    ]);
    assert.deepEqual(
      root.effectivePermissions.filter(isApplications).map((p) => [p.permission, p.sources]),
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
    assert.deepEqual((await listPermissions(database.db)).filter(isApplications), [
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

/** Runs the CLI against `env`; returns the result. */
const run = (env: NodeJS.ProcessEnv, ...args: string[]) => runCliCaptured(args, env);

/** Runs the CLI, expects exit 0, returns stdout. */
async function ok(env: NodeJS.ProcessEnv, ...args: string[]): Promise<string> {
  const result = await run(env, ...args);
  assertOk(result);
  return result.stdout;
}

/** Runs the CLI, expects `code` and a one-line stderr matching `message`. */
async function fails(env: NodeJS.ProcessEnv, code: number, message: RegExp, ...args: string[]): Promise<void> {
  const result = await run(env, ...args);
  assert.equal(result.code, code, `stdout: ${result.stdout}\nstderr: ${result.stderr}`);
  assert.match(result.stderr, message);
  assert.equal(result.stdout, "");
}

const EXAMPLE_APP = join(import.meta.dirname, "..", "example", "app.ts");
const KINDS_APP = join(import.meta.dirname, "helpers", "kinds-app.ts");

describeOr(skipWithoutPostgres, "read-side commands on PostgreSQL", { timeout: SUITE_TIMEOUT }, () => {
  let database: TestDatabase;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    database = await createTestDatabase({ driver: "postgres", url: postgresUrl! });
    await seed(database);
    await grantGroupPermissions(database.db, "editors", ["products.change_product"]);
    await grantUserPermissions(database.db, "svc", ["billing.charge"]);
    await grantUserPermissions(database.db, "alice", ["billing.charge"]);
    env = cleanEnv({ DATABASE_URL: database.url!, PROTOGUARD_JWT_SECRET: "c".repeat(32) });
  });
  after(() => database?.close());

  it("user list: a table, --json with paging, --search, --services; a bad --limit is a usage error", async () => {
    const text = await ok(env, "user", "list");
    const lines = text.trimEnd().split("\n");
    assert.match(lines[0]!, /^USERNAME\s+KIND\s+ACTIVE\s+STAFF\s+SUPERUSER\s+TOTP\s+LAST LOGIN\s+EMAIL$/);
    assert.deepEqual(
      lines.slice(1).map((l) => l.split(/\s+/).slice(0, 5)),
      [
        ["alice", "user", "yes", "no", "no"],
        ["bob", "user", "yes", "yes", "no"],
        ["carol", "user", "no", "no", "no"],
        ["root", "user", "yes", "yes", "yes"],
      ],
    );
    assert.match(lines[1]!, /never\s+alice@example\.com$/);
    const page = JSON.parse(await ok(env, "user", "list", "--json", "--limit", "2")) as {
      users: { username: string; kind: string; active: boolean; date_joined: string; last_login: null }[];
      next: string | null;
    };
    assert.deepEqual(
      page.users.map((u) => u.username),
      ["alice", "bob"],
    );
    assert.equal(page.next, "bob");
    assert.equal(page.users[0]!.last_login, null);
    assert.ok(!Number.isNaN(Date.parse(page.users[0]!.date_joined)));
    const rest = JSON.parse(await ok(env, "user", "list", "--json", "--limit", "2", "--after", "bob")) as typeof page;
    assert.deepEqual(
      rest.users.map((u) => u.username),
      ["carol", "root"],
    );
    assert.equal(rest.next, null);
    assert.match(await ok(env, "user", "list", "--limit", "1"), /\(more: repeat with --after alice\)\n$/);
    const searched = JSON.parse(await ok(env, "user", "list", "--json", "--search", "shop.example")) as typeof page;
    assert.deepEqual(
      searched.users.map((u) => u.username),
      ["bob"],
    );
    const all = JSON.parse(await ok(env, "user", "list", "--json", "--services")) as typeof page;
    assert.deepEqual(
      all.users.filter((u) => u.kind === "service").map((u) => u.username),
      ["svc"],
    );
    await fails(env, 2, /--limit must be a whole number from 1 to 500/, "user", "list", "--limit", "0");
    await fails(env, 2, /unexpected argument "alice"/, "user", "list", "alice");
  });

  it("user show: flags, groups, direct and effective permissions with sources; unknown user exits 1", async () => {
    const text = await ok(env, "user", "show", "alice");
    assert.match(text, /^username: +alice$/m);
    assert.match(text, /^staff: +no$/m);
    assert.match(text, /^groups: +editors$/m);
    assert.match(text, /^direct permissions: billing\.charge, shop\.delete_product, shop\.view_product$/m);
    assert.match(text, /^ {2}PERMISSION +SOURCES$/m);
    assert.match(text, /^ {2}products\.change_product +group:editors$/m);
    assert.match(text, /^ {2}shop\.view_product +direct, group:editors$/m);
    const detail = JSON.parse(await ok(env, "user", "show", "root", "--json")) as {
      superuser: boolean;
      effective_permissions: { permission: string; sources: string[] }[];
    };
    assert.equal(detail.superuser, true);
    assert.ok(detail.effective_permissions.length >= 4);
    assert.ok(detail.effective_permissions.every((p) => p.sources.join() === "superuser"));
    await fails(env, 1, /^protoguard: no user "nobody"\n$/, "user", "show", "nobody");
    await fails(env, 2, /missing <username>/, "user", "show");
  });

  it("user activate: enables a deactivated person; a service account is refused", async () => {
    assert.equal(await ok(env, "user", "activate", "carol"), 'activated user "carol"\n');
    assert.equal((await userDetail(database.db, "carol")).user.isActive, true);
    await fails(env, 1, /svc/, "user", "activate", "svc");
    await fails(env, 1, /no user "ghost"/, "user", "activate", "ghost");
    await setUserActive(database.db, "carol", false);
  });

  it("group list and show, as text and JSON", async () => {
    const text = await ok(env, "group", "list");
    assert.match(text, /^GROUP +MEMBERS +PERMISSIONS$/m);
    assert.match(text, /^editors +2 +products\.change_product, shop\.change_product, shop\.view_product$/m);
    assert.match(text, /^empty +0 +-$/m);
    assert.deepEqual(JSON.parse(await ok(env, "group", "list", "--json"))[2], {
      name: "viewers",
      member_count: 1,
      permissions: ["shop.view_product"],
    });
    assert.equal(
      await ok(env, "group", "show", "viewers"),
      "group:       viewers\npermissions: shop.view_product\nmembers:     svc\n",
    );
    assert.deepEqual(JSON.parse(await ok(env, "group", "show", "viewers", "--json")), {
      name: "viewers",
      member_count: 1,
      permissions: ["shop.view_product"],
      members: ["svc"],
    });
    await fails(env, 1, /no group "nope"/, "group", "show", "nope");
  });

  it("permission list, as text and JSON", async () => {
    const text = await ok(env, "permission", "list");
    assert.match(text, /^PERMISSION +USERS +GROUPS +NAME$/m);
    assert.match(text, /^shop\.view_product +3 +2$/m);
    const rows = JSON.parse(await ok(env, "permission", "list", "--json")) as { permission: string }[];
    assert.ok(rows.some((r) => r.permission === "protoguard.view_user"));
    assert.deepEqual(
      rows.filter(isApplications).map((r) => r.permission),
      ["billing.charge", "products.change_product", "shop.change_product", "shop.delete_product", "shop.view_product"],
    );
    assert.deepEqual(rows[0], { permission: "billing.charge", name: "", user_count: 2, group_count: 0 });
  });

  it("who-can: permission, staff, superuser, condition and service-kind rules; bad methods", async () => {
    const update = await ok(env, "who-can", "/example.v1.ProductService/UpdateProduct", "--routes", EXAMPLE_APP);
    assert.equal(
      update,
      [
        "/example.v1.ProductService/UpdateProduct",
        "rule: permissions: products.change_product",
        "users:            alice, bob, root",
        "groups:           editors",
        "service accounts: (none)",
        "",
      ].join("\n"),
    );
    const staff = await ok(env, "who-can", "example.v1.AdminService/ListUsers", "--routes", EXAMPLE_APP);
    assert.match(staff, /^rule: staff$/m);
    assert.match(staff, /^users: +bob, root$/m);
    assert.match(staff, /^groups: +\(none\)$/m);
    const superuser = JSON.parse(
      await ok(env, "who-can", "/example.v1.AdminService/DeleteUser", "--routes", EXAMPLE_APP, "--json"),
    ) as Record<string, unknown>;
    assert.deepEqual(superuser, {
      procedure: "/example.v1.AdminService/DeleteUser",
      rule: "superuser",
      public: false,
      users: ["root"],
      groups: [],
      service_accounts: [],
      member_requirements: [],
      conditions: [],
    });
    const conditional = await ok(env, "who-can", "/example.v1.OrderService/UpdateOrder", "--routes", EXAMPLE_APP);
    assert.match(conditional, /^users: +alice, bob, root$/m);
    assert.match(conditional, /^and only if resource\.user_id == principal\.id \|\| principal\.is_staff$/m);
    const services = await ok(env, "who-can", "/guardtest.v1.KindService/ChargeForServices", "--routes", KINDS_APP);
    assert.match(services, /^users: +\(none\)$/m);
    assert.match(services, /^service accounts: +svc$/m);
    const charge = JSON.parse(
      await ok(env, "who-can", "/guardtest.v1.KindService/Charge", "--routes", KINDS_APP, "--json"),
    ) as { users: string[]; service_accounts: string[] };
    assert.deepEqual([charge.users, charge.service_accounts], [["alice", "root"], ["svc"]]);
    // AuthService is always served: its Login is public.
    const login = await ok(env, "who-can", "/protoguard.v1.AuthService/Login");
    assert.match(login, /^anyone may call, signed in or not$/m);
    await fails(
      env,
      1,
      /no method \/example\.v1\.Nope\/Do among the served services/,
      "who-can",
      "/example.v1.Nope/Do",
    );
    await fails(env, 2, /invalid method "nope"/, "who-can", "nope");
    await fails(env, 2, /missing <method>/, "who-can");
  });

  it("session list and revoke: a user's live sessions; a revoked one is gone; unknown ids exit 1", async () => {
    const keyring = await createKeyring([{ alg: "HS256", secret: "c".repeat(32) }]);
    const issuer = createTokenIssuer({ keyring });
    const bob = (await findUserByUsername(database.db, "bob"))!;
    const first = await issueSession(database.db, issuer, bob.id, undefined, {
      peerAddress: "192.0.2.7",
      userAgent: "curl/8.0",
    });
    await issueSession(database.db, issuer, bob.id);
    const text = await ok(env, "session", "list", "bob");
    const lines = text.trimEnd().split("\n");
    assert.match(lines[0]!, /^SESSION +CREATED +LAST REFRESHED +ACCESS EXPIRES +PEER +USER AGENT$/);
    assert.equal(lines.length, 3);
    assert.ok(lines.some((l) => l.startsWith(first.familyId) && /192\.0\.2\.7 +curl\/8\.0$/.test(l)));
    const listed = JSON.parse(await ok(env, "session", "list", "bob", "--json")) as Record<string, string>[];
    const mine = listed.find((s) => s["id"] === first.familyId)!;
    assert.equal(mine["peer_address"], "192.0.2.7");
    assert.equal(mine["user_agent"], "curl/8.0");
    assert.equal(mine["access_expires_at"], new Date(first.access.expiresAt * 1000).toISOString());
    assert.equal(await ok(env, "session", "revoke", first.familyId), `revoked session ${first.familyId}\n`);
    assert.deepEqual(
      (await listSessions(database.db, bob.id, new Date())).map((s) => s.id).includes(first.familyId),
      false,
    );
    await fails(env, 1, /^protoguard: no session "nope"\n$/, "session", "revoke", "nope");
    await fails(env, 1, /no user "ghost"/, "session", "list", "ghost");
  });

  it("group revoke, remove and delete change what members hold", async () => {
    assert.equal(
      await ok(env, "group", "revoke", "editors", "shop.change_product"),
      'revoked 1 grant from group "editors"\n',
    );
    assert.equal(await ok(env, "group", "remove", "editors", "bob"), 'removed 1 member from group "editors"\n');
    assert.deepEqual((await userDetail(database.db, "bob")).groups, []);
    await fails(env, 1, /no user "ghost"/, "group", "remove", "editors", "alice", "ghost");
    assert.deepEqual((await userDetail(database.db, "alice")).groups, ["editors"]);
    await fails(env, 1, /invalid permission "nodot"/, "group", "revoke", "editors", "nodot");
    assert.equal(await ok(env, "group", "delete", "editors"), 'deleted group "editors"\n');
    assert.deepEqual((await userDetail(database.db, "alice")).groups, []);
    await fails(env, 1, /no group "editors"/, "group", "delete", "editors");
  });
});

describeOr(undefined, "read-side commands on PGlite (a data directory)", { timeout: SUITE_TIMEOUT }, () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoguard-cli-read-"));
    env = cleanEnv({ PROTOGUARD_DATA_DIR: dir });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("user show and who-can read what the write commands stored", async () => {
    await ok(env, "user", "create", "dora", "--password", "pw-dora-12345");
    await ok(env, "group", "create", "ops");
    await ok(env, "group", "grant", "ops", "products.change_product");
    await ok(env, "group", "add", "ops", "dora");
    const detail = JSON.parse(await ok(env, "user", "show", "dora", "--json")) as {
      effective_permissions: unknown[];
    };
    assert.deepEqual(detail.effective_permissions, [{ permission: "products.change_product", sources: ["group:ops"] }]);
    const who = await ok(env, "who-can", "/example.v1.ProductService/UpdateProduct", "--routes", EXAMPLE_APP);
    assert.match(who, /^users: +dora$/m);
    assert.match(who, /^groups: +ops$/m);
  });
});
