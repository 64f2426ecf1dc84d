/**
 * The read side of users, groups and permissions: what `protoguard user list|show`,
 * `group list|show`, `permission list` and AdminService's reads print. Plain typed objects in
 * the shapes of `proto/protoguard/v1/admin.proto` (UserSummary, UserDetail, EffectivePermission,
 * GroupSummary, GroupDetail, PermissionInfo), never a password hash or a TOTP secret.
 */
import { and, asc, eq, gt, ilike, inArray, or, sql } from "drizzle-orm";
import type { PrincipalKindName } from "../principal.js";
import type { DrizzleDb } from "./database-handle.js";
import { StoreError } from "./errors.js";
import { groupPermissions, groups, permissions, userGroups, userPermissions, users } from "./schema.js";
import { normalizeUsername } from "./users.js";

/** A user (or service account) as lists show it: flags and dates, no credentials. */
export interface UserSummary {
  readonly id: number;
  readonly username: string;
  readonly email: string;
  readonly isActive: boolean;
  readonly isStaff: boolean;
  readonly isSuperuser: boolean;
  /** `user` for people, `service` for service accounts. */
  readonly kind: PrincipalKindName;
  readonly totpEnabled: boolean;
  readonly dateJoined: Date;
  /** Null when the user never logged in. */
  readonly lastLogin: Date | null;
}

/** A permission a principal holds, and every way it holds it. */
export interface EffectivePermission {
  /** `app_label.codename`. */
  readonly permission: string;
  /**
   * Sorted: `"direct"` first, then `"group:<name>"` for each group granting it (by name), then
   * `"superuser"` when the holder is one.
   */
  readonly sources: readonly string[];
}

/** One user with groups, direct grants and effective permissions with their sources. */
export interface UserDetail {
  readonly user: UserSummary;
  /** Group names, sorted. */
  readonly groups: readonly string[];
  /** Granted to the user directly, sorted. */
  readonly directPermissions: readonly string[];
  /**
   * Everything the user holds, sorted by permission. A superuser holds every permission the
   * database knows (source `"superuser"`), and any other one too: the decision never asks a
   * superuser for a grant.
   */
  readonly effectivePermissions: readonly EffectivePermission[];
}

/** A group with its member count and permissions. */
export interface GroupSummary {
  readonly name: string;
  /** People and service accounts alike. */
  readonly memberCount: number;
  /** Sorted. */
  readonly permissions: readonly string[];
}

/** A group with its members' usernames. */
export interface GroupDetail {
  readonly group: GroupSummary;
  /** Usernames (people and service accounts), sorted. */
  readonly members: readonly string[];
}

/** A permission row with how many users and groups hold it directly. */
export interface PermissionInfo {
  /** `app_label.codename`. */
  readonly permission: string;
  /** The human-readable name (Django's `Permission.name`); `''` when none was recorded. */
  readonly name: string;
  /** Users and service accounts granted it directly (not through a group). */
  readonly userCount: number;
  /** Groups granting it. */
  readonly groupCount: number;
}

/** Options of {@link listUsers}. */
export interface ListUsersOptions {
  /** Only users whose username or email contains it, case-insensitively. Default: all. */
  search?: string;
  /** Page size, 1..500. Default 50. */
  limit?: number;
  /** Start after this username (the `next` of the previous page). Default: from the first. */
  after?: string;
  /** List service accounts too. Default false: people only. */
  includeServices?: boolean;
}

/** One page of {@link listUsers}. */
export interface UserPage {
  /** Sorted by username. */
  readonly users: readonly UserSummary[];
  /** Pass as `after` for the next page; undefined on the last page. */
  readonly next?: string;
}

/** Default page size of {@link listUsers}. */
export const DEFAULT_USER_PAGE_SIZE = 50;
/** Largest page size {@link listUsers} accepts. */
export const MAX_USER_PAGE_SIZE = 500;

const SUMMARY_COLUMNS = {
  id: users.id,
  username: users.username,
  email: users.email,
  isActive: users.isActive,
  isStaff: users.isStaff,
  isSuperuser: users.isSuperuser,
  kind: users.kind,
  totpEnabled: users.totpEnabled,
  dateJoined: users.dateJoined,
  lastLogin: users.lastLogin,
} as const;

const permissionName = sql<string>`${permissions.appLabel} || '.' || ${permissions.codename}`;

/** `text` as an ILIKE pattern matching it literally anywhere. */
function containsPattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * A page of users sorted by username, with keyset paging (`after` is the last username of the
 * previous page), so a page costs the same however deep it is and a user created meanwhile is
 * neither skipped nor shown twice.
 *
 * @throws {StoreError} `INVALID_INPUT` for a limit outside 1..500.
 */
export async function listUsers(db: DrizzleDb, options: ListUsersOptions = {}): Promise<UserPage> {
  const limit = options.limit ?? DEFAULT_USER_PAGE_SIZE;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_USER_PAGE_SIZE) {
    throw new StoreError("INVALID_INPUT", `invalid page size ${limit}: use 1-${MAX_USER_PAGE_SIZE}`);
  }
  const search = options.search?.trim() ?? "";
  const rows = await db
    .select(SUMMARY_COLUMNS)
    .from(users)
    .where(
      and(
        options.includeServices === true ? undefined : eq(users.kind, "user"),
        search === ""
          ? undefined
          : or(ilike(users.username, containsPattern(search)), ilike(users.email, containsPattern(search))),
        options.after === undefined ? undefined : gt(users.username, normalizeUsername(options.after)),
      ),
    )
    // COLLATE "C": byte order, the order of the unique index's keys in any database locale, so
    // the `>` of the next page agrees with the ORDER BY of this one.
    .orderBy(sql`${users.username} collate "C"`)
    .limit(limit + 1);
  const page = rows.slice(0, limit);
  return rows.length > limit ? { users: page, next: page.at(-1)!.username } : { users: page };
}

/**
 * One user (or service account) by username: flags, groups, direct grants and effective
 * permissions, each with where it comes from.
 *
 * @throws {StoreError} `USER_NOT_FOUND`.
 */
export async function userDetail(db: DrizzleDb, username: string): Promise<UserDetail> {
  const [user] = await db
    .select(SUMMARY_COLUMNS)
    .from(users)
    .where(eq(users.username, normalizeUsername(username)))
    .limit(1);
  if (user === undefined) throw new StoreError("USER_NOT_FOUND", `no user "${username}"`);
  const [groupRows, directRows, viaGroupRows, allRows] = await Promise.all([
    db
      .select({ name: groups.name })
      .from(userGroups)
      .innerJoin(groups, eq(groups.id, userGroups.groupId))
      .where(eq(userGroups.userId, user.id)),
    db
      .select({ permission: permissionName })
      .from(userPermissions)
      .innerJoin(permissions, eq(permissions.id, userPermissions.permissionId))
      .where(eq(userPermissions.userId, user.id)),
    db
      .select({ permission: permissionName, group: groups.name })
      .from(userGroups)
      .innerJoin(groups, eq(groups.id, userGroups.groupId))
      .innerJoin(groupPermissions, eq(groupPermissions.groupId, userGroups.groupId))
      .innerJoin(permissions, eq(permissions.id, groupPermissions.permissionId))
      .where(eq(userGroups.userId, user.id)),
    user.isSuperuser ? db.select({ permission: permissionName }).from(permissions) : Promise.resolve([]),
  ]);
  const direct = sorted(directRows.map((r) => r.permission));
  const sources = new Map<string, { direct: boolean; groups: string[]; superuser: boolean }>();
  const entry = (permission: string) => {
    let found = sources.get(permission);
    if (found === undefined) sources.set(permission, (found = { direct: false, groups: [], superuser: false }));
    return found;
  };
  for (const permission of direct) entry(permission).direct = true;
  for (const { permission, group } of viaGroupRows) entry(permission).groups.push(group);
  for (const { permission } of allRows) entry(permission).superuser = true;
  const effectivePermissions = sorted([...sources.keys()]).map((permission) => {
    const from = sources.get(permission)!;
    return {
      permission,
      sources: [
        ...(from.direct ? ["direct"] : []),
        ...sorted(from.groups).map((g) => `group:${g}`),
        ...(from.superuser ? ["superuser"] : []),
      ],
    };
  });
  return { user, groups: sorted(groupRows.map((r) => r.name)), directPermissions: direct, effectivePermissions };
}

/** Every group, sorted by name, with its member count and permissions. */
export async function listGroups(db: DrizzleDb): Promise<GroupSummary[]> {
  return groupSummaries(db);
}

// The count subqueries are literal SQL with aliases (as in principal-query.ts): in a
// single-table select Drizzle renders interpolated columns unqualified, which would make
// them ambiguous inside a subquery.
async function groupSummaries(db: DrizzleDb, name?: string): Promise<GroupSummary[]> {
  const rows = await db
    .select({
      id: groups.id,
      name: groups.name,
      memberCount: sql<number>`(select count(*) from user_groups ug where ug.group_id = groups.id)::int`,
    })
    .from(groups)
    .where(name === undefined ? undefined : eq(groups.name, name))
    .orderBy(sql`${groups.name} collate "C"`);
  if (rows.length === 0) return [];
  const grants = await db
    .select({ groupId: groupPermissions.groupId, permission: permissionName })
    .from(groupPermissions)
    .innerJoin(permissions, eq(permissions.id, groupPermissions.permissionId))
    .where(
      inArray(
        groupPermissions.groupId,
        rows.map((r) => r.id),
      ),
    );
  const byGroup = new Map<number, { permission: string }[]>();
  for (const grant of grants) byGroup.set(grant.groupId, [...(byGroup.get(grant.groupId) ?? []), grant]);
  return rows.map((r) => ({
    name: r.name,
    memberCount: Number(r.memberCount),
    permissions: sorted((byGroup.get(r.id) ?? []).map((g) => g.permission)),
  }));
}

/**
 * One group with its permissions and members.
 *
 * @throws {StoreError} `GROUP_NOT_FOUND`.
 */
export async function groupDetail(db: DrizzleDb, name: string): Promise<GroupDetail> {
  const [group] = await groupSummaries(db, name);
  if (group === undefined) throw new StoreError("GROUP_NOT_FOUND", `no group "${name}"`);
  const members = await db
    .select({ username: users.username })
    .from(userGroups)
    .innerJoin(groups, eq(groups.id, userGroups.groupId))
    .innerJoin(users, eq(users.id, userGroups.userId))
    .where(eq(groups.name, name));
  return { group, members: sorted(members.map((m) => m.username)) };
}

/**
 * Deletes a group; its memberships and grants go with it (ON DELETE CASCADE), so its members
 * lose what only the group gave them at once (the invalidation triggers tell every server).
 *
 * @throws {StoreError} `GROUP_NOT_FOUND`.
 */
export async function deleteGroup(db: DrizzleDb, name: string): Promise<void> {
  const deleted = await db.delete(groups).where(eq(groups.name, name)).returning({ id: groups.id });
  if (deleted.length === 0) throw new StoreError("GROUP_NOT_FOUND", `no group "${name}"`);
}

/** Every permission the database knows, sorted, with how many users and groups hold it directly. */
export async function listPermissions(db: DrizzleDb): Promise<PermissionInfo[]> {
  const rows = await db
    .select({
      permission: permissionName,
      name: permissions.name,
      userCount: sql<number>`(select count(*) from user_permissions up where up.permission_id = permissions.id)::int`,
      groupCount: sql<number>`(select count(*) from group_permissions gp where gp.permission_id = permissions.id)::int`,
    })
    .from(permissions)
    .orderBy(asc(permissions.appLabel), asc(permissions.codename));
  return rows
    .map((r) => ({ ...r, userCount: Number(r.userCount), groupCount: Number(r.groupCount) }))
    .sort((a, b) => compare(a.permission, b.permission));
}

/** Code-point order, the same in every locale (and as `collate "C"` for ASCII names). */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sorted(values: readonly string[]): string[] {
  return [...new Set(values)].sort(compare);
}
