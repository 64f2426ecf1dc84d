/**
 * The AdminService (`protoguard.v1.AdminService`): what the CLI does to users, groups, grants,
 * service accounts and sessions, and what it shows of them, the audit log and the policy, over
 * Connect. Its rules are declared in proto/protoguard/v1/admin.proto and enforced by the auth
 * layer like any service's; every write is one transaction that also appends its audit row,
 * with the caller as actor.
 */
import { Buffer } from "node:buffer";
import { create } from "@bufbuild/protobuf";
import { Code, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { type AdminService, type GrantTarget, WhoCanResponseSchema } from "../../gen/protoguard/v1/admin_pb.js";
import type { AuditEventType } from "../audit-event.js";
import { mintApiKey, parseApiKeyLifetime } from "../lifecycle/api-keys.js";
import { generateClientCredentials, generateClientSecret } from "../lifecycle/service-token.js";
import { createPasswordHasher, MAX_PASSWORD_BYTES, type PasswordHasher } from "../lifecycle/passwords.js";
import { listApiKeys, revokeApiKey } from "../store/api-keys.js";
import { recordAuditEvent } from "../store/audit.js";
import type { Database, DrizzleDb } from "../store/database-handle.js";
import {
  DEFAULT_USER_PAGE_SIZE,
  MAX_USER_PAGE_SIZE,
  deleteGroup,
  groupDetail,
  listGroups,
  listPermissions,
  listUsers,
  userDetail,
} from "../store/directory.js";
import { StoreError } from "../store/errors.js";
import { revokeUserSessions } from "../store/refresh-tokens.js";
import {
  canonicalTlsIdentity,
  createServiceAccount,
  listServiceAccounts,
  requireServiceId,
  rotateServiceSecret,
  serviceAccountRefused,
  setServiceActive,
} from "../store/service-accounts.js";
import { listSessionsOfUser, revokeSession } from "../store/sessions.js";
import { updateUserFlags } from "../store/user-flags.js";
import {
  addUsersToGroup,
  assertValidPermissions,
  assertValidUsername,
  createGroup,
  createUser,
  deleteUser,
  findUserByUsername,
  getUserById,
  grantGroupPermissions,
  grantUserPermissions,
  removeUsersFromGroup,
  revokeGroupPermissions,
  revokeUserPermissions,
  setPasswordHash,
  setUserActive,
  type PublicUser,
} from "../store/users.js";
import { whoCan } from "../store/who-can.js";
import type { Keyring } from "../token/keys.js";
import { auditPage, createFollowerGate, followAuditEvents } from "./audit-reads.js";
import { assertHoldsAll, assertMayManage, callerOf, type AdminCaller } from "./caller.js";
import {
  apiKeyMessage,
  groupDetailMessage,
  groupSummaryInit,
  serviceAccountMessage,
  sessionMessage,
  userDetailMessage,
  userSummaryMessage,
} from "./convert.js";
import { adminError, answer, invalidArgument, toConnectError } from "./errors.js";
import { findProcedure, policyTable, signingKeys, type ServedPolicy } from "./policy-table.js";

/** Options of {@link createAdminService}. */
export interface AdminServiceOptions {
  /** The user store it manages and reads, the audit log included. Required. */
  database: Database;
  /**
   * Hashes the passwords CreateUser and SetPassword set and the client secrets of service
   * accounts. Use the AuthService's (`Runtime.passwordHasher`), so both share one queue and
   * one set of parameters. Default: `createPasswordHasher()`.
   */
  passwordHasher?: PasswordHasher;
  /**
   * The server's keys, for ListSigningKeys (kid, algorithm, status only). Default: none, and
   * ListSigningKeys answers FAILED_PRECONDITION.
   */
  keyring?: Keyring;
  /**
   * The planned policy and services of the server serving it, for GetPolicy and WhoCan; a
   * function because the server plans its policy after it knows its routes, this service
   * among them. `startServer` passes its own. Default: none, and both answer
   * FAILED_PRECONDITION.
   */
  policy?: () => ServedPolicy;
  /**
   * How long a rotated-away client secret keeps working when RotateServiceSecret's request
   * names no `grace`, in seconds (at most 30 days). Default 0, as `protoguard service rotate`:
   * the old secret and the tokens issued with it stop at once.
   */
  rotationGraceSeconds?: number;
  /**
   * Pause between FollowAuditEvents' polls of the audit table when nothing new arrived, ms:
   * how late a follower sees a row another instance wrote. Default 1000.
   */
  auditFollowIntervalMs?: number;
  /**
   * FollowAuditEvents streams open at once on this service (each polls the database); one
   * more is refused with RESOURCE_EXHAUSTED. 0 means no bound. Default 100.
   */
  maxAuditFollowers?: number;
  /** Clock in milliseconds for session listings and revocations. Default: `Date.now`. */
  now?: () => number;
}

/** Defaults of {@link AdminServiceOptions}. */
export const ADMIN_SERVICE_DEFAULTS = Object.freeze({
  rotationGraceSeconds: 0,
  auditFollowIntervalMs: 1000,
  maxAuditFollowers: 100,
});

/** Longest rotation grace period: 30 days, as `protoguard service rotate --grace`. */
const MAX_GRACE_SECONDS = 30 * 86_400;

/** A handler's writes: each one's audit row goes into the same transaction. */
type Record = (type: AuditEventType, subject: string, detail?: Readonly<{ [key: string]: unknown }>) => Promise<void>;

/**
 * Creates the `protoguard.v1.AdminService` implementation. Register it behind the auth layer,
 * whose rules (in admin.proto) admit superusers and holders of the `protoguard.*` permission
 * each method names and refuse everyone else; `startServer` does so unless told
 * `adminService: false`.
 *
 * Refusals are the CLI's messages as Connect codes, with the store's code as the ErrorInfo
 * reason: NOT_FOUND (`USER_NOT_FOUND`, `GROUP_NOT_FOUND`, `SERVICE_NOT_FOUND`,
 * `SESSION_NOT_FOUND`), ALREADY_EXISTS (`DUPLICATE_USERNAME`, `DUPLICATE_GROUP`,
 * `DUPLICATE_IDENTITY`), INVALID_ARGUMENT (`INVALID_INPUT`, `INVALID_PERMISSION`), and
 * PERMISSION_DENIED for a non-superuser acting on a superuser (`NOT_SUPERUSER`) or handing out
 * permissions they do not hold (`PERMISSION_NOT_HELD`). A database failure is UNAVAILABLE.
 *
 * @example
 * ```ts
 * const routes = (router: ConnectRouter) =>
 *   router.service(AdminService, createAdminService({ database, passwordHasher, keyring }));
 * ```
 */
export function createAdminService(options: AdminServiceOptions): ServiceImpl<typeof AdminService> {
  const { database, keyring } = options;
  const db = database.db;
  const hasher = options.passwordHasher ?? createPasswordHasher();
  const now = options.now ?? Date.now;
  const defaultGrace = options.rotationGraceSeconds ?? ADMIN_SERVICE_DEFAULTS.rotationGraceSeconds;
  if (!Number.isSafeInteger(defaultGrace) || defaultGrace < 0 || defaultGrace > MAX_GRACE_SECONDS) {
    throw new RangeError(`rotationGraceSeconds must be an integer in 0..${MAX_GRACE_SECONDS}`);
  }
  const followIntervalMs = options.auditFollowIntervalMs ?? ADMIN_SERVICE_DEFAULTS.auditFollowIntervalMs;
  if (!(followIntervalMs >= 10)) throw new RangeError("auditFollowIntervalMs must be at least 10");
  const admitFollower = createFollowerGate(options.maxAuditFollowers ?? ADMIN_SERVICE_DEFAULTS.maxAuditFollowers);

  /** Runs `work` and its audit rows in one transaction: the change and its record commit together. */
  function write<T>(caller: AdminCaller, work: (tx: DrizzleDb, record: Record) => Promise<T>): Promise<T> {
    return db.transaction(async (tx) => {
      // Recorded once the work is done, so the audit chain's head lock is held only for the commit.
      const pending: Parameters<typeof recordAuditEvent>[1][] = [];
      const result = await work(tx, async (type, subject, detail) => {
        pending.push({ type, subject, ...(detail !== undefined && { detail }), context: caller.audit });
      });
      for (const event of pending) await recordAuditEvent(tx, event);
      return result;
    });
  }

  /** The person `username` (never a service account), or the CLI's refusal. */
  async function requirePerson(tx: DrizzleDb, username: string): Promise<PublicUser> {
    const user = await findUserByUsername(tx, username);
    if (user === undefined) throw new StoreError("USER_NOT_FOUND", `no user "${username}"`);
    if (user.kind === "service") throw serviceAccountRefused(username);
    return user;
  }

  function served(): ServedPolicy {
    if (options.policy === undefined) {
      throw adminError(
        "this AdminService was not given the server's policy (createAdminService's `policy`)",
        Code.FailedPrecondition,
        "NO_POLICY",
      );
    }
    return options.policy();
  }

  return {
    listUsers: (req) =>
      answer(async () => {
        if (req.pageSize < 0) throw invalidArgument("page_size must not be negative");
        const limit = Math.min(req.pageSize === 0 ? DEFAULT_USER_PAGE_SIZE : req.pageSize, MAX_USER_PAGE_SIZE);
        const page = await listUsers(db, {
          limit,
          ...(req.search !== "" && { search: req.search }),
          ...(req.pageToken !== "" && { after: decodeUserToken(req.pageToken) }),
          includeServices: req.includeServices,
        });
        return {
          users: page.users.map(userSummaryMessage),
          nextPageToken: page.next === undefined ? "" : encodeUserToken(page.next),
        };
      }),

    getUser: (req) => answer(async () => ({ user: userDetailMessage(await userDetail(db, req.username)) })),

    createUser: (req, ctx) =>
      answer(async () => {
        const caller = callerOf(ctx);
        assertMayManage(caller.principal, "create a superuser", req.isSuperuser);
        const username = assertValidUsername(req.username);
        checkPassword(req.password);
        // Hashed before the transaction: no lock is held while scrypt runs.
        const passwordHash = await hasher.hash(req.password);
        const detail = await write(caller, async (tx, record) => {
          await createUser(tx, {
            username,
            email: req.email,
            passwordHash,
            // As `protoguard user create --superuser` and Django's createsuperuser.
            isStaff: req.isStaff || req.isSuperuser,
            isSuperuser: req.isSuperuser,
          });
          await record("user.created", `user:${username}`, {
            username,
            isStaff: req.isStaff || req.isSuperuser,
            isSuperuser: req.isSuperuser,
          });
          return userDetail(tx, username);
        });
        return { user: userDetailMessage(detail) };
      }),

    updateUser: (req, ctx) =>
      answer(async () => {
        const caller = callerOf(ctx);
        const detail = await write(caller, async (tx, record) => {
          const user = await requirePerson(tx, req.username);
          const subject = `user:${user.username}`;
          assertMayManage(caller.principal, "change a superuser", user.isSuperuser);
          assertMayManage(caller.principal, "make a superuser", req.isSuperuser === true);
          if (req.isActive !== undefined && req.isActive !== user.isActive) {
            const changed = await setUserActive(tx, user.username, req.isActive);
            // As `protoguard user deactivate`: every session ends, on every instance.
            if (!req.isActive) await revokeUserSessions(tx, changed.id, changed.credentialsChangedAt);
            await record(req.isActive ? "user.activated" : "user.deactivated", subject, { username: user.username });
          }
          const flags = {
            ...(req.isStaff !== undefined && { isStaff: req.isStaff }),
            ...(req.isSuperuser !== undefined && { isSuperuser: req.isSuperuser }),
            ...(req.email !== undefined && { email: req.email }),
          };
          if (Object.keys(flags).length > 0) {
            await updateUserFlags(tx, user.username, flags);
            await record("user.updated", subject, {
              username: user.username,
              ...(req.isStaff !== undefined && { isStaff: req.isStaff }),
              ...(req.isSuperuser !== undefined && { isSuperuser: req.isSuperuser }),
              ...(req.email !== undefined && { email_changed: true }),
            });
          }
          return userDetail(tx, user.username);
        });
        return { user: userDetailMessage(detail) };
      }),

    setPassword: (req, ctx) =>
      answer(async () => {
        const caller = callerOf(ctx);
        const user = await requirePerson(db, req.username);
        assertMayManage(caller.principal, "set a superuser's password", user.isSuperuser);
        checkPassword(req.password);
        const hash = await hasher.hash(req.password);
        await write(caller, async (tx, record) => {
          const changed = await setPasswordHash(tx, user.id, hash);
          await revokeUserSessions(tx, user.id, changed.credentialsChangedAt);
          await record("password.changed", `user:${user.username}`, { username: user.username, byAdmin: true });
        });
        return {};
      }),

    deleteUser: (req, ctx) =>
      answer(async () => {
        const caller = callerOf(ctx);
        await write(caller, async (tx, record) => {
          const user = await requirePerson(tx, req.username);
          assertMayManage(caller.principal, "delete a superuser", user.isSuperuser);
          await deleteUser(tx, user.username);
          await record("user.deleted", `user:${user.username}`, { username: user.username, id: user.id });
        });
        return {};
      }),

    listGroups: () => answer(async () => ({ groups: (await listGroups(db)).map(groupSummaryInit) })),

    getGroup: (req) => answer(async () => ({ group: groupDetailMessage(await groupDetail(db, req.name)) })),

    createGroup: (req, ctx) =>
      answer(async () => {
        const detail = await write(callerOf(ctx), async (tx, record) => {
          await createGroup(tx, req.name);
          await record("group.created", `group:${req.name}`, { name: req.name });
          return groupDetail(tx, req.name);
        });
        return { group: groupDetailMessage(detail) };
      }),

    deleteGroup: (req, ctx) =>
      answer(async () => {
        await write(callerOf(ctx), async (tx, record) => {
          await deleteGroup(tx, req.name);
          await record("group.deleted", `group:${req.name}`, { name: req.name });
        });
        return {};
      }),

    setGroupMembers: (req, ctx) =>
      answer(async () => {
        const caller = callerOf(ctx);
        const both = req.add.filter((name) => req.remove.includes(name));
        if (both.length > 0) throw invalidArgument(`both added and removed: ${both.map((n) => `"${n}"`).join(", ")}`);
        const detail = await write(caller, async (tx, record) => {
          const before = await groupDetail(tx, req.group);
          const subject = `group:${req.group}`;
          if (req.add.length > 0) {
            // Adding someone (oneself included) to a group hands them its permissions.
            assertHoldsAll(caller.principal, before.group.permissions, "add members to a group granting");
            await addUsersToGroup(tx, req.group, req.add);
            await record("group.members_added", subject, { group: req.group, usernames: [...req.add] });
          }
          if (req.remove.length > 0) {
            const removed = await removeUsersFromGroup(tx, req.group, req.remove);
            await record("group.members_removed", subject, { group: req.group, usernames: [...req.remove], removed });
          }
          return groupDetail(tx, req.group);
        });
        return { group: groupDetailMessage(detail) };
      }),

    grantPermissions: (req, ctx) =>
      answer(async () => {
        const caller = callerOf(ctx);
        const target = grantTarget(req.target);
        const perms = requirePermissions(req.permissions);
        assertHoldsAll(caller.principal, perms, "grant");
        await write(caller, async (tx, record) => {
          if (target.kind === "group") await grantGroupPermissions(tx, target.name, perms);
          else {
            await requireHolder(tx, target);
            await grantUserPermissions(tx, target.name, perms);
          }
          await record("permission.granted", `${target.kind}:${target.name}`, { permissions: perms });
        });
        return {};
      }),

    revokePermissions: (req, ctx) =>
      answer(async () => {
        const target = grantTarget(req.target);
        const perms = requirePermissions(req.permissions);
        await write(callerOf(ctx), async (tx, record) => {
          let removed: number;
          if (target.kind === "group") removed = await revokeGroupPermissions(tx, target.name, perms);
          else {
            await requireHolder(tx, target);
            removed = await revokeUserPermissions(tx, target.name, perms);
          }
          await record("permission.revoked", `${target.kind}:${target.name}`, { permissions: perms, removed });
        });
        return {};
      }),

    listPermissions: () =>
      answer(async () => ({
        permissions: (await listPermissions(db)).map((p) => ({
          permission: p.permission,
          userCount: p.userCount,
          groupCount: p.groupCount,
        })),
      })),

    listServiceAccounts: () =>
      answer(async () => ({ serviceAccounts: (await listServiceAccounts(db)).map(serviceAccountMessage) })),

    createServiceAccount: (req, ctx) =>
      answer(async () => {
        const caller = callerOf(ctx);
        const name = assertValidUsername(req.name);
        const tlsIdentity = req.tlsIdentity === "" ? undefined : canonicalTlsIdentity(req.tlsIdentity);
        assertValidPermissions(req.permissions);
        assertHoldsAll(caller.principal, req.permissions, "grant");
        const credentials = generateClientCredentials();
        const secretHash = await hasher.hash(credentials.clientSecret);
        const account = await write(caller, async (tx, record) => {
          const created = await createServiceAccount(tx, {
            name,
            clientId: credentials.clientId,
            secretHash,
            ...(tlsIdentity !== undefined && { tlsIdentity }),
          });
          if (req.permissions.length > 0) await grantUserPermissions(tx, name, req.permissions);
          await record("service.created", `service:${name}`, {
            name,
            clientId: created.clientId,
            permissions: [...req.permissions],
            ...(tlsIdentity !== undefined && { tlsIdentity }),
          });
          return (await listServiceAccounts(tx, [created.id]))[0]!;
        });
        return { serviceAccount: serviceAccountMessage(account), clientSecret: credentials.clientSecret };
      }),

    rotateServiceSecret: (req, ctx) =>
      answer(async () => {
        const grace = req.grace === "" ? defaultGrace : parseGrace(req.grace);
        const clientSecret = generateClientSecret();
        const hash = await hasher.hash(clientSecret);
        const account = await write(callerOf(ctx), async (tx, record) => {
          const rotated = await rotateServiceSecret(tx, req.name, hash, grace);
          await record("service.secret_rotated", `service:${rotated.name}`, {
            name: rotated.name,
            graceSeconds: grace,
          });
          return rotated;
        });
        return { serviceAccount: serviceAccountMessage(account), clientSecret };
      }),

    setServiceAccountActive: (req, ctx) =>
      answer(async () => {
        const account = await write(callerOf(ctx), async (tx, record) => {
          const id = await requireServiceId(tx, req.name);
          await setServiceActive(tx, req.name, req.active, new Date(now()));
          const [info] = await listServiceAccounts(tx, [id]);
          await record(req.active ? "service.activated" : "service.deactivated", `service:${info!.name}`, {
            name: info!.name,
          });
          return info!;
        });
        return { serviceAccount: serviceAccountMessage(account) };
      }),

    listUserSessions: (req) =>
      answer(async () => ({
        sessions: (await listSessionsOfUser(db, req.username, new Date(now()))).map(sessionMessage),
      })),

    revokeUserSession: (req, ctx) =>
      answer(async () => {
        await write(callerOf(ctx), async (tx, record) => {
          const ownerId = await revokeSession(tx, req.sessionId, new Date(now()));
          const owner = await getUserById(tx, ownerId);
          await record("session.revoked", `session:${req.sessionId}`, {
            familyId: req.sessionId,
            userId: ownerId,
            ...(owner !== undefined && { username: owner.username }),
          });
        });
        return {};
      }),

    listUserApiKeys: (req) =>
      answer(async () => {
        const owner = await requireOwner(db, req.owner);
        const keys = await listApiKeys(db, owner.id);
        return { apiKeys: keys.filter((key) => key.revokedAt === null).map(apiKeyMessage) };
      }),

    createUserApiKey: (req, ctx) =>
      answer(async () => {
        const caller = callerOf(ctx);
        const owner = await requireOwner(db, req.owner);
        // A key acts as its owner: minting one for a superuser is taking the account over.
        assertMayManage(caller.principal, "create an API key for a superuser", owner.isSuperuser);
        assertHoldsAll(caller.principal, req.scopes, "hand out a key with");
        const lifetimeSeconds = req.expiresIn === "" ? undefined : parseApiKeyLifetime(req.expiresIn);
        const minted = await write(caller, async (tx, record) => {
          const made = await mintApiKey(
            { ...database, db: tx },
            { owner: owner.id, scopes: req.scopes, name: req.name, lifetimeSeconds, now },
          );
          await record("apikey.created", `apikey:${made.info.id}`, {
            id: made.info.id,
            owner: made.info.owner,
            username: made.info.owner,
            scopes: [...made.info.scopes],
            name: made.info.name,
            ...(made.info.expiresAt !== null && { expiresAt: made.info.expiresAt.toISOString() }),
          });
          return made;
        });
        return { key: minted.key, apiKey: apiKeyMessage(minted.info) };
      }),

    revokeUserApiKey: (req, ctx) =>
      answer(async () => {
        await write(callerOf(ctx), async (tx, record) => {
          const outcome = await revokeApiKey(tx, req.id, new Date(now()));
          if (outcome.status === "not_found") {
            throw adminError(`no API key with id "${req.id}"`, Code.NotFound, "API_KEY_NOT_FOUND");
          }
          if (outcome.status === "revoked") {
            await record("apikey.revoked", `apikey:${req.id}`, {
              id: req.id,
              owner: outcome.key.owner,
              username: outcome.key.owner,
            });
          }
        });
        return {};
      }),

    listAuditEvents: (req) => answer(() => auditPage(db, req)),

    followAuditEvents: async function* (req, ctx: HandlerContext) {
      const release = admitFollower();
      try {
        for await (const event of followAuditEvents(req, { db, intervalMs: followIntervalMs, signal: ctx.signal })) {
          yield { event };
        }
      } catch (error) {
        // A stream ended by the client or the server is no failure to report.
        if (ctx.signal.aborted) return;
        throw toConnectError(error);
      } finally {
        release();
      }
    },

    getPolicy: () => answer(async () => ({ entries: policyTable(served()) })),

    whoCan: (req) =>
      answer(async () => {
        const { policy, services } = served();
        const method = findProcedure(services, req.procedure);
        if (method === undefined) {
          throw adminError(`this server serves no method "${req.procedure}"`, Code.NotFound, "METHOD_NOT_FOUND");
        }
        const result = await whoCan(db, policy.planFor(method).rule);
        return create(WhoCanResponseSchema, {
          procedure: `/${method.parent.typeName}/${method.name}`,
          rule: result.rule,
          public: result.public,
          users: [...result.users],
          groups: [...result.groups],
          serviceAccounts: [...result.serviceAccounts],
          conditions: [...result.conditions],
          memberRequirements: [...result.memberRequirements],
        });
      }),

    listSigningKeys: () => {
      if (keyring === undefined) {
        throw adminError(
          "this AdminService was not given the server's keys (createAdminService's `keyring`)",
          Code.FailedPrecondition,
          "NO_KEYRING",
        );
      }
      return { keys: signingKeys(keyring) };
    },
  };
}

/** What a grant or revocation is for. */
interface Holder {
  readonly kind: "user" | "group" | "service";
  readonly name: string;
}

function grantTarget(target: GrantTarget | undefined): Holder {
  const chosen = target?.target;
  switch (chosen?.case) {
    case "username":
      return { kind: "user", name: chosen.value };
    case "group":
      return { kind: "group", name: chosen.value };
    case "serviceAccount":
      return { kind: "service", name: chosen.value };
    default:
      throw invalidArgument("target must name a username, a group or a service_account");
  }
}

/** The person or service account a user-kind grant names; a person's name for a service is refused. */
async function requireHolder(tx: DrizzleDb, holder: Holder): Promise<void> {
  if (holder.kind === "service") {
    await requireServiceId(tx, holder.name);
    return;
  }
  const user = await findUserByUsername(tx, holder.name);
  if (user === undefined) throw new StoreError("USER_NOT_FOUND", `no user "${holder.name}"`);
  if (user.kind === "service") throw serviceAccountRefused(holder.name);
}

function requirePermissions(perms: readonly string[]): string[] {
  if (perms.length === 0) throw invalidArgument("no permissions given");
  assertValidPermissions(perms);
  return [...new Set(perms)];
}

/** The CLI's checks of a new password: not empty, at most {@link MAX_PASSWORD_BYTES} UTF-8 bytes. */
function checkPassword(password: string): void {
  if (password === "") throw invalidArgument("the password must not be empty");
  if (Buffer.byteLength(password, "utf8") > MAX_PASSWORD_BYTES) {
    throw invalidArgument(`the password is longer than ${MAX_PASSWORD_BYTES} bytes`);
  }
}

const GRACE_UNITS: Readonly<{ [unit: string]: number }> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** A grace period like "90s", "15m", "1h" or "7d", in seconds, at most 30 days. */
function parseGrace(text: string): number {
  const match = /^(\d{1,7})([smhd])$/.exec(text);
  const seconds = match === null ? Number.NaN : Number(match[1]) * GRACE_UNITS[match[2]!]!;
  if (!(seconds <= MAX_GRACE_SECONDS)) {
    throw invalidArgument(`invalid grace ${JSON.stringify(text)}: a duration like "1h", at most 30 days`);
  }
  return seconds;
}

/** ListUsers' page token: the last username of the previous page, opaque to clients. */
function encodeUserToken(after: string): string {
  return Buffer.from(`user:${after}`, "utf8").toString("base64url");
}

function decodeUserToken(token: string): string {
  const text = Buffer.from(token, "base64url").toString("utf8");
  if (!text.startsWith("user:") || text.length === 5) {
    throw invalidArgument("invalid page_token: pass the next_page_token of the previous page");
  }
  return text.slice(5);
}

/** The person or service account owning (or to own) API keys. */
async function requireOwner(db: DrizzleDb, name: string): Promise<PublicUser> {
  const user = await findUserByUsername(db, name);
  if (user === undefined) throw new StoreError("USER_NOT_FOUND", `no user or service account "${name}"`);
  return user;
}
