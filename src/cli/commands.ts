/**
 * The `protoguard` command table and its runner: picks the command, prints
 * usage, and turns every failure into one `protoguard: <message>` line and
 * an exit code (0 ok, 1 failure, 2 usage).
 *
 * `serve` and `policy` live in their own modules, loaded on demand by a
 * computed specifier: admin commands then never load the server stack, and
 * this file does not depend on those modules at compile time.
 */
import { defineSubcommand, commandGroup, type Subcommand } from "./args.js";
import { apiKeySubcommands } from "./api-keys.js";
import { totpSubcommands, keysSubcommands, tokenSubcommand } from "./credentials.js";
import {
  PROGRAM,
  databaseEndpoint,
  describeError,
  withRuntime,
  type CliIo,
  type CliOptions,
  type Command,
} from "./io.js";
import { EXIT_OK, EXIT_USAGE, UsageError } from "./errors.js";
import { auditSubcommands } from "./audit.js";
import { importSubcommands } from "./import-django.js";
import { initSubcommand } from "./init.js";
import { secretSubcommand } from "./secret.js";
import { serviceSubcommands } from "./services.js";
import { groupSubcommands, userSubcommands } from "./users.js";
import { permissionSubcommands, sessionSubcommands } from "./directory.js";

const migrate = defineSubcommand({
  usage: "migrate",
  summary: "create or upgrade the database schema (every other command does this too)",
  flags: {},
  positionals: { min: 0, max: 0, names: "no arguments" },
  async run(_args, env, io) {
    // Opening the runtime applies pending migrations; nothing else to do.
    const where = await withRuntime(env, io, async ({ config }) =>
      config.databaseUrl === undefined
        ? `PGlite in ${config.dataDir}`
        : `PostgreSQL at ${databaseEndpoint(config.databaseUrl)}`,
    );
    io.out(`database is up to date (${where})`);
    return EXIT_OK;
  },
});

/** A command of the table: how to run it and the usage lines it contributes. */
export interface CommandEntry {
  readonly run: Command;
  readonly usages: readonly Pick<Subcommand, "usage" | "summary">[];
}

/** A command implemented in another module of this directory, loaded when used. */
interface ExternalCommand {
  /** Specifier relative to this file. */
  readonly module: string;
  /** Name of the exported {@link Command}. */
  readonly exportName: string;
  readonly usage: string;
  readonly summary: string;
}

const EXTERNAL_COMMANDS: Readonly<Record<string, ExternalCommand>> = {
  serve: {
    module: "./serve.js",
    exportName: "serveCommand",
    usage: "serve [--routes MODULE] [--port N] [--workers N|auto]",
    summary: "run the Connect-RPC server configured by the environment",
  },
  policy: {
    module: "./policy.js",
    exportName: "policyCommand",
    usage:
      "policy [--image FILE [--include-protoguard] | --routes MODULE] [--check] [--format table|markdown|json|openapi]",
    summary: "list every served method with its rule and where the rule comes from",
  },
  "who-can": {
    module: "./who-can.js",
    exportName: "whoCanCommand",
    usage: "who-can <method> [--image FILE | --routes MODULE] [--json]",
    summary: "list the users, groups and service accounts whose grants satisfy a method's rule",
  },
};

function group(name: string, subcommands: Readonly<Record<string, Subcommand>>): CommandEntry {
  return { run: commandGroup(name, subcommands), usages: Object.values(subcommands) };
}

/**
 * The built-in commands by name, in the order the usage lists them. `serve`
 * and `policy` are not here: see {@link runCli}.
 */
const COMMANDS: Readonly<Record<string, CommandEntry>> = {
  init: { run: initSubcommand.run, usages: [initSubcommand] },
  migrate: { run: migrate.run, usages: [migrate] },
  user: group("user", userSubcommands),
  group: group("group", groupSubcommands),
  permission: group("permission", permissionSubcommands),
  session: group("session", sessionSubcommands),
  service: group("service", serviceSubcommands),
  apikey: group("apikey", apiKeySubcommands),
  token: { run: tokenSubcommand.run, usages: [tokenSubcommand] },
  otp: group("otp", totpSubcommands),
  keys: group("keys", keysSubcommands),
  secret: { run: secretSubcommand.run, usages: [secretSubcommand] },
  import: group("import", importSubcommands),
  audit: group("audit", auditSubcommands),
};

/** Every line of `protoguard --help`. */
function usageLines(): string[] {
  const lines = [`usage: ${PROGRAM} <command> [arguments]`, "", "commands:"];
  const entries = [
    ...Object.values(COMMANDS).flatMap((entry) => entry.usages),
    ...Object.values(EXTERNAL_COMMANDS),
    { usage: "help [<command>]", summary: "show this help, or a command's" },
  ];
  for (const { usage, summary } of entries) lines.push(`  ${usage}`, `      ${summary}`);
  lines.push(
    "",
    "Configured by the environment: DATABASE_URL (PostgreSQL; without it, PGlite in",
    "PROTOGUARD_DATA_DIR, default .protoguard), PROTOGUARD_JWT_ALGORITHM, PROTOGUARD_JWT_SECRET,",
    "PROTOGUARD_JWT_PRIVATE_KEY, PROTOGUARD_JWT_PUBLIC_KEY, PROTOGUARD_SCRYPT_LOG_N, ...",
    "Exit status: 0 done, 1 failed, 2 bad command line.",
  );
  return lines;
}

/**
 * Loads `serve` or `policy`. `undefined` when the module (or its export) is
 * absent, so a build without it says "unknown command" instead of crashing;
 * a module that exists but fails to load is a real error and propagates.
 */
async function loadExternal(command: ExternalCommand): Promise<Command | undefined> {
  const specifier: string = command.module;
  let loaded: Record<string, unknown>;
  try {
    loaded = (await import(specifier)) as Record<string, unknown>;
  } catch (error) {
    // Only the module itself being absent means "not in this build". A
    // module that is there but imports something missing names that other
    // URL and is a real error. Extensions are compared loosely: tsx maps
    // ./serve.js to serve.ts.
    const { code, url } = error as { code?: unknown; url?: unknown };
    const withoutExtension = (href: string) => href.replace(/\.[cm]?[jt]s$/, "");
    const target = withoutExtension(new URL(specifier, import.meta.url).href);
    if (code === "ERR_MODULE_NOT_FOUND" && typeof url === "string" && withoutExtension(url) === target)
      return undefined;
    throw error;
  }
  const run = loaded[command.exportName];
  return typeof run === "function" ? (run as Command) : undefined;
}

async function findCommand(name: string): Promise<Command | undefined> {
  if (Object.hasOwn(COMMANDS, name)) return COMMANDS[name]!.run;
  if (Object.hasOwn(EXTERNAL_COMMANDS, name)) return loadExternal(EXTERNAL_COMMANDS[name]!);
  return undefined;
}

/**
 * Runs one `protoguard` invocation: `argv` without the node and script
 * paths. Never throws; every failure becomes one stderr line.
 *
 * @returns the process exit code.
 */
export async function runCli(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  io: CliIo,
  options: CliOptions = {},
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    const topic = name === "help" ? rest[0] : undefined;
    if (topic === undefined) {
      for (const line of usageLines()) io.out(line);
      return EXIT_OK;
    }
    return runCli([topic, "--help"], env, io, options);
  }
  try {
    const command = await findCommand(name);
    if (command === undefined) {
      for (const line of usageLines()) io.err(line);
      io.err(`${PROGRAM}: unknown command ${JSON.stringify(name)}`);
      return EXIT_USAGE;
    }
    return await command(rest, env, io, options);
  } catch (error) {
    const { message, exitCode } = describeError(error, env["DATABASE_URL"]?.trim() || undefined);
    const command = error instanceof UsageError ? (error.command ?? name) : name;
    const hint = exitCode === EXIT_USAGE ? ` (see "${PROGRAM} ${command} --help")` : "";
    io.err(`${PROGRAM}: ${message}${hint}`);
    return exitCode;
  }
}
