/**
 * The one base class of every error protoguard throws: a stable string
 * `code` to branch on (messages are for people and may change), the
 * class name as `name`, and the underlying error as `cause`.
 *
 * @example
 * ```ts
 * import { ProtoguardError } from "protoguard";
 *
 * try {
 *   await startApp();
 * } catch (error) {
 *   if (error instanceof ProtoguardError && error.code === "INVALID_CONFIG") process.exitCode = 2;
 *   else throw error;
 * }
 * declare function startApp(): Promise<void>;
 * ```
 */
export class ProtoguardError<Code extends string = string> extends Error {
  /** Stable machine-readable code; each subclass documents its own. */
  readonly code: Code;

  constructor(code: Code, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    // The subclass's name, without each subclass repeating it (survives minifiers that keep class names).
    this.name = new.target.name;
  }
}
