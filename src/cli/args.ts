/**
 * A small, strict command-line parser: `--name value`, `--name=value`,
 * boolean `--flag`, positional arguments, `--` to end the flags. Strict
 * because the CLI writes to the user store: a misspelled `--superuser`
 * must stop the command, not be ignored or read as a username.
 */
import type { Runtime } from "../runtime/runtime.js";
import { assertValidPermissions } from "../store/users.js";
import { PROGRAM, withRuntime, type CliIo, type Command } from "./io.js";
import { EXIT_OK, UsageError } from "./errors.js";
import { runAudited, type CliAuditEvent } from "./audit-record.js";

/** How a flag takes its value; `strings` may be given more than once (`--scope a.b --scope c.d`). */
export type FlagKind = "string" | "strings" | "boolean";

/** The flags a command accepts, by name without the leading `--`. */
export type FlagSpec = Readonly<Record<string, FlagKind>>;

/** Parsed flag values: absent flags are `undefined`. */
export type ParsedFlags<S extends FlagSpec> = {
  -readonly [K in keyof S]?: S[K] extends "string" ? string : S[K] extends "strings" ? string[] : boolean;
};

/** What {@link parseArgs} returns. */
export interface ParsedArgs<S extends FlagSpec> {
  /** Arguments that are not flags, in order. */
  positionals: string[];
  flags: ParsedFlags<S>;
  /** `--help` or `-h` appeared (before `--`): print the usage and do nothing else. */
  help: boolean;
}

const BOOLEAN_VALUES: Readonly<Record<string, boolean>> = { true: true, false: false };

/**
 * Parses `argv` against `spec`.
 *
 * - A string flag takes the next argument or the text after `=`. The next
 *   argument is taken even if it starts with `-` (passwords may), unless it
 *   is itself a flag of this command: `--password --staff` is far more
 *   likely a forgotten value than a password, so it is refused
 *   (`--password=--staff` still works).
 * - A boolean flag takes no value, or exactly `=true` / `=false`.
 * - A flag given twice is refused rather than silently last-wins, except a
 *   `strings` flag, which collects every value in order.
 *
 * @throws {UsageError} for an unknown, repeated or incomplete flag.
 */
export function parseArgs<S extends FlagSpec>(argv: readonly string[], spec: S): ParsedArgs<S> {
  const positionals: string[] = [];
  // Null prototype: flag names come from the command line.
  const flags = Object.create(null) as Record<string, string | string[] | boolean>;
  let help = false;
  const kindOf = (name: string): FlagKind | undefined => (Object.hasOwn(spec, name) ? spec[name] : undefined);

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === "--help" || arg === "-h") {
      help = true;
      continue;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    if (!arg.startsWith("--")) throw new UsageError(`unknown option ${JSON.stringify(arg)}`);
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const inline = eq === -1 ? undefined : arg.slice(eq + 1);
    const kind = kindOf(name);
    if (kind === undefined) throw new UsageError(`unknown option --${name}`);
    if (name in flags && kind !== "strings") throw new UsageError(`--${name} given more than once`);

    if (kind === "boolean") {
      if (inline === undefined) {
        flags[name] = true;
      } else if (Object.hasOwn(BOOLEAN_VALUES, inline)) {
        flags[name] = BOOLEAN_VALUES[inline]!;
      } else {
        throw new UsageError(`--${name} takes no value (or =true / =false), got ${JSON.stringify(inline)}`);
      }
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith("--") && kindOf(next.slice(2).split("=")[0]!) !== undefined)) {
        throw new UsageError(`--${name} needs a value`);
      }
      value = next;
      i++;
    }
    if (kind === "strings") ((flags[name] as string[] | undefined) ?? (flags[name] = [])).push(value);
    else flags[name] = value;
  }
  return { positionals, flags: flags as ParsedFlags<S>, help };
}

/**
 * Checks the number of positional arguments.
 *
 * @param names what the positionals are, for the message (e.g. `"<username>"`).
 * @throws {UsageError} when there are fewer than `min` or more than `max`.
 */
export function expectPositionals(positionals: readonly string[], min: number, max: number, names: string): void {
  if (positionals.length < min) throw new UsageError(`missing ${names}`);
  if (positionals.length > max) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[max])} (expected ${names})`);
  }
}

/** One runnable subcommand with its usage, as a command group lists it. */
export interface Subcommand {
  /** The synopsis after `protoguard `, e.g. `user grant <username> <permission>...`. */
  readonly usage: string;
  /** One line saying what it does. */
  readonly summary: string;
  readonly run: Command;
}

/** Definition of a subcommand for {@link defineSubcommand}. */
export interface SubcommandDefinition<S extends FlagSpec> {
  usage: string;
  summary: string;
  flags: S;
  /** Allowed number of positional arguments, and how to name them in errors. */
  positionals: { min: number; max: number; names: string };
  /** Runs with arguments already parsed and counted. */
  run(args: ParsedArgs<S>, env: NodeJS.ProcessEnv, io: CliIo): Promise<number>;
}

/**
 * Wraps a subcommand so that `--help` prints its usage and a malformed
 * command line fails before `run` touches anything: every usage error is
 * raised before the database is opened.
 */
export function defineSubcommand<S extends FlagSpec>(definition: SubcommandDefinition<S>): Subcommand {
  return {
    usage: definition.usage,
    summary: definition.summary,
    run: async (argv, env, io) => {
      try {
        const parsed = parseArgs(argv, definition.flags);
        if (parsed.help) {
          io.out(`usage: ${PROGRAM} ${definition.usage}`);
          io.out(`  ${definition.summary}`);
          return EXIT_OK;
        }
        const { min, max, names } = definition.positionals;
        expectPositionals(parsed.positionals, min, max, names);
        return await definition.run(parsed, env, io);
      } catch (error) {
        // The command's own words (`user create`), up to its first argument.
        if (error instanceof UsageError) error.command ??= definition.usage.split(/ [<[-]/)[0];
        throw error;
      }
    },
  };
}

/** Definition of a subcommand that does one piece of work in the store, for {@link defineStoreSubcommand}. */
export interface StoreSubcommandDefinition<S extends FlagSpec, P, T> {
  usage: string;
  summary: string;
  /** The flags it accepts. Default: none. */
  flags?: S;
  /** Allowed number of positional arguments, and how to name them in errors. */
  positionals: { min: number; max: number; names: string };
  /**
   * Reads and checks the command line (usage errors, a password from stdin) before the database
   * opens, so a typo fails in milliseconds and leaves the store untouched.
   */
  prepare(args: ParsedArgs<S>): P | Promise<P>;
  /** The work, with the runtime open; closed whatever happens. */
  work(runtime: Runtime, input: P): Promise<T>;
  /** The one line printed on stdout once the work succeeded. */
  report(result: T, input: P): string;
  /** Pass on the development-secret warning (commands that sign tokens). Default false. */
  warnAboutKeys?: boolean;
  /**
   * What the write records in the audit log (actor `cli:<OS user>`). When set, the work runs in
   * one transaction with its audit rows. Every command that writes sets it. Default: none (a read).
   */
  audit?: (result: T, input: P) => CliAuditEvent | readonly CliAuditEvent[] | undefined;
}

/**
 * The shape of every store command (`user ...`, `group ...`, `token`, `otp enable`): check the
 * command line, open the runtime for one piece of work, print one line, exit 0.
 */
export function defineStoreSubcommand<S extends FlagSpec = Record<never, never>, P = void, T = void>(
  definition: StoreSubcommandDefinition<S, P, T>,
): Subcommand {
  const { prepare, work, report } = definition;
  const options = { warnAboutKeys: definition.warnAboutKeys ?? false };
  return defineSubcommand({
    usage: definition.usage,
    summary: definition.summary,
    flags: definition.flags ?? ({} as S),
    positionals: definition.positionals,
    async run(args, env, io) {
      const input = await prepare(args);
      const { audit } = definition;
      const result = await withRuntime(
        env,
        io,
        (runtime) => (audit === undefined ? work(runtime, input) : runAudited(runtime, input, work, audit)),
        options,
      );
      io.out(report(result, input));
      return EXIT_OK;
    },
  });
}

/**
 * A command made of subcommands (`user create`, `user grant`, ...): picks
 * the subcommand from the first argument; with none, or `--help`, lists
 * them.
 */
export function commandGroup(name: string, subcommands: Readonly<Record<string, Subcommand>>): Command {
  const listing = (write: (line: string) => void) => {
    write(`usage: ${PROGRAM} ${name} <subcommand> ...`);
    for (const sub of Object.values(subcommands)) {
      write(`  ${PROGRAM} ${sub.usage}`);
      write(`      ${sub.summary}`);
    }
  };
  return async (argv, env, io) => {
    const [first, ...rest] = argv;
    if (first === "--help" || first === "-h" || first === "help") {
      listing(io.out);
      return EXIT_OK;
    }
    if (first === undefined || !Object.hasOwn(subcommands, first)) {
      listing(io.err);
      throw new UsageError(
        first === undefined ? `${name}: missing subcommand` : `${name}: unknown subcommand ${JSON.stringify(first)}`,
      );
    }
    return subcommands[first]!.run(rest, env, io);
  };
}

/** The first positional: the user, group or service account a subcommand names. */
export const firstPositional = ({ positionals: [first] }: { positionals: string[] }): string => first!;

/**
 * A holder (user, group or service account) and the permissions to grant or revoke. Malformed
 * permission strings are refused up front, naming all of them, so the command fails in
 * milliseconds instead of after starting the database; the store checks again inside its
 * transaction.
 */
export function holderAndPermissions({ positionals: [name, ...perms] }: { positionals: string[] }): {
  name: string;
  perms: string[];
} {
  assertValidPermissions(perms);
  return { name: name!, perms };
}
