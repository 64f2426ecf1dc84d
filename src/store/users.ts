/**
 * Administrative writes over users, groups and permissions, used by the CLI
 * and by tests. Each operation that touches more than one row runs in one
 * transaction and validates everything before writing, so a bad argument
 * anywhere leaves the database as it was.
 */
import { and, eq, inArray, or } from "drizzle-orm";
import { isPermissionString, parsePermission } from "../permission.js";
import { isUserId } from "../user-id.js";
import type { DrizzleDb } from "./database-handle.js";
import { StoreError, isUniqueViolation } from "./errors.js";
import {
  groupPermissions,
  groups,
  permissions,
  userGroups,
  userPermissions,
  users,
  type Group,
  type User,
} from "./schema.js";

/**
 * A user as handed out to code that manages accounts rather than checks credentials: the row
 * without the password hash and the TOTP secret, so logging or serializing it leaks neither.
 */
export type PublicUser = Omit<User, "password" | "totpSecret">;

/** `user` without its credentials, as a new object: the secrets are gone, not merely untyped. */
export function withoutSecrets(user: User): PublicUser {
  const { password: _password, totpSecret: _otpSecret, ...rest } = user;
  return rest;
}

/** Django's username alphabet: Unicode word characters plus `.@+-`. */
const USERNAME_PATTERN = /^[\p{L}\p{N}_.@+-]+$/u;
const MAX_USERNAME_LENGTH = 150;
const MAX_EMAIL_LENGTH = 254;
const MAX_GROUP_NAME_LENGTH = 150;

/** Fields accepted by {@link createUser}. */
export interface CreateUserInput {
  /** 1–150 characters from `[\w.@+-]` (Unicode letters and digits allowed), NFKC-normalized. */
  username: string;
  /** Default `''`. At most 254 characters. */
  email?: string;
  /** A self-describing password hash; default `''` (password login impossible). */
  passwordHash?: string;
  /** Default false. */
  isStaff?: boolean;
  /** Default false. */
  isSuperuser?: boolean;
  /** Default true. */
  isActive?: boolean;
}

/**
 * A username in the form it is stored and looked up in: Unicode NFKC, as
 * Django's `AbstractBaseUser.normalize_username`, so compatibility variants
 * of one name (fullwidth `ｂｏｂ`, the ligature `ﬁ`) are one name. Every
 * operation that takes a username (create, login, grant, look-up) applies it
 * to what it was given.
 */
export function normalizeUsername(username: string): string {
  return username.normalize("NFKC");
}

/**
 * Checks a username, after {@link normalizeUsername}, the way Django's
 * `UnicodeUsernameValidator` does: 1–150 letters, digits and `. @ + - _`.
 *
 * @returns the normalized username, the form to store and look up.
 * @throws {StoreError} `INVALID_INPUT`.
 */
export function assertValidUsername(username: string): string {
  const normalized = normalizeUsername(username);
  const length = [...normalized].length;
  if (length < 1 || length > MAX_USERNAME_LENGTH || !USERNAME_PATTERN.test(normalized)) {
    throw new StoreError(
      "INVALID_INPUT",
      `invalid username ${JSON.stringify(username)}: use 1-150 letters, digits and . @ + - _`,
    );
  }
  return normalized;
}

function assertValidGroupName(name: string): void {
  const length = [...name].length;
  if (length < 1 || length > MAX_GROUP_NAME_LENGTH || name.trim() !== name) {
    throw new StoreError(
      "INVALID_INPUT",
      `invalid group name ${JSON.stringify(name)}: use 1-150 characters without surrounding spaces`,
    );
  }
}

/**
 * Refuses malformed permission strings, naming all of them.
 *
 * @throws {StoreError} `INVALID_PERMISSION`.
 */
export function assertValidPermissions(perms: readonly string[]): void {
  const bad = perms.filter((perm) => !isPermissionString(perm));
  if (bad.length > 0) {
    throw new StoreError(
      "INVALID_PERMISSION",
      `invalid permission ${bad.map((b) => JSON.stringify(b)).join(", ")}: expected app_label.codename`,
    );
  }
}

function assertValidUserId(userId: number): void {
  if (!isUserId(userId)) {
    throw new StoreError("INVALID_INPUT", `invalid user id ${String(userId)}: expected a positive integer`);
  }
}

/**
 * Creates a user.
 *
 * @returns the inserted row (with generated id and defaults).
 * @throws {StoreError} `INVALID_INPUT` for a bad username or email,
 *   `DUPLICATE_USERNAME` if the username is taken.
 */
export async function createUser(db: DrizzleDb, input: CreateUserInput): Promise<PublicUser> {
  const username = assertValidUsername(input.username);
  const email = input.email ?? "";
  if ([...email].length > MAX_EMAIL_LENGTH) {
    throw new StoreError("INVALID_INPUT", `invalid email: longer than ${MAX_EMAIL_LENGTH} characters`);
  }
  try {
    const [row] = await db
      .insert(users)
      .values({
        username,
        email,
        password: input.passwordHash ?? "",
        isStaff: input.isStaff ?? false,
        isSuperuser: input.isSuperuser ?? false,
        isActive: input.isActive ?? true,
      })
      .returning();
    return withoutSecrets(row!);
  } catch (error) {
    if (isUniqueViolation(error)) {
      throw new StoreError("DUPLICATE_USERNAME", `user "${input.username}" already exists`, { cause: error });
    }
    throw error;
  }
}

/** The user named `username`, or undefined. Exact, case-sensitive match. */
export async function findUserByUsername(db: DrizzleDb, username: string): Promise<PublicUser | undefined> {
  const row = await findCredentials(db, username);
  return row && withoutSecrets(row);
}

/**
 * The whole row, password hash and TOTP secret included: only for code that
 * checks credentials (Login). Not exported from the package.
 */
export async function findCredentials(db: DrizzleDb, username: string): Promise<User | undefined> {
  const [row] = await db
    .select()
    .from(users)
    .where(eq(users.username, normalizeUsername(username)))
    .limit(1);
  return row;
}

/** The user with primary key `userId`, or undefined (also for ids that cannot exist). */
export async function getUserById(db: DrizzleDb, userId: number): Promise<PublicUser | undefined> {
  if (!isUserId(userId)) return undefined;
  const [row] = await db.select().from(users).where(eq(users.id, userId)).limit(1);
  return row && withoutSecrets(row);
}

async function requireUserId(db: DrizzleDb, username: string): Promise<number> {
  const [row] = await db
    .select({ id: users.id })
    .from(users)
    .where(eq(users.username, normalizeUsername(username)))
    .limit(1);
  if (row === undefined) throw new StoreError("USER_NOT_FOUND", `no user "${username}"`);
  return row.id;
}

async function requireGroupId(db: DrizzleDb, name: string): Promise<number> {
  const [row] = await db.select({ id: groups.id }).from(groups).where(eq(groups.name, name)).limit(1);
  if (row === undefined) throw new StoreError("GROUP_NOT_FOUND", `no group "${name}"`);
  return row.id;
}

/**
 * Activates or deactivates a user. Deactivating also bumps
 * `credentials_changed_at`, so every token issued before stays dead even if
 * the account is reactivated later.
 *
 * @returns the updated row.
 * @throws {StoreError} `USER_NOT_FOUND`.
 */
export async function setUserActive(db: DrizzleDb, username: string, active: boolean): Promise<User> {
  const [row] = await db
    .update(users)
    .set(active ? { isActive: true } : { isActive: false, credentialsChangedAt: new Date() })
    .where(eq(users.username, normalizeUsername(username)))
    .returning();
  if (row === undefined) throw new StoreError("USER_NOT_FOUND", `no user "${username}"`);
  return row;
}

/**
 * Deletes a user; group memberships, direct grants, refresh tokens and
 * revocation rows go with it (ON DELETE CASCADE).
 *
 * @throws {StoreError} `USER_NOT_FOUND`.
 */
export async function deleteUser(db: DrizzleDb, username: string): Promise<void> {
  const deleted = await db
    .delete(users)
    .where(eq(users.username, normalizeUsername(username)))
    .returning({ id: users.id });
  if (deleted.length === 0) throw new StoreError("USER_NOT_FOUND", `no user "${username}"`);
}

/** Options of {@link setPasswordHash}. */
export interface SetPasswordHashOptions {
  /**
   * Bump `credentials_changed_at` so tokens issued before are revoked.
   * Default true; pass false for a transparent rehash on login (same
   * password, upgraded parameters), which must not log the user out.
   */
  bumpCredentials?: boolean;
}

/**
 * Stores a new password hash (`''` makes password login impossible).
 *
 * @throws {StoreError} `USER_NOT_FOUND`, `INVALID_INPUT` for an impossible id.
 */
export async function setPasswordHash(
  db: DrizzleDb,
  userId: number,
  hash: string,
  { bumpCredentials = true }: SetPasswordHashOptions = {},
): Promise<PublicUser> {
  assertValidUserId(userId);
  const [row] = await db
    .update(users)
    .set(
      bumpCredentials
        ? { password: hash, credentialsChangedAt: new Date(), passwordResetRequired: false }
        : { password: hash, passwordResetRequired: false },
    )
    .where(eq(users.id, userId))
    .returning();
  if (row === undefined) throw new StoreError("USER_NOT_FOUND", `no user with id ${userId}`);
  return withoutSecrets(row);
}

/** SQL condition matching the permission rows named by `perms` (already validated). */
function permissionsMatching(perms: readonly string[]) {
  return or(
    ...perms.map((perm) => {
      const { appLabel, codename } = parsePermission(perm);
      return and(eq(permissions.appLabel, appLabel), eq(permissions.codename, codename));
    }),
  );
}

/**
 * Makes sure a permission row exists for each `app_label.codename`, creating
 * the missing ones. Safe under concurrency (insert ... on conflict do
 * nothing).
 *
 * @returns the permission ids, in the order of `perms`.
 * @throws {StoreError} `INVALID_PERMISSION` (nothing is written).
 */
export async function ensurePermissions(db: DrizzleDb, perms: readonly string[]): Promise<number[]> {
  assertValidPermissions(perms);
  if (perms.length === 0) return [];
  const unique = [...new Set(perms)];
  return db.transaction(async (tx) => {
    await tx
      .insert(permissions)
      .values(unique.map((perm) => parsePermission(perm)))
      .onConflictDoNothing({ target: [permissions.appLabel, permissions.codename] });
    const rows = await tx
      .select({ id: permissions.id, appLabel: permissions.appLabel, codename: permissions.codename })
      .from(permissions)
      .where(permissionsMatching(unique));
    const ids = new Map(rows.map((r) => [`${r.appLabel}.${r.codename}`, r.id]));
    return perms.map((perm) => ids.get(perm)!);
  });
}

/**
 * Where the grants of one kind of holder live: direct user grants and group grants are the same
 * (holder id, permission id) pair table, so one grant and one revoke serve both.
 */
interface GrantTable {
  /** The holder's id for its name, or a StoreError naming the missing holder. */
  readonly requireHolderId: (db: DrizzleDb, name: string) => Promise<number>;
  readonly table: typeof userPermissions | typeof groupPermissions;
  readonly holderColumn: typeof userPermissions.userId | typeof groupPermissions.groupId;
  readonly permissionColumn: typeof userPermissions.permissionId | typeof groupPermissions.permissionId;
  readonly row: (
    holderId: number,
    permissionId: number,
  ) => typeof userPermissions.$inferInsert | typeof groupPermissions.$inferInsert;
}

const USER_GRANTS: GrantTable = {
  requireHolderId: requireUserId,
  table: userPermissions,
  holderColumn: userPermissions.userId,
  permissionColumn: userPermissions.permissionId,
  row: (userId, permissionId) => ({ userId, permissionId }),
};

const GROUP_GRANTS: GrantTable = {
  requireHolderId: requireGroupId,
  table: groupPermissions,
  holderColumn: groupPermissions.groupId,
  permissionColumn: groupPermissions.permissionId,
  row: (groupId, permissionId) => ({ groupId, permissionId }),
};

/** Grants `perms` to the holder named `name`, creating missing permission rows; all or nothing. */
async function grantPermissions(
  db: DrizzleDb,
  grants: GrantTable,
  name: string,
  perms: readonly string[],
): Promise<void> {
  assertValidPermissions(perms);
  await db.transaction(async (tx) => {
    const holderId = await grants.requireHolderId(tx, name);
    const ids = await ensurePermissions(tx, perms);
    if (ids.length === 0) return;
    await tx
      .insert(grants.table)
      .values([...new Set(ids)].map((permissionId) => grants.row(holderId, permissionId)))
      .onConflictDoNothing();
  });
}

/** Removes `perms` from the holder named `name`; returns how many grants went. */
async function revokePermissions(
  db: DrizzleDb,
  grants: GrantTable,
  name: string,
  perms: readonly string[],
): Promise<number> {
  assertValidPermissions(perms);
  return db.transaction(async (tx) => {
    const holderId = await grants.requireHolderId(tx, name);
    if (perms.length === 0) return 0;
    const removed = await tx
      .delete(grants.table)
      .where(
        and(
          eq(grants.holderColumn, holderId),
          inArray(
            grants.permissionColumn,
            tx.select({ id: permissions.id }).from(permissions).where(permissionsMatching(perms)),
          ),
        ),
      )
      .returning({ permissionId: grants.permissionColumn });
    return removed.length;
  });
}

/**
 * Grants permissions directly to a user, creating missing permission rows.
 * Already held grants are left alone. All or nothing.
 *
 * @throws {StoreError} `USER_NOT_FOUND`, `INVALID_PERMISSION`.
 */
export async function grantUserPermissions(db: DrizzleDb, username: string, perms: readonly string[]): Promise<void> {
  await grantPermissions(db, USER_GRANTS, username, perms);
}

/**
 * Removes direct grants from a user (grants through groups are untouched).
 *
 * @returns how many grants were removed.
 * @throws {StoreError} `USER_NOT_FOUND`, `INVALID_PERMISSION`.
 */
export async function revokeUserPermissions(
  db: DrizzleDb,
  username: string,
  perms: readonly string[],
): Promise<number> {
  return revokePermissions(db, USER_GRANTS, username, perms);
}

/**
 * Creates a group.
 *
 * @throws {StoreError} `INVALID_INPUT`, `DUPLICATE_GROUP`.
 */
export async function createGroup(db: DrizzleDb, name: string): Promise<Group> {
  assertValidGroupName(name);
  try {
    const [row] = await db.insert(groups).values({ name }).returning();
    return row!;
  } catch (error) {
    if (isUniqueViolation(error)) {
      throw new StoreError("DUPLICATE_GROUP", `group "${name}" already exists`, { cause: error });
    }
    throw error;
  }
}

/**
 * Grants permissions to a group, creating missing permission rows. All or
 * nothing.
 *
 * @throws {StoreError} `GROUP_NOT_FOUND`, `INVALID_PERMISSION`.
 */
export async function grantGroupPermissions(db: DrizzleDb, group: string, perms: readonly string[]): Promise<void> {
  await grantPermissions(db, GROUP_GRANTS, group, perms);
}

/**
 * Removes permissions from a group.
 *
 * @returns how many grants were removed.
 * @throws {StoreError} `GROUP_NOT_FOUND`, `INVALID_PERMISSION`.
 */
export async function revokeGroupPermissions(db: DrizzleDb, group: string, perms: readonly string[]): Promise<number> {
  return revokePermissions(db, GROUP_GRANTS, group, perms);
}

/** Resolves every username to an id, or throws naming all that are missing. */
async function requireUserIds(db: DrizzleDb, usernames: readonly string[]): Promise<number[]> {
  const unique = [...new Set(usernames.map(normalizeUsername))];
  if (unique.length === 0) return [];
  const rows = await db
    .select({ id: users.id, username: users.username })
    .from(users)
    .where(inArray(users.username, unique));
  if (rows.length !== unique.length) {
    const found = new Set(rows.map((r) => r.username));
    const missing = unique.filter((u) => !found.has(u));
    throw new StoreError("USER_NOT_FOUND", `no user ${missing.map((m) => `"${m}"`).join(", ")}`);
  }
  return rows.map((r) => r.id);
}

/**
 * Adds users to a group. If any username does not exist, nobody is added.
 *
 * @throws {StoreError} `GROUP_NOT_FOUND`, `USER_NOT_FOUND`.
 */
export async function addUsersToGroup(db: DrizzleDb, group: string, usernames: readonly string[]): Promise<void> {
  await db.transaction(async (tx) => {
    const groupId = await requireGroupId(tx, group);
    const userIds = await requireUserIds(tx, usernames);
    if (userIds.length === 0) return;
    await tx
      .insert(userGroups)
      .values(userIds.map((userId) => ({ userId, groupId })))
      .onConflictDoNothing();
  });
}

/**
 * Removes users from a group. If any username does not exist, nobody is
 * removed.
 *
 * @returns how many memberships were removed.
 * @throws {StoreError} `GROUP_NOT_FOUND`, `USER_NOT_FOUND`.
 */
export async function removeUsersFromGroup(
  db: DrizzleDb,
  group: string,
  usernames: readonly string[],
): Promise<number> {
  return db.transaction(async (tx) => {
    const groupId = await requireGroupId(tx, group);
    const userIds = await requireUserIds(tx, usernames);
    if (userIds.length === 0) return 0;
    const removed = await tx
      .delete(userGroups)
      .where(and(eq(userGroups.groupId, groupId), inArray(userGroups.userId, userIds)))
      .returning({ userId: userGroups.userId });
    return removed.length;
  });
}
