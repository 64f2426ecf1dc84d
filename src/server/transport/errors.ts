/**
 * The error `listen` (and so `startServer`) rejects with when the port
 * cannot be opened or the TLS material is unusable. Like `KeyConfigError`,
 * it carries a stable string `code`, so callers and tests key off the code,
 * never off the message.
 */
import { ProtoguardError } from "../../errors.js";

/** Why the server could not start listening. Stable API: add, never rename. */
export type ServerErrorCode =
  /** Another process (or server) already listens on the port (EADDRINUSE). */
  | "PORT_IN_USE"
  /** The process may not bind the port, e.g. below 1024 without privileges (EACCES). */
  | "PERMISSION_DENIED"
  /** The host is not an address of this machine (EADDRNOTAVAIL, ENOTFOUND). */
  | "ADDRESS_UNAVAILABLE"
  /** Binding failed for another reason; the cause says which. */
  | "LISTEN_FAILED"
  /** The TLS certificate or key is not PEM text (a file path passed instead of the contents, say). */
  | "TLS_NOT_PEM"
  /** The TLS certificate is PEM but OpenSSL cannot use it. */
  | "TLS_CERT_INVALID"
  /** The TLS private key is PEM but OpenSSL cannot use it (encrypted keys are not supported). */
  | "TLS_KEY_INVALID"
  /** The TLS private key does not belong to the certificate. */
  | "TLS_KEY_MISMATCH"
  /** A worker process of `startServer({ workers })` exited before it listened; the message says why. */
  | "WORKER_FAILED"
  /**
   * `workers` > 1 on the embedded database (PGlite), which one process holds:
   * use PostgreSQL (`DATABASE_URL`) or one worker.
   */
  | "WORKERS_NEED_POSTGRES"
  /**
   * The admin console was turned on (`adminConsole`, `PROTOGUARD_ADMIN_CONSOLE=1`) but its
   * directory holds no built console (`npm run build` writes `dist/console/`).
   */
  | "ADMIN_CONSOLE_NOT_BUILT";

/**
 * Thrown when the server cannot start listening: fix the port, host or TLS
 * material and start again. The system error, when there is one, is the
 * `cause`.
 */
export class ServerError extends ProtoguardError<ServerErrorCode> {}
