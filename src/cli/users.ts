/**
 * `protoguard user ...` and `protoguard group ...`: the Django-admin chores
 * (create users, grant permissions, manage groups, cut off an account) from
 * a shell. Each command validates its whole command line before opening the
 * database, and each write is one transaction, so a typo anywhere leaves
 * the store as it was.
 */
import { Buffer } from "node:buffer";
import { changePassword, deactivateUser } from "../lifecycle/auth-service.js";
import { MAX_PASSWORD_BYTES } from "../lifecycle/passwords.js";
import type { Runtime } from "../runtime/runtime.js";
import type { DrizzleDb } from "../store/database-handle.js";
import { StoreError } from "../store/errors.js";
import type { PublicUser } from "../store/users.js";
import { assertNotService, serviceAccountRefused } from "../store/service-accounts.js";
import {
  addUsersToGroup,
  assertValidUsername,
  createGroup,
  createUser,
  deleteUser,
  findUserByUsername,
  grantGroupPermissions,
  grantUserPermissions,
  removeUsersFromGroup,
  revokeGroupPermissions,
  revokeUserPermissions,
  setUserActive,
} from "../store/users.js";
import { deleteGroup } from "../store/directory.js";
import { groupReadSubcommands, userReadSubcommands } from "./directory.js";
import { defineStoreSubcommand, firstPositional, holderAndPermissions } from "./args.js";
import { userLink, userUnlink } from "./external.js";
import { CliError, UsageError } from "./errors.js";

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    size += chunk.length;
    // Stop early on a runaway pipe rather than buffering it all.
    if (size > MAX_PASSWORD_BYTES + 2) break;
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * The new password from `--password` or `--password-stdin`. Stdin keeps it
 * out of `ps` output and shell history; one trailing newline is dropped
 * (what `echo` and most secret managers add), nothing else, since spaces
 * may be part of a passphrase.
 */
async function passwordFrom(flags: { password?: string; "password-stdin"?: boolean }): Promise<string> {
  if (flags.password !== undefined && flags["password-stdin"] === true) {
    throw new UsageError("use either --password or --password-stdin, not both");
  }
  let password: string;
  if (flags["password-stdin"] === true) password = (await readStdin()).replace(/\r?\n$/, "");
  else if (flags.password !== undefined) password = flags.password;
  else throw new UsageError("missing --password <pw> (or --password-stdin)");
  if (password === "") throw new UsageError("the password must not be empty");
  if (Buffer.byteLength(password, "utf8") > MAX_PASSWORD_BYTES) {
    throw new UsageError(`the password is longer than ${MAX_PASSWORD_BYTES} bytes`);
  }
  return password;
}

/**
 * The user named `username`, a person: the `user`, `otp` and `token`
 * commands never manage a service account (no password, TOTP or refresh
 * token for those; `protoguard service` manages them).
 *
 * @throws {StoreError} `USER_NOT_FOUND`, `INVALID_INPUT` for a service account.
 */
export async function requireUser(db: DrizzleDb, username: string): Promise<PublicUser> {
  const user = await findUserByUsername(db, username);
  if (user === undefined) throw new StoreError("USER_NOT_FOUND", `no user "${username}"`);
  if (user.kind === "service") throw serviceAccountRefused(username);
  return user;
}

/** Runs `work` on the person named `name`, refusing a service account first. */
function personOnly<P extends { name: string } | string, T>(work: (runtime: Runtime, input: P) => Promise<T>) {
  return async (runtime: Runtime, input: P): Promise<T> => {
    await assertNotService(runtime.database.db, typeof input === "string" ? input : input.name);
    return work(runtime, input);
  };
}

const PASSWORD_FLAGS = { password: "string", "password-stdin": "boolean" } as const;

/** What the user-management commands name: a user or a group. */
const holder = firstPositional;

const userCreate = defineStoreSubcommand({
  usage: "user create <username> --password <pw> [--email <e>] [--staff] [--superuser]",
  summary: "create an active user (--superuser implies --staff; --password-stdin reads the password from stdin)",
  flags: { ...PASSWORD_FLAGS, email: "string", staff: "boolean", superuser: "boolean" },
  positionals: { min: 1, max: 1, names: "<username>" },
  async prepare({ positionals: [username], flags }) {
    assertValidUsername(username!);
    const password = await passwordFrom(flags);
    const isSuperuser = flags.superuser === true;
    // As Django's createsuperuser: a superuser who cannot reach the admin
    // side (is_staff) is never what anyone meant.
    if (isSuperuser && flags.staff === false) throw new UsageError("--superuser implies --staff; drop --staff=false");
    return {
      username: username!,
      password,
      email: flags.email,
      isStaff: isSuperuser || flags.staff === true,
      isSuperuser,
    };
  },
  async work(runtime, { password, ...input }) {
    return createUser(runtime.database.db, { ...input, passwordHash: await runtime.passwordHasher.hash(password) });
  },
  report(user) {
    const role = user.isSuperuser ? " (superuser)" : user.isStaff ? " (staff)" : "";
    return `created user "${user.username}" with id ${user.id}${role}`;
  },
  audit: (user) => ({
    type: "user.created",
    subject: `user:${user.username}`,
    detail: { id: user.id, isStaff: user.isStaff, isSuperuser: user.isSuperuser, email: user.email },
  }),
});

const userGrant = defineStoreSubcommand({
  usage: "user grant <username> <permission>...",
  summary: "grant app_label.codename permissions directly to a user (all or nothing)",
  positionals: { min: 2, max: Infinity, names: "<username> <permission>..." },
  prepare: holderAndPermissions,
  work: personOnly((runtime, { name, perms }) => grantUserPermissions(runtime.database.db, name, perms)),
  report: (_, { name, perms }) => `granted ${perms.join(", ")} to user "${name}"`,
  audit: (_, { name, perms }) => ({
    type: "permission.granted",
    subject: `user:${name}`,
    detail: { permissions: perms },
  }),
});

const userRevoke = defineStoreSubcommand({
  usage: "user revoke <username> <permission>...",
  summary: "remove direct grants from a user (grants through groups stay)",
  positionals: { min: 2, max: Infinity, names: "<username> <permission>..." },
  prepare: holderAndPermissions,
  work: personOnly<{ name: string; perms: string[] }, number>((runtime, { name, perms }) =>
    revokeUserPermissions(runtime.database.db, name, perms),
  ),
  report: (removed, { name }) => `revoked ${removed} direct grant${removed === 1 ? "" : "s"} from user "${name}"`,
  audit: (removed, { name, perms }) => ({
    type: "permission.revoked",
    subject: `user:${name}`,
    detail: { permissions: perms, removed },
  }),
});

const userDeactivate = defineStoreSubcommand({
  usage: "user deactivate <username>",
  summary: "disable a user and end all their sessions (access and refresh tokens stop working)",
  positionals: { min: 1, max: 1, names: "<username>" },
  prepare: holder,
  // One transaction inside: never an inactive user with live refresh tokens.
  work: personOnly<string, unknown>((runtime, username) => deactivateUser(runtime.database, username)),
  report: (_, username) => `deactivated user "${username}" and revoked their sessions`,
  audit: (_, username) => ({
    type: "user.deactivated",
    subject: `user:${username}`,
    detail: { sessionsRevoked: true },
  }),
});

const userActivate = defineStoreSubcommand({
  usage: "user activate <username>",
  summary: "enable a deactivated user again (tokens issued before stay dead: they log in anew)",
  positionals: { min: 1, max: 1, names: "<username>" },
  prepare: holder,
  work: personOnly<string, unknown>((runtime, username) => setUserActive(runtime.database.db, username, true)),
  report: (_, username) => `activated user "${username}"`,
  audit: (_, username) => ({ type: "user.activated", subject: `user:${username}` }),
});

const userDelete = defineStoreSubcommand({
  usage: "user delete <username>",
  summary: "delete a user with their grants, memberships and tokens",
  positionals: { min: 1, max: 1, names: "<username>" },
  prepare: holder,
  work: personOnly((runtime, username) => deleteUser(runtime.database.db, username)),
  report: (_, username) => `deleted user "${username}"`,
  audit: (_, username) => ({ type: "user.deleted", subject: `user:${username}` }),
});

const userSetPassword = defineStoreSubcommand({
  usage: "user set-password <username> --password <pw>",
  summary: "set a new password and end all the user's sessions (--password-stdin reads it from stdin)",
  flags: PASSWORD_FLAGS,
  positionals: { min: 1, max: 1, names: "<username>" },
  async prepare({ positionals: [username], flags }) {
    return { username: username!, password: await passwordFrom(flags) };
  },
  async work(runtime, { username, password }) {
    const user = await requireUser(runtime.database.db, username);
    // Hashes, then stores the hash and ends the sessions in one transaction.
    await changePassword(runtime.database, user.id, password, runtime.passwordHasher);
  },
  report: (_, { username }) => `changed the password of user "${username}" and revoked their sessions`,
  // Never the password: only that it changed.
  audit: (_, { username }) => ({
    type: "password.changed",
    subject: `user:${username}`,
    detail: { sessionsRevoked: true },
  }),
});

/** The `user` subcommands, in the order the usage lists them. */
export const userSubcommands = {
  ...userReadSubcommands,
  create: userCreate,
  grant: userGrant,
  revoke: userRevoke,
  deactivate: userDeactivate,
  activate: userActivate,
  delete: userDelete,
  "set-password": userSetPassword,
  link: userLink,
  unlink: userUnlink,
};

const groupCreate = defineStoreSubcommand({
  usage: "group create <name>",
  summary: "create a group",
  positionals: { min: 1, max: 1, names: "<name>" },
  prepare: holder,
  work: (runtime, name) => createGroup(runtime.database.db, name),
  report: (group) => `created group "${group.name}" with id ${group.id}`,
  audit: (group) => ({ type: "group.created", subject: `group:${group.name}`, detail: { id: group.id } }),
});

const groupGrant = defineStoreSubcommand({
  usage: "group grant <group> <permission>...",
  summary: "grant permissions to a group (all or nothing)",
  positionals: { min: 2, max: Infinity, names: "<group> <permission>..." },
  prepare: holderAndPermissions,
  work: (runtime, { name, perms }) => grantGroupPermissions(runtime.database.db, name, perms),
  report: (_, { name, perms }) => `granted ${perms.join(", ")} to group "${name}"`,
  audit: (_, { name, perms }) => ({
    type: "permission.granted",
    subject: `group:${name}`,
    detail: { permissions: perms },
  }),
});

const groupAdd = defineStoreSubcommand({
  usage: "group add <group> <username>...",
  summary: "add users to a group (nobody is added if any username is unknown)",
  positionals: { min: 2, max: Infinity, names: "<group> <username>..." },
  prepare: ({ positionals: [group, ...usernames] }) => ({ group: group!, usernames }),
  work: (runtime, { group, usernames }) => addUsersToGroup(runtime.database.db, group, usernames),
  report: (_, { group, usernames }) => `added ${usernames.map((u) => `"${u}"`).join(", ")} to group "${group}"`,
  audit: (_, { group, usernames }) => ({
    type: "group.members_added",
    subject: `group:${group}`,
    detail: { usernames },
  }),
});

const groupRevoke = defineStoreSubcommand({
  usage: "group revoke <group> <permission>...",
  summary: "remove permissions from a group (its members lose what only the group gave them)",
  positionals: { min: 2, max: Infinity, names: "<group> <permission>..." },
  prepare: holderAndPermissions,
  work: (runtime, { name, perms }) => revokeGroupPermissions(runtime.database.db, name, perms),
  report: (removed, { name }) => `revoked ${removed} grant${removed === 1 ? "" : "s"} from group "${name}"`,
  audit: (removed, { name, perms }) => ({
    type: "permission.revoked",
    subject: `group:${name}`,
    detail: { permissions: perms, removed },
  }),
});

const groupRemove = defineStoreSubcommand({
  usage: "group remove <group> <username>...",
  summary: "remove users from a group (nobody is removed if any username is unknown)",
  positionals: { min: 2, max: Infinity, names: "<group> <username>..." },
  prepare: ({ positionals: [group, ...usernames] }) => ({ group: group!, usernames }),
  work: (runtime, { group, usernames }) => removeUsersFromGroup(runtime.database.db, group, usernames),
  report: (removed, { group }) => `removed ${removed} member${removed === 1 ? "" : "s"} from group "${group}"`,
  audit: (removed, { group, usernames }) => ({
    type: "group.members_removed",
    subject: `group:${group}`,
    detail: { usernames, removed },
  }),
});

const groupDelete = defineStoreSubcommand({
  usage: "group delete <group>",
  summary: "delete a group with its memberships and grants",
  positionals: { min: 1, max: 1, names: "<group>" },
  prepare: holder,
  work: (runtime, name) => deleteGroup(runtime.database.db, name),
  report: (_, name) => `deleted group "${name}"`,
  audit: (_, name) => ({ type: "group.deleted", subject: `group:${name}` }),
});

/** The `group` subcommands. */
export const groupSubcommands = {
  ...groupReadSubcommands,
  create: groupCreate,
  grant: groupGrant,
  add: groupAdd,
  revoke: groupRevoke,
  remove: groupRemove,
  delete: groupDelete,
};

/**
 * Refuses an inactive account, for commands that hand out credentials.
 *
 * @throws {CliError}
 */
export function assertActive(user: PublicUser): void {
  if (!user.isActive) throw new CliError(`user "${user.username}" is inactive`);
}
