// AdminService over a real startServer: its rules (admin.proto) admit superusers and holders of
// the protoguard.* permission each method names and refuse everyone else; its writes land in
// the audit log with the caller as actor; its refusals are the CLI's, as Connect codes; and
// FollowAuditEvents streams rows another writer adds. On PGlite always; on PostgreSQL when
// DATABASE_URL is set (there, with a second server instance on the same database).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, createClient, type CallOptions, type Client, type ConnectRouter } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { toJson } from "@bufbuild/protobuf";
import { AdminService, ServiceAccountInfoSchema, SigningKeySchema } from "../gen/protoguard/v1/admin_pb.js";
import { AuthService } from "../gen/protoguard/v1/auth_pb.js";
import { createKeyring, createTokenIssuer, createTokenVerifier, type TokenIssuer } from "../src/exports/protoguard.js";
import { createAuthService, createPasswordHasher } from "../src/exports/auth-service.js";
import { startServer, type RunningServer } from "../src/exports/server.js";
import { createTestDatabase, type TestDatabase } from "../src/exports/testing.js";
import { openDatabase } from "../src/store/database.js";
import type { Database } from "../src/store/database-handle.js";
import { recordAuditEvent } from "../src/store/audit.js";
import { createUser, grantUserPermissions } from "../src/store/users.js";
import { authErrorReason } from "../src/exports/protoguard.js";
import { bearer, eventually, expectError, failure } from "./helpers/connect.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";

const SECRET = "admin-service-test-secret-of-32-bytes!!";
const SUITE_TIMEOUT = 180_000;

/** Everything a suite talks to. */
interface Fixture {
  database: TestDatabase;
  issuer: TokenIssuer;
  server: RunningServer;
  admin: Client<typeof AdminService>;
  auth: Client<typeof AuthService>;
  ids: { root: number; viewer: number; plain: number; changer: number; grouper: number };
  /** Starts one more server instance on the same database (its own pool on PostgreSQL). */
  another(): Promise<{ admin: Client<typeof AdminService>; close(): Promise<void> }>;
}

async function startFixture(driver: "pglite" | "postgres"): Promise<Fixture> {
  const database =
    driver === "pglite" ? await createTestDatabase() : await createTestDatabase({ driver, url: postgresUrl! });
  const keyring = await createKeyring([{ alg: "HS256", secret: SECRET }]);
  const issuer = createTokenIssuer({ keyring });
  const verifier = createTokenVerifier({ keyring });
  // Cheap hashes: the test is about the service, not scrypt's cost.
  const passwordHasher = createPasswordHasher({ scrypt: { logN: 10 } });
  const serve = async (db: Database) => {
    const routes = (router: ConnectRouter) =>
      router.service(AuthService, createAuthService({ database: db, issuer, verifier, passwordHasher }));
    return startServer({
      runtime: { database: db, keyring, verifier, passwordHasher },
      routes,
      port: 0,
      logger: pino({ level: "silent" }),
      adminService: { auditFollowIntervalMs: 50 },
    });
  };
  const server = await serve(database);
  const clients = (url: string) => {
    const transport = createConnectTransport({ baseUrl: url, httpVersion: "1.1" });
    return { admin: createClient(AdminService, transport), auth: createClient(AuthService, transport) };
  };
  const db = database.db;
  const root = await createUser(db, {
    username: "root",
    passwordHash: await passwordHasher.hash("root-password"),
    isStaff: true,
    isSuperuser: true,
  });
  const viewer = await createUser(db, { username: "viewer", isStaff: true });
  await grantUserPermissions(db, "viewer", ["protoguard.view_user"]);
  const plain = await createUser(db, { username: "plain" });
  const changer = await createUser(db, { username: "changer", isStaff: true });
  await grantUserPermissions(db, "changer", [
    "protoguard.add_user",
    "protoguard.change_user",
    "protoguard.view_user",
    "shop.view_order",
  ]);
  const grouper = await createUser(db, { username: "grouper", isStaff: true });
  await grantUserPermissions(db, "grouper", ["protoguard.change_group"]);
  return {
    database,
    issuer,
    server,
    ...clients(server.url),
    ids: { root: root.id, viewer: viewer.id, plain: plain.id, changer: changer.id, grouper: grouper.id },
    async another() {
      // On PostgreSQL a second instance has its own pool, as a second process would.
      const second = database.url === undefined ? database : await openDatabase({ url: database.url });
      const other = await serve(second);
      return {
        admin: clients(other.url).admin,
        async close() {
          await other.close();
          if (second !== database) await second.close();
        },
      };
    },
  };
}

function adminSuite(driver: "pglite" | "postgres") {
  let f: Fixture;
  const as = async (id: number) => bearer((await f.issuer.issueAccess(id)).token);

  before(async () => {
    f = await startFixture(driver);
  });
  after(async () => {
    await f?.server.close();
    await f?.database.close();
  });

  it("lets a superuser manage users, and audits each write with the superuser as actor", async () => {
    const root = await as(f.ids.root);
    const created = await f.admin.createUser(
      { username: "alice", email: "alice@example.com", password: "alice-password", isStaff: true },
      root,
    );
    assert.equal(created.user?.user?.username, "alice");
    assert.equal(created.user?.user?.isStaff, true);
    assert.equal(created.user?.user?.isActive, true);

    const page1 = await f.admin.listUsers({ search: "ALI", pageSize: 1 }, root);
    assert.deepEqual(
      page1.users.map((u) => u.username),
      ["alice"],
    );
    const all1 = await f.admin.listUsers({ pageSize: 2 }, root);
    assert.equal(all1.users.length, 2);
    assert.notEqual(all1.nextPageToken, "");
    const all2 = await f.admin.listUsers({ pageSize: 500, pageToken: all1.nextPageToken }, root);
    const names = [...all1.users, ...all2.users].map((u) => u.username);
    assert.deepEqual(names, [...names].sort());
    assert.ok(names.includes("root") && names.includes("plain"));
    assert.equal(all2.nextPageToken, "");

    // Alice logs in; deactivating her ends that session (her refresh token is refused).
    const login = await f.auth.login({ username: "alice", password: "alice-password" });
    const sessions = await f.admin.listUserSessions({ username: "alice" }, root);
    assert.equal(sessions.sessions.length, 1);
    const updated = await f.admin.updateUser({ username: "alice", isActive: false, email: "a@example.org" }, root);
    assert.equal(updated.user?.user?.isActive, false);
    assert.equal(updated.user?.user?.email, "a@example.org");
    const refused = await failure(f.auth.refresh({ refreshToken: login.refreshToken }));
    assert.equal(refused.code, Code.Unauthenticated);
    assert.deepEqual((await f.admin.listUserSessions({ username: "alice" }, root)).sessions, []);
    await f.admin.updateUser({ username: "alice", isActive: true }, root);

    await f.admin.setPassword({ username: "alice", password: "a-new-password" }, root);
    await f.auth.login({ username: "alice", password: "a-new-password" });

    const events = await f.admin.listAuditEvents({ username: "alice" }, root);
    const types = events.events.map((e) => e.type);
    for (const type of ["user.created", "user.deactivated", "user.updated", "user.activated", "password.changed"]) {
      assert.ok(types.includes(type), `${type} in ${types.join(", ")}`);
    }
    for (const event of events.events.filter((e) => !e.type.startsWith("login."))) {
      assert.equal(event.actor, `user:${f.ids.root}`);
      assert.equal(event.actorUsername, "root");
      assert.equal(event.subject, "user:alice");
      assert.ok(!event.detailJson.includes('password":'), "no password in the detail");
    }
    // Newest first, and paged.
    const first = await f.admin.listAuditEvents({ username: "alice", pageSize: 2 }, root);
    assert.equal(first.events.length, 2);
    assert.ok(first.events[0]!.id > first.events[1]!.id);
    const rest = await f.admin.listAuditEvents({ username: "alice", pageToken: first.nextPageToken }, root);
    assert.ok(rest.events.every((e) => e.id < first.events[1]!.id));
    const prefixed = await f.admin.listAuditEvents({ types: ["user."], username: "alice" }, root);
    assert.ok(prefixed.events.every((e) => e.type.startsWith("user.")));

    await f.admin.deleteUser({ username: "alice" }, root);
    await expectError(f.admin.getUser({ username: "alice" }, root), Code.NotFound, "USER_NOT_FOUND");
  });

  it("manages groups, memberships and grants, and shows effective permissions with their source", async () => {
    const root = await as(f.ids.root);
    await f.admin.createUser({ username: "bob", password: "bob-password" }, root);
    await f.admin.createGroup({ name: "editors" }, root);
    await f.admin.grantPermissions(
      { target: { target: { case: "group", value: "editors" } }, permissions: ["shop.change_product"] },
      root,
    );
    const members = await f.admin.setGroupMembers({ group: "editors", add: ["bob"] }, root);
    assert.deepEqual(members.group?.members, ["bob"]);
    await f.admin.grantPermissions(
      {
        target: { target: { case: "username", value: "bob" } },
        permissions: ["shop.change_product", "shop.view_order"],
      },
      root,
    );
    const bob = (await f.admin.getUser({ username: "bob" }, root)).user!;
    assert.deepEqual(bob.groups, ["editors"]);
    assert.deepEqual(bob.directPermissions, ["shop.change_product", "shop.view_order"]);
    const change = bob.effectivePermissions.find((p) => p.permission === "shop.change_product");
    assert.deepEqual(change?.sources, ["direct", "group:editors"]);

    await f.admin.revokePermissions(
      { target: { target: { case: "username", value: "bob" } }, permissions: ["shop.change_product"] },
      root,
    );
    const after = (await f.admin.getUser({ username: "bob" }, root)).user!;
    assert.deepEqual(after.directPermissions, ["shop.view_order"]);

    const groups = await f.admin.listGroups({}, root);
    assert.deepEqual(
      groups.groups.map((g) => [g.name, g.memberCount]),
      [["editors", 1]],
    );
    const perms = await f.admin.listPermissions({}, root);
    const byName = new Map(perms.permissions.map((p) => [p.permission, p]));
    // The migration's permissions exist before anyone grants them.
    for (const name of ["protoguard.view_user", "protoguard.delete_group", "protoguard.view_auditevent"]) {
      assert.ok(byName.has(name), name);
    }
    assert.equal(byName.get("shop.change_product")?.groupCount, 1);

    const who = await f.admin.whoCan({ procedure: "protoguard.v1.AdminService/GetUser" }, root);
    assert.ok(who.users.includes("root") && who.users.includes("viewer"), who.users.join(","));
    assert.ok(!who.users.includes("plain"));

    await f.admin.setGroupMembers({ group: "editors", remove: ["bob"] }, root);
    await f.admin.deleteGroup({ name: "editors" }, root);
    await expectError(f.admin.getGroup({ name: "editors" }, root), Code.NotFound, "GROUP_NOT_FOUND");

    const audit = await f.admin.listAuditEvents({ types: ["group.", "permission."] }, root);
    assert.deepEqual(audit.events.map((e) => e.type).reverse(), [
      "group.created",
      "permission.granted",
      "group.members_added",
      "permission.granted",
      "permission.revoked",
      "group.members_removed",
      "group.deleted",
    ]);
    assert.ok(audit.events.every((e) => e.actor === `user:${f.ids.root}`));
  });

  it("creates service accounts whose secret is shown once and works, rotates and deactivates them", async () => {
    const root = await as(f.ids.root);
    const created = await f.admin.createServiceAccount({ name: "billing", permissions: ["shop.view_order"] }, root);
    assert.equal(created.serviceAccount?.name, "billing");
    assert.deepEqual(created.serviceAccount?.permissions, ["shop.view_order"]);
    assert.ok(created.clientSecret.length >= 40);
    const token = await f.auth.serviceToken({
      clientId: created.serviceAccount!.clientId,
      clientSecret: created.clientSecret,
    });
    assert.ok(token.accessToken.length > 0);
    const listed = await f.admin.listServiceAccounts({}, root);
    assert.ok(
      !JSON.stringify(listed.serviceAccounts.map((a) => toJson(ServiceAccountInfoSchema, a))).includes(
        created.clientSecret,
      ),
    );

    const rotated = await f.admin.rotateServiceSecret({ name: "billing", grace: "1h" }, root);
    assert.notEqual(rotated.clientSecret, created.clientSecret);
    assert.ok(rotated.serviceAccount?.previousSecretExpiresAt !== undefined);
    const off = await f.admin.setServiceAccountActive({ name: "billing", active: false }, root);
    assert.equal(off.serviceAccount?.isActive, false);
    await expectError(
      f.auth.serviceToken({ clientId: created.serviceAccount!.clientId, clientSecret: rotated.clientSecret }),
      Code.Unauthenticated,
      "INVALID_CREDENTIALS",
    );
    await f.admin.grantPermissions(
      { target: { target: { case: "serviceAccount", value: "billing" } }, permissions: ["shop.refund_order"] },
      root,
    );
    await expectError(
      f.admin.grantPermissions(
        { target: { target: { case: "username", value: "billing" } }, permissions: ["shop.refund_order"] },
        root,
      ),
      Code.InvalidArgument,
      "INVALID_INPUT",
    );
    await expectError(f.admin.rotateServiceSecret({ name: "nobody" }, root), Code.NotFound, "SERVICE_NOT_FOUND");
    const types = (await f.admin.listAuditEvents({ types: ["service."] }, root)).events.map((e) => e.type);
    assert.deepEqual(types.reverse(), ["service.created", "service.secret_rotated", "service.deactivated"]);
  });

  it("revokes a user's session on every instance", async () => {
    const root = await as(f.ids.root);
    await f.admin.createUser({ username: "carol", password: "carol-password" }, root);
    const login = await f.auth.login({ username: "carol", password: "carol-password" });
    const [session] = (await f.admin.listUserSessions({ username: "carol" }, root)).sessions;
    assert.ok(session !== undefined);
    await f.admin.revokeUserSession({ sessionId: session.id }, root);
    await eventually(
      () => expectError(f.auth.whoAmI({}, bearer(login.accessToken)), Code.Unauthenticated, "TOKEN_REVOKED"),
      5000,
    );
    await expectError(
      f.admin.revokeUserSession({ sessionId: "no-such-session" }, root),
      Code.NotFound,
      "SESSION_NOT_FOUND",
    );
    const [event] = (await f.admin.listAuditEvents({ types: ["session.revoked"] }, root)).events;
    assert.equal(event?.subject, `session:${session.id}`);
    assert.equal(JSON.parse(event!.detailJson).username, "carol");
  });

  it("shows the server's policy, who may call a method, and the signing keys without material", async () => {
    const root = await as(f.ids.root);
    const { entries } = await f.admin.getPolicy({}, root);
    const getUser = entries.find((e) => e.procedure === "/protoguard.v1.AdminService/GetUser");
    assert.equal(getUser?.rule, "permissions: protoguard.view_user; api_keys: false");
    assert.equal(getUser?.source, "method");
    assert.equal(getUser?.acceptsApiKeys, false);
    const login = entries.find((e) => e.procedure === "/protoguard.v1.AuthService/Login");
    assert.equal(login?.rule, "public");
    const { keys } = await f.admin.listSigningKeys({}, root);
    assert.equal(keys.length, 1);
    assert.equal(keys[0]?.algorithm, "HS256");
    assert.equal(keys[0]?.status, "signing");
    assert.deepEqual(Object.keys(toJson(SigningKeySchema, keys[0]!) as object).sort(), ["algorithm", "kid", "status"]);
    await expectError(f.admin.whoCan({ procedure: "/nope.v1.X/Y" }, root), Code.NotFound, "METHOD_NOT_FOUND");
  });

  it("admits a staff user with only protoguard.view_user to the user reads and nothing else", async () => {
    const viewer = await as(f.ids.viewer);
    const listed = await f.admin.listUsers({}, viewer);
    assert.ok(listed.users.some((u) => u.username === "viewer"));
    const me = await f.admin.getUser({ username: "viewer" }, viewer);
    assert.deepEqual(
      me.user?.effectivePermissions.map((p) => [p.permission, p.sources]),
      [["protoguard.view_user", ["direct"]]],
    );
    const denied = [
      f.admin.createUser({ username: "mallory", password: "mallory-password" }, viewer),
      f.admin.updateUser({ username: "plain", isStaff: true }, viewer),
      f.admin.listGroups({}, viewer),
      f.admin.listAuditEvents({}, viewer),
      f.admin.getPolicy({}, viewer),
    ];
    for (const call of denied) assert.equal((await failure(call)).code, Code.PermissionDenied);
  });

  it("refuses a plain user and an anonymous caller every method, streams included", async () => {
    const plain = await as(f.ids.plain);
    for (const method of AdminService.methods) {
      const call = (client: Client<typeof AdminService>, options?: CallOptions) => {
        const fn = client[method.localName as keyof typeof client] as (req: object, o?: object) => unknown;
        const result = fn({}, options);
        if (method.methodKind === "server_streaming") {
          return (async () => {
            for await (const _ of result as AsyncIterable<unknown>) break;
          })();
        }
        return result as Promise<unknown>;
      };
      assert.equal((await failure(call(f.admin, plain))).code, Code.PermissionDenied, method.name);
      assert.equal((await failure(call(f.admin))).code, Code.Unauthenticated, method.name);
    }
  });

  it("keeps holders of change permissions from raising privileges", async () => {
    const changer = await as(f.ids.changer);
    const grouper = await as(f.ids.grouper);
    await expectError(
      f.admin.createUser({ username: "eve", password: "eve-password", isSuperuser: true }, changer),
      Code.PermissionDenied,
      "NOT_SUPERUSER",
    );
    await expectError(
      f.admin.updateUser({ username: "root", isActive: false }, changer),
      Code.PermissionDenied,
      "NOT_SUPERUSER",
    );
    await expectError(
      f.admin.updateUser({ username: "plain", isSuperuser: true }, changer),
      Code.PermissionDenied,
      "NOT_SUPERUSER",
    );
    // change_user lets one grant users what one holds, nothing more.
    await f.admin.grantPermissions(
      { target: { target: { case: "username", value: "plain" } }, permissions: ["shop.view_order"] },
      changer,
    );
    await expectError(
      f.admin.grantPermissions(
        { target: { target: { case: "username", value: "changer" } }, permissions: ["protoguard.delete_user"] },
        changer,
      ),
      Code.PermissionDenied,
      "PERMISSION_NOT_HELD",
    );
    // The condition on GrantPermissions: change_user covers users, not groups; change_group the reverse.
    const root = await as(f.ids.root);
    await f.admin.createGroup({ name: "staffers" }, root);
    const toGroup = {
      target: { target: { case: "group" as const, value: "staffers" } },
      permissions: ["shop.view_order"],
    };
    await expectError(f.admin.grantPermissions(toGroup, changer), Code.PermissionDenied, "CONDITION_FAILED");
    await expectError(f.admin.grantPermissions(toGroup, grouper), Code.PermissionDenied, "PERMISSION_NOT_HELD");
    await expectError(
      f.admin.grantPermissions(
        { target: { target: { case: "username", value: "plain" } }, permissions: ["shop.view_order"] },
        grouper,
      ),
      Code.PermissionDenied,
      "CONDITION_FAILED",
    );
    // A group granting more than the caller holds cannot be joined through SetGroupMembers.
    await f.admin.grantPermissions({ ...toGroup, permissions: ["protoguard.delete_user"] }, root);
    await expectError(
      f.admin.setGroupMembers({ group: "staffers", add: ["grouper"] }, grouper),
      Code.PermissionDenied,
      "PERMISSION_NOT_HELD",
    );
  });

  it("answers the CLI's refusals as Connect codes", async () => {
    const root = await as(f.ids.root);
    await expectError(f.admin.getUser({ username: "ghost" }, root), Code.NotFound, "USER_NOT_FOUND");
    await expectError(f.admin.getGroup({ name: "ghosts" }, root), Code.NotFound, "GROUP_NOT_FOUND");
    await expectError(
      f.admin.setGroupMembers({ group: "ghosts", add: ["root"] }, root),
      Code.NotFound,
      "GROUP_NOT_FOUND",
    );
    const duplicate = await expectError(
      f.admin.createUser({ username: "plain", password: "whatever-password" }, root),
      Code.AlreadyExists,
      "DUPLICATE_USERNAME",
    );
    assert.equal(duplicate.rawMessage, 'user "plain" already exists');
    await f.admin.createGroup({ name: "twice" }, root);
    await expectError(f.admin.createGroup({ name: "twice" }, root), Code.AlreadyExists, "DUPLICATE_GROUP");
    await expectError(
      f.admin.grantPermissions(
        { target: { target: { case: "username", value: "plain" } }, permissions: ["not-a-permission"] },
        root,
      ),
      Code.InvalidArgument,
      "INVALID_PERMISSION",
    );
    await expectError(
      f.admin.grantPermissions({ permissions: ["shop.view_order"] }, root),
      Code.InvalidArgument,
      "INVALID_INPUT",
    );
    await expectError(
      f.admin.createUser({ username: "bad name", password: "pw-pw-pw-pw" }, root),
      Code.InvalidArgument,
      "INVALID_INPUT",
    );
    await expectError(
      f.admin.createUser({ username: "nopw", password: "" }, root),
      Code.InvalidArgument,
      "INVALID_INPUT",
    );
    await expectError(f.admin.listUsers({ pageToken: "garbage" }, root), Code.InvalidArgument, "INVALID_INPUT");
    await expectError(f.admin.listAuditEvents({ types: ["nope"] }, root), Code.InvalidArgument, "INVALID_INPUT");
    await expectError(
      f.admin.rotateServiceSecret({ name: "x", grace: "forever" }, root),
      Code.InvalidArgument,
      "INVALID_INPUT",
    );
  });

  it("administers API keys, and refuses every call made with one", async () => {
    const root = await as(f.ids.root);
    const created = await f.admin.createUserApiKey(
      { owner: "viewer", name: "reporting", scopes: ["protoguard.view_user"], expiresIn: "1d" },
      root,
    );
    assert.match(created.key, /^pgk_/);
    assert.equal(created.apiKey?.owner, "viewer");
    const listed = await f.admin.listUserApiKeys({ owner: "viewer" }, root);
    assert.deepEqual(
      listed.apiKeys.map((k) => k.id),
      [created.apiKey!.id],
    );
    // The key's owner may call ListUsers with a token, never with the key: AdminService says api_keys: false.
    const refused = await failure(f.admin.listUsers({}, bearer(created.key)));
    assert.ok([Code.Unauthenticated, Code.PermissionDenied].includes(refused.code), Code[refused.code]);
    assert.equal(authErrorReason(refused), "API_KEY_NOT_ALLOWED");
    // A scope the owner lacks is refused before anything is written.
    await expectError(
      f.admin.createUserApiKey({ owner: "viewer", scopes: ["protoguard.delete_user"] }, root),
      Code.FailedPrecondition,
      "SCOPE_NOT_HELD",
    );
    await f.admin.revokeUserApiKey({ id: created.apiKey!.id }, root);
    assert.deepEqual((await f.admin.listUserApiKeys({ owner: "viewer" }, root)).apiKeys, []);
    await expectError(f.admin.revokeUserApiKey({ id: "aaaaaaaaaaaa" }, root), Code.NotFound, "API_KEY_NOT_FOUND");
    const types = (await f.admin.listAuditEvents({ types: ["apikey."] }, root)).events.map((e) => e.type);
    assert.deepEqual(types.reverse(), ["apikey.created", "apikey.revoked"]);
  });

  it("streams an audit event written by another instance", async () => {
    const root = await as(f.ids.root);
    const controller = new AbortController();
    const stream = f.admin.followAuditEvents({ types: ["group.created"] }, { ...root, signal: controller.signal });
    const iterator = stream[Symbol.asyncIterator]();
    const next = iterator.next();
    // The follower starts after the newest row: give it a moment to read where that is.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const other = await f.another();
    try {
      await other.admin.createGroup({ name: "from-elsewhere" }, root);
      const first = await Promise.race([
        next,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error("no event within 10 s")), 10_000)),
      ]);
      assert.equal(first.done, false);
      assert.equal(first.value?.event?.type, "group.created");
      assert.equal(first.value?.event?.subject, "group:from-elsewhere");
      // A row written by anything else on the database arrives too (the CLI, another service).
      await recordAuditEvent(f.database.db, {
        type: "group.created",
        subject: "group:by-the-cli",
        context: { actor: { kind: "cli", osUser: "ops" } },
      });
      const second = await iterator.next();
      assert.equal(second.value?.event?.subject, "group:by-the-cli");
      assert.equal(second.value?.event?.actor, "cli:ops");
    } finally {
      controller.abort();
      await other.close();
    }
  });
}

describe("AdminService on PGlite", { timeout: SUITE_TIMEOUT }, () => adminSuite("pglite"));

describeOr(skipWithoutPostgres, "AdminService on PostgreSQL", { timeout: SUITE_TIMEOUT }, () => adminSuite("postgres"));
