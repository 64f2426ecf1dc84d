/** How the CLI fails: exit codes, and the errors whose message is fit for the user as it is. */
import { ProtoguardError } from "../errors.js";

/** Exit codes, as most Unix tools use them. */
export const EXIT_OK = 0;
/** Something went wrong while doing what was asked. */
export const EXIT_FAILURE = 1;
/** The command line itself is wrong; nothing was attempted. */
export const EXIT_USAGE = 2;

/**
 * An expected failure whose message is already fit for the user: printed as
 * is, exit code {@link EXIT_FAILURE}.
 */
export class CliError extends ProtoguardError<"CLI_FAILED" | "CLI_USAGE"> {
  constructor(message: string, options?: ErrorOptions & { code?: "CLI_FAILED" | "CLI_USAGE" }) {
    super(options?.code ?? "CLI_FAILED", message, options);
  }
}

/**
 * The command line is malformed (unknown flag, missing argument, bad flag
 * value). Exit code {@link EXIT_USAGE}; the message should point at the fix.
 */
export class UsageError extends CliError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, { ...options, code: "CLI_USAGE" });
  }
  /**
   * The command whose `--help` explains the fix (`user create`), set by the
   * innermost command that knows it; the runner falls back to the top name.
   */
  command: string | undefined;
}
