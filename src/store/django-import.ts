/**
 * `protoguard import django`: reads a Django database (PostgreSQL) read-only
 * and upserts its users, groups, permissions, memberships and grants into
 * protoguard's store, in one transaction.
 *
 * - Users keep Django's ids, so `user_id` claims of existing tokens name the
 *   same people; the `users` id sequence is moved past them.
 * - Password hashes are kept as they are. Hashes protoguard cannot verify are
 *   reported and their users marked `password_reset_required` (Login then
 *   answers `PASSWORD_RESET_REQUIRED`); Django's unusable `!…` passwords
 *   become `''` (no password login), as protoguard spells it.
 * - Idempotent: what was read last time is kept per user
 *   (`django_imported_users`), and a re-import applies a user's field only
 *   when Django changed it since. A hash upgraded at login, or a change made
 *   in protoguard meanwhile, is not undone by an unchanged Django row.
 *   Memberships and direct grants of imported users, and the permissions of
 *   groups that exist in Django, mirror Django exactly.
 * - A user deleted in Django, or made inactive there, is deactivated here
 *   (sessions ended), never deleted.
 */
import { and, eq, sql as dsql } from "drizzle-orm";
import postgres from "postgres";
import { ProtoguardError } from "../errors.js";
import { isPermissionString } from "../permission.js";
import { isUserId } from "../user-id.js";
import { isVerifiablePasswordHash, passwordScheme } from "../util/password-schemes.js";
import type { Database, DrizzleDb } from "./database-handle.js";
import { StoreError } from "./errors.js";
import { revokeUserSessions } from "./refresh-tokens.js";
import {
  djangoImportedUsers,
  groupPermissions,
  groups,
  permissions,
  userGroups,
  userPermissions,
  users,
} from "./schema.js";
import { normalizeUsername } from "./users.js";

/** Options of {@link importFromDjango}. */
export interface DjangoImportOptions {
  /** The Django database, `postgres://…`. Read in one read-only, repeatable-read transaction. Required. */
  databaseUrl: string;
  /**
   * The user table, for a custom user model with the usual fields
   * (`accounts_user`); its join tables are `<table>_groups` and
   * `<table>_user_permissions`. Default `auth_user`.
   */
  userTable?: string;
  /** Do everything, report it, then roll back. Default false. */
  dryRun?: boolean;
  /** Clock in milliseconds (session revocations). Default `Date.now`. */
  now?: () => number;
}

/** What {@link importFromDjango} did (or, with `dryRun`, would do). */
export interface DjangoImportReport {
  readonly dryRun: boolean;
  readonly users: {
    readonly created: number;
    readonly updated: number;
    readonly deactivated: number;
    readonly unchanged: number;
    readonly skipped: number;
  };
  readonly groups: { readonly created: number };
  readonly permissions: { readonly created: number };
  /** Rows of `user_groups`, `user_permissions` and `group_permissions` added and removed. */
  readonly grants: { readonly added: number; readonly removed: number };
  /** Users whose hash protoguard cannot verify, now marked to reset, with the hash's scheme. */
  readonly passwordResetRequired: readonly { readonly username: string; readonly scheme: string }[];
  /** Things ignored or skipped, one line each (unknown columns, invalid names). */
  readonly notes: readonly string[];
}

/** The fields of a Django user protoguard keeps, as read. */
interface DjangoUser {
  username: string;
  email: string;
  password: string;
  isActive: boolean;
  isStaff: boolean;
  isSuperuser: boolean;
  /** ISO time; null when the table has no `date_joined`. */
  dateJoined: string | null;
  lastLogin: string | null;
}

interface DjangoSnapshot {
  users: Map<number, DjangoUser>;
  permissions: Map<number, string>;
  groups: Map<number, string>;
  groupPermissions: [number, number][];
  userGroups: [number, number][];
  userPermissions: [number, number][];
  notes: string[];
}

const KNOWN_USER_COLUMNS = [
  "id",
  "username",
  "password",
  "email",
  "is_active",
  "is_staff",
  "is_superuser",
  "date_joined",
  "last_login",
] as const;
const TABLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
const INTEGER_TYPES = new Set(["integer", "bigint", "smallint"]);

/** Thrown inside the import's transaction to roll a dry run back; never escapes `importFromDjango`. */
class DryRunRollback extends ProtoguardError<"DRY_RUN"> {
  constructor() {
    super("DRY_RUN", "dry run: rolled back");
  }
}

/**
 * Imports users, groups and permissions from a Django database into `target`.
 *
 * @throws {StoreError} `SOURCE_UNAVAILABLE` when the Django database cannot be read (unreachable,
 *   refused, no such database); `INVALID_INPUT` for a bad table name or a Django database without the
 *   expected tables (or with non-integer user ids); `DUPLICATE_USERNAME` when a Django user's id
 *   or username is taken in protoguard by someone else (nothing is written).
 * @example
 * ```ts
 * const report = await importFromDjango(database, { databaseUrl: "postgres://127.0.0.1/django" });
 * console.log(report.users.created, report.users.updated, report.users.deactivated);
 * ```
 */
export async function importFromDjango(target: Database, options: DjangoImportOptions): Promise<DjangoImportReport> {
  const userTable = options.userTable ?? "auth_user";
  if (!TABLE_NAME.test(userTable)) {
    throw new StoreError("INVALID_INPUT", `--user-table must be a plain lower-case table name, got "${userTable}"`);
  }
  const now = options.now ?? Date.now;
  const snapshot = await readDjango(options.databaseUrl, userTable).catch((error: unknown) => {
    if (error instanceof StoreError) throw error;
    const why = error instanceof Error ? error.message : String(error);
    throw new StoreError("SOURCE_UNAVAILABLE", `cannot read the Django database: ${why}`, { cause: error });
  });
  const dryRun = options.dryRun === true;
  let report: DjangoImportReport | undefined;
  try {
    await target.db.transaction(async (tx) => {
      report = await apply(tx, snapshot, new Date(now()), dryRun);
      if (dryRun) throw new DryRunRollback();
    });
  } catch (error) {
    if (!(error instanceof DryRunRollback)) throw error;
  }
  return report!;
}

/** Reads everything in one read-only snapshot of the Django database. */
async function readDjango(databaseUrl: string, userTable: string): Promise<DjangoSnapshot> {
  const client = postgres(databaseUrl, {
    max: 1,
    onnotice: () => {},
    connection: { application_name: "protoguard-import-django", default_transaction_read_only: true },
  });
  try {
    return (await client.begin("read only isolation level repeatable read", (sql) =>
      readTables(sql, userTable),
    )) as DjangoSnapshot;
  } finally {
    await client.end({ timeout: 5 });
  }
}

async function columnsOf(sql: postgres.TransactionSql, table: string): Promise<Map<string, string>> {
  const rows = await sql<{ column_name: string; data_type: string }[]>`
    select column_name, data_type from information_schema.columns
    where table_schema = current_schema() and table_name = ${table}`;
  return new Map(rows.map((r) => [r.column_name, r.data_type]));
}

async function readTables(sql: postgres.TransactionSql, userTable: string): Promise<DjangoSnapshot> {
  const notes: string[] = [];
  const columns = await columnsOf(sql, userTable);
  if (columns.size === 0) throw new StoreError("INVALID_INPUT", `the Django database has no table "${userTable}"`);
  for (const required of ["id", "username"]) {
    if (!columns.has(required)) {
      throw new StoreError("INVALID_INPUT", `"${userTable}" has no "${required}" column`);
    }
  }
  if (!INTEGER_TYPES.has(columns.get("id")!)) {
    throw new StoreError("INVALID_INPUT", `"${userTable}".id is ${columns.get("id")}; only integer user ids import`);
  }
  const unknown = [...columns.keys()].filter((c) => !(KNOWN_USER_COLUMNS as readonly string[]).includes(c)).sort();
  if (unknown.length > 0) notes.push(`ignored columns of ${userTable}: ${unknown.join(", ")}`);
  const present = KNOWN_USER_COLUMNS.filter((c) => columns.has(c));
  const missing = KNOWN_USER_COLUMNS.filter((c) => !columns.has(c));
  if (missing.length > 0) notes.push(`${userTable} has no ${missing.join(", ")}: defaults used`);

  const userRows = await sql<Record<string, unknown>[]>`select ${sql(present)} from ${sql(userTable)} order by id`;
  const djangoUsers = new Map<number, DjangoUser>();
  for (const row of userRows) {
    const id = Number(row["id"]);
    if (!isUserId(id)) {
      notes.push(`skipped user id ${String(row["id"])}: not a positive 32-bit integer`);
      continue;
    }
    djangoUsers.set(id, {
      username: String(row["username"]),
      email: typeof row["email"] === "string" ? row["email"] : "",
      password: typeof row["password"] === "string" ? row["password"] : "",
      isActive: row["is_active"] === undefined ? true : row["is_active"] === true,
      isStaff: row["is_staff"] === true,
      isSuperuser: row["is_superuser"] === true,
      dateJoined: row["date_joined"] instanceof Date ? row["date_joined"].toISOString() : null,
      lastLogin: row["last_login"] instanceof Date ? row["last_login"].toISOString() : null,
    });
  }

  for (const table of ["auth_permission", "django_content_type", "auth_group", "auth_group_permissions"]) {
    if ((await columnsOf(sql, table)).size === 0) {
      throw new StoreError("INVALID_INPUT", `the Django database has no table "${table}"`);
    }
  }
  const permissionRows = await sql<{ id: number; app_label: string; codename: string }[]>`
    select p.id, ct.app_label, p.codename
    from auth_permission p join django_content_type ct on ct.id = p.content_type_id`;
  const djangoPermissions = new Map<number, string>();
  for (const row of permissionRows) {
    const perm = `${row.app_label}.${row.codename}`;
    if (isPermissionString(perm)) djangoPermissions.set(row.id, perm);
    else notes.push(`skipped permission ${JSON.stringify(perm)}: not app_label.codename`);
  }
  const groupRows = await sql<{ id: number; name: string }[]>`select id, name from auth_group`;
  const groupPermRows = await sql<{ group_id: number; permission_id: number }[]>`
    select group_id, permission_id from auth_group_permissions`;

  const joinRows = async (suffix: string, other: string): Promise<[number, number][]> => {
    const table = `${userTable}_${suffix}`;
    const joinColumns = await columnsOf(sql, table);
    const userColumn = [...joinColumns.keys()].find((c) => c !== "id" && c !== other && c.endsWith("_id"));
    if (joinColumns.size === 0 || userColumn === undefined || !joinColumns.has(other)) {
      notes.push(`no ${table} table: ${suffix.replace("_", " ")} not imported`);
      return [];
    }
    const rows = await sql<{ u: number; o: number }[]>`
      select ${sql(userColumn)} as u, ${sql(other)} as o from ${sql(table)}`;
    return rows.map((r) => [Number(r.u), Number(r.o)]);
  };

  return {
    users: djangoUsers,
    permissions: djangoPermissions,
    groups: new Map(groupRows.map((g) => [g.id, g.name])),
    groupPermissions: groupPermRows.map((r) => [r.group_id, r.permission_id]),
    userGroups: await joinRows("groups", "group_id"),
    userPermissions: await joinRows("user_permissions", "permission_id"),
    notes,
  };
}

/** Django's source row as stored in `django_imported_users.source`. */
function sourceText(user: DjangoUser): string {
  return JSON.stringify(user);
}

function parseSource(text: string): DjangoUser | undefined {
  try {
    const value = JSON.parse(text) as DjangoUser & { deleted?: boolean };
    return value.deleted === true ? undefined : value;
  } catch {
    return undefined;
  }
}

const DELETED_SOURCE = JSON.stringify({ deleted: true });

/** What a Django user becomes in protoguard's `users` row. */
function userValues(user: DjangoUser) {
  const unusable = passwordScheme(user.password) === "unusable";
  return {
    username: user.username,
    email: user.email,
    password: unusable ? "" : user.password,
    passwordResetRequired: !unusable && !isVerifiablePasswordHash(user.password),
    isActive: user.isActive,
    isStaff: user.isStaff,
    isSuperuser: user.isSuperuser,
    dateJoined: user.dateJoined === null ? undefined : new Date(user.dateJoined),
    lastLogin: user.lastLogin === null ? null : new Date(user.lastLogin),
  };
}

async function apply(tx: DrizzleDb, snap: DjangoSnapshot, at: Date, dryRun: boolean): Promise<DjangoImportReport> {
  const notes = [...snap.notes];
  // Two imports at once would race on the same rows: the second waits for the first.
  await tx.execute(dsql`select pg_advisory_xact_lock(hashtext('protoguard.import.django'))`);
  const permissionsDone = await importPermissions(tx, snap);
  const groupsDone = await importGroups(tx, snap, notes);
  const records = await readImportRecords(tx);
  const usersDone = await importUsers(tx, snap, records, at, notes);
  usersDone.counts.deactivated += await deactivateRemovedUsers(tx, snap, records.parsed, at);
  const grants = await mirrorGrants(tx, snap, usersDone.imported, groupsDone.groupOf, permissionsDone.permissionOf);
  await advanceUserIds(tx);
  return Object.freeze({
    dryRun,
    users: usersDone.counts,
    groups: { created: groupsDone.created },
    permissions: { created: permissionsDone.created },
    grants,
    passwordResetRequired: usersDone.resets,
    notes,
  });
}

/** Permissions by app_label.codename: created when missing, never deleted. */
async function importPermissions(tx: DrizzleDb, snap: DjangoSnapshot) {
  // Permissions: by app_label.codename; created when missing, never deleted.
  const existingPerms = await tx
    .select({ id: permissions.id, appLabel: permissions.appLabel, codename: permissions.codename })
    .from(permissions);
  const permIds = new Map(existingPerms.map((p) => [`${p.appLabel}.${p.codename}`, p.id]));
  let created = 0;
  for (const perm of new Set(snap.permissions.values())) {
    if (permIds.has(perm)) continue;
    const dot = perm.indexOf(".");
    const [row] = await tx
      .insert(permissions)
      .values({ appLabel: perm.slice(0, dot), codename: perm.slice(dot + 1) })
      .returning({ id: permissions.id });
    permIds.set(perm, row!.id);
    created++;
  }
  const permissionOf = (djangoId: number) => {
    const name = snap.permissions.get(djangoId);
    return name === undefined ? undefined : permIds.get(name);
  };

  return { permissionOf, created };
}

/** Groups by name, created when missing. */
async function importGroups(tx: DrizzleDb, snap: DjangoSnapshot, notes: string[]) {
  // Groups: by name.
  const existingGroups = await tx.select({ id: groups.id, name: groups.name }).from(groups);
  const groupIds = new Map(existingGroups.map((g) => [g.name, g.id]));
  let created = 0;
  for (const name of snap.groups.values()) {
    if (groupIds.has(name)) continue;
    if (name.length === 0 || name.length > 150) {
      notes.push(`skipped group ${JSON.stringify(name)}: name outside 1..150 characters`);
      continue;
    }
    const [row] = await tx.insert(groups).values({ name }).returning({ id: groups.id });
    groupIds.set(name, row!.id);
    created++;
  }
  const groupOf = (djangoId: number) => {
    const name = snap.groups.get(djangoId);
    return name === undefined ? undefined : groupIds.get(name);
  };

  return { groupOf, created };
}

/** What earlier imports read of each user (`django_imported_users`), parsed and as stored. */
async function readImportRecords(tx: DrizzleDb) {
  const recordRows = await tx.select().from(djangoImportedUsers);
  return {
    parsed: new Map(recordRows.map((r) => [r.userId, parseSource(r.source)] as const)),
    texts: new Map(recordRows.map((r) => [r.userId, r.source] as const)),
  };
}

/** Users: created with Django's ids, or updated where Django changed them since the last import. */
async function importUsers(
  tx: DrizzleDb,
  snap: DjangoSnapshot,
  { parsed: records, texts: recordTexts }: Awaited<ReturnType<typeof readImportRecords>>,
  at: Date,
  notes: string[],
) {
  const counts = { created: 0, updated: 0, deactivated: 0, unchanged: 0, skipped: 0 };
  const resets: { username: string; scheme: string }[] = [];
  // Every user read once, not twice per Django user.
  const byId = new Map((await tx.select().from(users)).map((u) => [u.id, u] as const));
  const idByName = new Map([...byId.values()].map((u) => [u.username, u.id] as const));
  const imported = new Set<number>();
  const newUsers: (typeof users.$inferInsert & { id: number })[] = [];
  const newRecords: (typeof djangoImportedUsers.$inferInsert)[] = [];
  for (const [id, user] of snap.users) {
    if (normalizeUsername(user.username) !== user.username || !/^[\p{L}\p{N}_.@+-]{1,150}$/u.test(user.username)) {
      notes.push(`skipped user id ${id} (${JSON.stringify(user.username)}): username outside protoguard's alphabet`);
      counts.skipped++;
      continue;
    }
    const current = byId.get(id);
    const byName = idByName.get(user.username);
    if (byName !== undefined && byName !== id) {
      throw new StoreError(
        "DUPLICATE_USERNAME",
        `Django user ${id} "${user.username}" conflicts with protoguard user ${byName} of that name`,
      );
    }
    const wanted = userValues(user);
    if (current === undefined) {
      // The credentials are as old as the account: tokens Django issued stay good. simplejwt
      // writes iat in whole seconds, so the account's second is taken, not its millisecond: a
      // token minted in the second the user joined would otherwise read as issued before.
      const joined = wanted.dateJoined;
      const credentialsChangedAt = joined == null ? new Date(0) : new Date(Math.floor(joined.getTime() / 1000) * 1000);
      newUsers.push({ id, ...wanted, credentialsChangedAt });
      idByName.set(user.username, id);
      counts.created++;
    } else {
      if (current.kind !== "user") {
        throw new StoreError("DUPLICATE_USERNAME", `Django user ${id} collides with protoguard service account ${id}`);
      }
      const previous = records.has(id) ? records.get(id) : undefined;
      if (previous === undefined && !records.has(id) && current.username !== user.username) {
        throw new StoreError(
          "DUPLICATE_USERNAME",
          `Django user ${id} "${user.username}" collides with protoguard user ${id} "${current.username}"`,
        );
      }
      const { set, passwordChanged, deactivate } = changesFromDjango(current, user, wanted, previous);
      if (set.username !== undefined) {
        idByName.delete(current.username);
        idByName.set(set.username, id);
      }
      if (Object.keys(set).length > 0) {
        await tx.update(users).set(set).where(eq(users.id, id));
        // A new password or a deactivation ends the sessions, as when done here.
        if (passwordChanged || deactivate) await revokeUserSessions(tx, id, at);
        if (deactivate) counts.deactivated++;
        else counts.updated++;
      } else {
        counts.unchanged++;
      }
    }
    if (wanted.passwordResetRequired) resets.push({ username: user.username, scheme: passwordScheme(user.password) });
    const source = sourceText(user);
    if (recordTexts.get(id) !== source) newRecords.push({ userId: id, source, importedAt: at });
    imported.add(id);
  }
  // New users and changed records in batches, after the updates (a rename may free a name).
  for (let i = 0; i < newUsers.length; i += 500) {
    await tx
      .insert(users)
      .overridingSystemValue()
      .values(newUsers.slice(i, i + 500));
  }
  for (let i = 0; i < newRecords.length; i += 1000) {
    await tx
      .insert(djangoImportedUsers)
      .values(newRecords.slice(i, i + 1000))
      .onConflictDoUpdate({
        target: djangoImportedUsers.userId,
        set: { source: dsql`excluded.source`, importedAt: dsql`excluded.imported_at` },
      });
  }

  return { counts, resets, imported };
}

/**
 * The fields of `current` to set from Django's `user` (`wanted`, as protoguard stores it): a
 * field is applied when Django changed it since the last import (`previous`; all of them the
 * first time), so a change made here, or a hash upgraded at login, is kept.
 */
function changesFromDjango(
  current: typeof users.$inferSelect,
  user: DjangoUser,
  wanted: ReturnType<typeof userValues>,
  previous: DjangoUser | undefined,
): { set: Partial<typeof users.$inferInsert>; passwordChanged: boolean; deactivate: boolean } {
  // A field is applied when Django changed it since the last import (all of them the first time).
  const changedInDjango = (field: keyof DjangoUser) => previous === undefined || previous[field] !== user[field];
  const set: Partial<typeof users.$inferInsert> = {};
  if (changedInDjango("username") && current.username !== wanted.username) {
    set.username = wanted.username;
  }
  if (changedInDjango("email") && current.email !== wanted.email) set.email = wanted.email;
  if (changedInDjango("isStaff") && current.isStaff !== wanted.isStaff) set.isStaff = wanted.isStaff;
  if (changedInDjango("isSuperuser") && current.isSuperuser !== wanted.isSuperuser) {
    set.isSuperuser = wanted.isSuperuser;
  }
  if (
    changedInDjango("dateJoined") &&
    wanted.dateJoined !== undefined &&
    current.dateJoined.getTime() !== wanted.dateJoined.getTime()
  ) {
    set.dateJoined = wanted.dateJoined;
  }
  if (
    changedInDjango("lastLogin") &&
    wanted.lastLogin !== null &&
    (current.lastLogin === null || current.lastLogin.getTime() < wanted.lastLogin.getTime())
  ) {
    set.lastLogin = wanted.lastLogin;
  }
  const passwordChanged =
    changedInDjango("password") &&
    (current.password !== wanted.password || current.passwordResetRequired !== wanted.passwordResetRequired);
  if (passwordChanged) {
    set.password = wanted.password;
    set.passwordResetRequired = wanted.passwordResetRequired;
  }
  const deactivate = changedInDjango("isActive") && current.isActive && !wanted.isActive;
  if (changedInDjango("isActive") && current.isActive !== wanted.isActive) set.isActive = wanted.isActive;
  return { set, passwordChanged, deactivate };
}

/** Users imported before and gone from Django now: deactivated (never deleted); how many. */
async function deactivateRemovedUsers(
  tx: DrizzleDb,
  snap: DjangoSnapshot,
  records: ReadonlyMap<number, DjangoUser | undefined>,
  at: Date,
): Promise<number> {
  let deactivated = 0;
  for (const [id, previous] of records) {
    if (snap.users.has(id) || previous === undefined) continue;
    const done = await tx
      .update(users)
      .set({ isActive: false })
      .where(and(eq(users.id, id), eq(users.isActive, true)))
      .returning({ id: users.id });
    if (done.length > 0) {
      await revokeUserSessions(tx, id, at);
      deactivated++;
    }
    await tx
      .update(djangoImportedUsers)
      .set({ source: DELETED_SOURCE, importedAt: at })
      .where(eq(djangoImportedUsers.userId, id));
  }

  return deactivated;
}

/** Memberships and grants of imported users, and permissions of Django's groups: as in Django. */
async function mirrorGrants(
  tx: DrizzleDb,
  snap: DjangoSnapshot,
  imported: ReadonlySet<number>,
  groupOf: (djangoId: number) => number | undefined,
  permissionOf: (djangoId: number) => number | undefined,
): Promise<{ added: number; removed: number }> {
  const grants = { added: 0, removed: 0 };
  const importedIds = [...imported];
  const wantedMemberships = pairs(
    snap.userGroups.filter(([u]) => imported.has(u)).map(([u, g]) => [u, groupOf(g)] as const),
  );
  const wantedUserPerms = pairs(
    snap.userPermissions.filter(([u]) => imported.has(u)).map(([u, p]) => [u, permissionOf(p)] as const),
  );
  const djangoGroupIds = [...snap.groups.keys()].map(groupOf).filter((g): g is number => g !== undefined);
  const wantedGroupPerms = pairs(snap.groupPermissions.map(([g, p]) => [groupOf(g), permissionOf(p)] as const));

  if (importedIds.length > 0) {
    // Read whole and filtered here: an id list could exceed PostgreSQL's 65535 parameters.
    const haveMemberships = (await tx.select({ a: userGroups.userId, b: userGroups.groupId }).from(userGroups)).filter(
      ({ a }) => imported.has(a),
    );
    await mirror(haveMemberships, wantedMemberships, grants, {
      add: (rows) => tx.insert(userGroups).values(rows.map(([userId, groupId]) => ({ userId, groupId }))),
      remove: ([userId, groupId]) =>
        tx.delete(userGroups).where(and(eq(userGroups.userId, userId), eq(userGroups.groupId, groupId))),
    });
    const haveUserPerms = (
      await tx.select({ a: userPermissions.userId, b: userPermissions.permissionId }).from(userPermissions)
    ).filter(({ a }) => imported.has(a));
    await mirror(haveUserPerms, wantedUserPerms, grants, {
      add: (rows) =>
        tx.insert(userPermissions).values(rows.map(([userId, permissionId]) => ({ userId, permissionId }))),
      remove: ([userId, permissionId]) =>
        tx
          .delete(userPermissions)
          .where(and(eq(userPermissions.userId, userId), eq(userPermissions.permissionId, permissionId))),
    });
  }
  if (djangoGroupIds.length > 0) {
    const djangoGroups = new Set(djangoGroupIds);
    const haveGroupPerms = (
      await tx.select({ a: groupPermissions.groupId, b: groupPermissions.permissionId }).from(groupPermissions)
    ).filter(({ a }) => djangoGroups.has(a));
    await mirror(haveGroupPerms, wantedGroupPerms, grants, {
      add: (rows) =>
        tx.insert(groupPermissions).values(rows.map(([groupId, permissionId]) => ({ groupId, permissionId }))),
      remove: ([groupId, permissionId]) =>
        tx
          .delete(groupPermissions)
          .where(and(eq(groupPermissions.groupId, groupId), eq(groupPermissions.permissionId, permissionId))),
    });
  }

  return grants;
}

/** Identity values must continue past Django's ids, or the next `user create` collides. */
async function advanceUserIds(tx: DrizzleDb): Promise<void> {
  await tx.execute(dsql`
    select setval(pg_get_serial_sequence('users', 'id'), m)
    from (select max(id) as m from ${users}) as t
    where m is not null
      and m > coalesce(pg_sequence_last_value(pg_get_serial_sequence('users', 'id')::regclass), 0)`);
}

/** Distinct `[a, b]` pairs, dropping those naming something not imported. */
function pairs(list: readonly (readonly [number | undefined, number | undefined])[]): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const [a, b] of list) if (a !== undefined && b !== undefined) out.set(`${a}:${b}`, [a, b]);
  return out;
}

/** Adds the wanted pairs that are missing and removes the present ones not wanted. */
async function mirror(
  have: readonly { a: number; b: number }[],
  wanted: Map<string, [number, number]>,
  grants: { added: number; removed: number },
  ops: { add(rows: [number, number][]): Promise<unknown>; remove(row: [number, number]): Promise<unknown> },
): Promise<void> {
  const present = new Set(have.map(({ a, b }) => `${a}:${b}`));
  const missing = [...wanted].filter(([key]) => !present.has(key)).map(([, pair]) => pair);
  // In batches: each row is two parameters, and PostgreSQL takes at most 65535 per statement.
  for (let i = 0; i < missing.length; i += 1000) await ops.add(missing.slice(i, i + 1000));
  grants.added += missing.length;
  for (const { a, b } of have) {
    if (wanted.has(`${a}:${b}`)) continue;
    await ops.remove([a, b]);
    grants.removed++;
  }
}
