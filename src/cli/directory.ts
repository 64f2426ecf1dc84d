/**
 * The read side of `protoguard user|group|permission|session`: list and show what the store
 * holds, as an aligned table for people or, with `--json`, as JSON for scripts (snake_case keys
 * and ISO 8601 times, like `service list`). Reads never write, so they need no transaction.
 */
import {
  DEFAULT_USER_PAGE_SIZE,
  MAX_USER_PAGE_SIZE,
  groupDetail,
  listGroups,
  listPermissions,
  listUsers,
  userDetail,
  type GroupSummary,
  type PermissionInfo,
  type UserDetail,
  type UserSummary,
} from "../store/directory.js";
import { listSessionsOfUser, revokeSession, type SessionInfo } from "../store/sessions.js";
import { defineStoreSubcommand, firstPositional } from "./args.js";
import { UsageError } from "./errors.js";

const JSON_FLAG = { json: "boolean" } as const;

/** Rows as aligned columns under an upper-case header; the last column is not padded. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (values: readonly string[]) =>
    values
      .map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header.map((h) => h.toUpperCase())), ...rows.map(line)].join("\n");
}

const yesNo = (value: boolean) => (value ? "yes" : "no");
const listed = (values: readonly string[]) => (values.length === 0 ? "-" : values.join(", "));

/** A user as the JSON output shows it. */
function userJson(user: UserSummary) {
  return {
    id: user.id,
    username: user.username,
    email: user.email,
    kind: user.kind,
    active: user.isActive,
    staff: user.isStaff,
    superuser: user.isSuperuser,
    totp_enabled: user.totpEnabled,
    date_joined: user.dateJoined.toISOString(),
    last_login: user.lastLogin?.toISOString() ?? null,
  };
}

function userDetailJson(detail: UserDetail) {
  return {
    ...userJson(detail.user),
    groups: detail.groups,
    direct_permissions: detail.directPermissions,
    effective_permissions: detail.effectivePermissions.map((p) => ({ permission: p.permission, sources: p.sources })),
  };
}

function groupJson(group: GroupSummary) {
  return { name: group.name, member_count: group.memberCount, permissions: group.permissions };
}

function permissionJson(permission: PermissionInfo) {
  return {
    permission: permission.permission,
    name: permission.name,
    user_count: permission.userCount,
    group_count: permission.groupCount,
  };
}

/** A session as the JSON output shows it. */
export function sessionJson(session: SessionInfo) {
  return {
    id: session.id,
    created_at: session.createdAt.toISOString(),
    last_refreshed_at: session.lastRefreshedAt.toISOString(),
    peer_address: session.peerAddress,
    user_agent: session.userAgent,
    access_expires_at: session.accessExpiresAt.toISOString(),
    expires_at: session.expiresAt.toISOString(),
  };
}

const json = (value: unknown) => JSON.stringify(value, null, 2);

const userList = defineStoreSubcommand({
  usage: "user list [--search TEXT] [--services] [--limit N] [--after USERNAME] [--json]",
  summary: `list users sorted by username, ${DEFAULT_USER_PAGE_SIZE} a page (--after the last one shown for the next)`,
  flags: { ...JSON_FLAG, search: "string", services: "boolean", limit: "string", after: "string" },
  positionals: { min: 0, max: 0, names: "no arguments" },
  prepare({ flags }) {
    const raw = flags.limit ?? String(DEFAULT_USER_PAGE_SIZE);
    const limit = Number(raw);
    if (!/^\d+$/.test(raw) || limit < 1 || limit > MAX_USER_PAGE_SIZE) {
      throw new UsageError(`--limit must be a whole number from 1 to ${MAX_USER_PAGE_SIZE}, got "${raw}"`);
    }
    return {
      json: flags.json === true,
      options: {
        limit,
        includeServices: flags.services === true,
        ...(flags.search !== undefined && { search: flags.search }),
        ...(flags.after !== undefined && { after: flags.after }),
      },
    };
  },
  work: (runtime, { options }) => listUsers(runtime.database.db, options),
  report(page, input) {
    if (input.json) return json({ users: page.users.map(userJson), next: page.next ?? null });
    const rows = page.users.map((u) => [
      u.username,
      u.kind,
      yesNo(u.isActive),
      yesNo(u.isStaff),
      yesNo(u.isSuperuser),
      yesNo(u.totpEnabled),
      u.lastLogin?.toISOString() ?? "never",
      u.email,
    ]);
    const table = formatTable(
      ["username", "kind", "active", "staff", "superuser", "totp", "last login", "email"],
      rows,
    );
    return page.next === undefined ? table : `${table}\n(more: repeat with --after ${page.next})`;
  },
});

const userShow = defineStoreSubcommand({
  usage: "user show <username> [--json]",
  summary: "show a user's flags, groups, direct permissions and effective permissions with their sources",
  flags: JSON_FLAG,
  positionals: { min: 1, max: 1, names: "<username>" },
  prepare: ({ positionals: [username], flags }) => ({ username: username!, json: flags.json === true }),
  work: (runtime, { username }) => userDetail(runtime.database.db, username),
  report(detail, input) {
    if (input.json) return json(userDetailJson(detail));
    const { user } = detail;
    const lines = [
      `username:    ${user.username}`,
      `id:          ${user.id}`,
      `kind:        ${user.kind}`,
      `email:       ${user.email || "-"}`,
      `active:      ${yesNo(user.isActive)}`,
      `staff:       ${yesNo(user.isStaff)}`,
      `superuser:   ${yesNo(user.isSuperuser)}`,
      `totp:        ${yesNo(user.totpEnabled)}`,
      `date joined: ${user.dateJoined.toISOString()}`,
      `last login:  ${user.lastLogin?.toISOString() ?? "never"}`,
      `groups:      ${listed(detail.groups)}`,
      `direct permissions: ${listed(detail.directPermissions)}`,
      "effective permissions:",
    ];
    if (detail.effectivePermissions.length === 0) lines.push("  -");
    else {
      const table = formatTable(
        ["permission", "sources"],
        detail.effectivePermissions.map((p) => [p.permission, p.sources.join(", ")]),
      );
      lines.push(...table.split("\n").map((l) => `  ${l}`));
    }
    return lines.join("\n");
  },
});

const groupList = defineStoreSubcommand({
  usage: "group list [--json]",
  summary: "list groups with their member count and permissions",
  flags: JSON_FLAG,
  positionals: { min: 0, max: 0, names: "no arguments" },
  prepare: ({ flags }) => ({ json: flags.json === true }),
  work: (runtime) => listGroups(runtime.database.db),
  report(groups, input) {
    if (input.json) return json(groups.map(groupJson));
    return formatTable(
      ["group", "members", "permissions"],
      groups.map((g) => [g.name, String(g.memberCount), listed(g.permissions)]),
    );
  },
});

const groupShow = defineStoreSubcommand({
  usage: "group show <group> [--json]",
  summary: "show a group's permissions and members",
  flags: JSON_FLAG,
  positionals: { min: 1, max: 1, names: "<group>" },
  prepare: ({ positionals: [name], flags }) => ({ name: name!, json: flags.json === true }),
  work: (runtime, { name }) => groupDetail(runtime.database.db, name),
  report(detail, input) {
    if (input.json) return json({ ...groupJson(detail.group), members: detail.members });
    return [
      `group:       ${detail.group.name}`,
      `permissions: ${listed(detail.group.permissions)}`,
      `members:     ${listed(detail.members)}`,
    ].join("\n");
  },
});

const permissionList = defineStoreSubcommand({
  usage: "permission list [--json]",
  summary: "list every permission the database knows, with how many users and groups are granted it",
  flags: JSON_FLAG,
  positionals: { min: 0, max: 0, names: "no arguments" },
  prepare: ({ flags }) => ({ json: flags.json === true }),
  work: (runtime) => listPermissions(runtime.database.db),
  report(permissions, input) {
    if (input.json) return json(permissions.map(permissionJson));
    return formatTable(
      ["permission", "users", "groups", "name"],
      permissions.map((p) => [p.permission, String(p.userCount), String(p.groupCount), p.name]),
    );
  },
});

const sessionList = defineStoreSubcommand({
  usage: "session list <username> [--json]",
  summary: "list a user's live sessions (one per login, continued by refreshes), newest activity first",
  flags: JSON_FLAG,
  positionals: { min: 1, max: 1, names: "<username>" },
  prepare: ({ positionals: [username], flags }) => ({ username: username!, json: flags.json === true }),
  work: (runtime, { username }) => listSessionsOfUser(runtime.database.db, username, new Date()),
  report(sessions, input) {
    if (input.json) return json(sessions.map(sessionJson));
    return formatTable(
      ["session", "created", "last refreshed", "access expires", "peer", "user agent"],
      sessions.map((s) => [
        s.id,
        s.createdAt.toISOString(),
        s.lastRefreshedAt.toISOString(),
        s.accessExpiresAt.toISOString(),
        s.peerAddress || "-",
        s.userAgent || "-",
      ]),
    );
  },
});

const sessionRevoke = defineStoreSubcommand({
  usage: "session revoke <session-id>",
  summary: "end a session: its refresh and access tokens stop working on every instance, its streams end",
  positionals: { min: 1, max: 1, names: "<session-id>" },
  prepare: firstPositional,
  work: (runtime, id) => revokeSession(runtime.database.db, id, new Date()),
  report: (_, id) => `revoked session ${id}`,
  audit: (userId, id) => ({ type: "session.revoked", subject: `session:${id}`, detail: { familyId: id, userId } }),
});

/** `user list` and `user show`, for the `user` command group. */
export const userReadSubcommands = { list: userList, show: userShow };

/** `group list` and `group show`, for the `group` command group. */
export const groupReadSubcommands = { list: groupList, show: groupShow };

/** The `permission` subcommands. */
export const permissionSubcommands = { list: permissionList };

/** The `session` subcommands. */
export const sessionSubcommands = { list: sessionList, revoke: sessionRevoke };
