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
import { isPermissionString } from "../permission.js";
import type { DrizzleDb } from "../store/database.js";
import { StoreError } from "../store/errors.js";
import type { User } from "../store/schema.js";
import {
  addUsersToGroup,
  assertValidUsername,
  createGroup,
  createUser,
  deleteUser,
  findUserByUsername,
  grantGroupPermissions,
  grantUserPermissions,
  revokeUserPermissions,
} from "../store/users.js";
import { defineSubcommand } from "./args.js";
import { CliError, EXIT_OK, UsageError, withRuntime } from "./io.js";

/**
 * Refuses malformed permission strings up front, naming all of them, so
 * the command fails in milliseconds instead of after starting the
 * database. The store checks again inside its transaction.
 */
function assertPermissions(perms: readonly string[]): void {
  const bad = perms.filter((perm) => !isPermissionString(perm));
  if (bad.length > 0) {
    throw new StoreError(
      "INVALID_PERMISSION",
      `invalid permission ${bad.map((b) => JSON.stringify(b)).join(", ")}: expected app_label.codename`,
    );
  }
}

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
 * The user named `username`.
 *
 * @throws {StoreError} `USER_NOT_FOUND`.
 */
export async function requireUser(db: DrizzleDb, username: string): Promise<User> {
  const user = await findUserByUsername(db, username);
  if (user === undefined) throw new StoreError("USER_NOT_FOUND", `no user "${username}"`);
  return user;
}

const PASSWORD_FLAGS = { password: "string", "password-stdin": "boolean" } as const;

const userCreate = defineSubcommand({
  usage: "user create <username> --password <pw> [--email <e>] [--staff] [--superuser]",
  summary: "create an active user (--superuser implies --staff; --password-stdin reads the password from stdin)",
  flags: { ...PASSWORD_FLAGS, email: "string", staff: "boolean", superuser: "boolean" },
  positionals: { min: 1, max: 1, names: "<username>" },
  async run({ positionals: [username], flags }, env, io) {
    assertValidUsername(username!);
    const password = await passwordFrom(flags);
    const isSuperuser = flags.superuser === true;
    // As Django's createsuperuser: a superuser who cannot reach the admin
    // side (is_staff) is never what anyone meant.
    if (isSuperuser && flags.staff === false) throw new UsageError("--superuser implies --staff; drop --staff=false");
    const isStaff = isSuperuser || flags.staff === true;
    const user = await withRuntime(env, io, async (runtime) =>
      createUser(runtime.database.db, {
        username: username!,
        passwordHash: await runtime.passwordHasher.hash(password),
        ...(flags.email !== undefined && { email: flags.email }),
        isStaff,
        isSuperuser,
      }),
    );
    const role = user.isSuperuser ? " (superuser)" : user.isStaff ? " (staff)" : "";
    io.out(`created user "${user.username}" with id ${user.id}${role}`);
    return EXIT_OK;
  },
});

const userGrant = defineSubcommand({
  usage: "user grant <username> <permission>...",
  summary: "grant app_label.codename permissions directly to a user (all or nothing)",
  flags: {},
  positionals: { min: 2, max: Infinity, names: "<username> <permission>..." },
  async run({ positionals: [username, ...perms] }, env, io) {
    assertPermissions(perms);
    await withRuntime(env, io, (runtime) => grantUserPermissions(runtime.database.db, username!, perms));
    io.out(`granted ${perms.join(", ")} to user "${username}"`);
    return EXIT_OK;
  },
});

const userRevoke = defineSubcommand({
  usage: "user revoke <username> <permission>...",
  summary: "remove direct grants from a user (grants through groups stay)",
  flags: {},
  positionals: { min: 2, max: Infinity, names: "<username> <permission>..." },
  async run({ positionals: [username, ...perms] }, env, io) {
    assertPermissions(perms);
    const removed = await withRuntime(env, io, (runtime) =>
      revokeUserPermissions(runtime.database.db, username!, perms),
    );
    io.out(`revoked ${removed} direct grant${removed === 1 ? "" : "s"} from user "${username}"`);
    return EXIT_OK;
  },
});

const userDeactivate = defineSubcommand({
  usage: "user deactivate <username>",
  summary: "disable a user and end all their sessions (access and refresh tokens stop working)",
  flags: {},
  positionals: { min: 1, max: 1, names: "<username>" },
  async run({ positionals: [username] }, env, io) {
    // One transaction inside: never an inactive user with live refresh tokens.
    await withRuntime(env, io, (runtime) => deactivateUser(runtime.database, username!));
    io.out(`deactivated user "${username}" and revoked their sessions`);
    return EXIT_OK;
  },
});

const userDelete = defineSubcommand({
  usage: "user delete <username>",
  summary: "delete a user with their grants, memberships and tokens",
  flags: {},
  positionals: { min: 1, max: 1, names: "<username>" },
  async run({ positionals: [username] }, env, io) {
    await withRuntime(env, io, (runtime) => deleteUser(runtime.database.db, username!));
    io.out(`deleted user "${username}"`);
    return EXIT_OK;
  },
});

const userSetPassword = defineSubcommand({
  usage: "user set-password <username> --password <pw>",
  summary: "set a new password and end all the user's sessions (--password-stdin reads it from stdin)",
  flags: PASSWORD_FLAGS,
  positionals: { min: 1, max: 1, names: "<username>" },
  async run({ positionals: [username], flags }, env, io) {
    const password = await passwordFrom(flags);
    await withRuntime(env, io, async (runtime) => {
      const user = await requireUser(runtime.database.db, username!);
      // Hashes, then stores the hash and ends the sessions in one transaction.
      await changePassword(runtime.database, user.id, password, runtime.passwordHasher);
    });
    io.out(`changed the password of user "${username}" and revoked their sessions`);
    return EXIT_OK;
  },
});

/** The `user` subcommands, in the order the usage lists them. */
export const userSubcommands = {
  create: userCreate,
  grant: userGrant,
  revoke: userRevoke,
  deactivate: userDeactivate,
  delete: userDelete,
  "set-password": userSetPassword,
};

const groupCreate = defineSubcommand({
  usage: "group create <name>",
  summary: "create a group",
  flags: {},
  positionals: { min: 1, max: 1, names: "<name>" },
  async run({ positionals: [name] }, env, io) {
    const group = await withRuntime(env, io, (runtime) => createGroup(runtime.database.db, name!));
    io.out(`created group "${group.name}" with id ${group.id}`);
    return EXIT_OK;
  },
});

const groupGrant = defineSubcommand({
  usage: "group grant <group> <permission>...",
  summary: "grant permissions to a group (all or nothing)",
  flags: {},
  positionals: { min: 2, max: Infinity, names: "<group> <permission>..." },
  async run({ positionals: [group, ...perms] }, env, io) {
    assertPermissions(perms);
    await withRuntime(env, io, (runtime) => grantGroupPermissions(runtime.database.db, group!, perms));
    io.out(`granted ${perms.join(", ")} to group "${group}"`);
    return EXIT_OK;
  },
});

const groupAdd = defineSubcommand({
  usage: "group add <group> <username>...",
  summary: "add users to a group (nobody is added if any username is unknown)",
  flags: {},
  positionals: { min: 2, max: Infinity, names: "<group> <username>..." },
  async run({ positionals: [group, ...usernames] }, env, io) {
    await withRuntime(env, io, (runtime) => addUsersToGroup(runtime.database.db, group!, usernames));
    io.out(`added ${usernames.map((u) => `"${u}"`).join(", ")} to group "${group}"`);
    return EXIT_OK;
  },
});

/** The `group` subcommands. */
export const groupSubcommands = {
  create: groupCreate,
  grant: groupGrant,
  add: groupAdd,
};

/**
 * Refuses an inactive account, for commands that hand out credentials.
 *
 * @throws {CliError}
 */
export function assertActive(user: User): void {
  if (!user.isActive) throw new CliError(`user "${user.username}" is inactive`);
}
