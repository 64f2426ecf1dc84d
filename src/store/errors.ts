import { causeChain } from "../util/cause-chain.js";
import { ProtoguardError } from "../errors.js";

/** Machine-readable reasons a store operation refused to do what it was asked. */
export type StoreErrorCode =
  | "USER_NOT_FOUND"
  | "GROUP_NOT_FOUND"
  | "DUPLICATE_USERNAME"
  | "DUPLICATE_GROUP"
  | "INVALID_PERMISSION"
  | "INVALID_INPUT"
  /** No service account of that name (or the name is a person's). */
  | "SERVICE_NOT_FOUND"
  /** A client id or TLS identity already belongs to another service account. */
  | "DUPLICATE_IDENTITY"
  /** An external identity (issuer, subject) is already linked to a user. */
  | "DUPLICATE_LINK"
  /**
   * An external identity (issuer, subject) was unlinked, or its user deleted: it is not
   * provisioned again until an admin links it.
   */
  | "IDENTITY_UNLINKED"
  /** Another process (or this one) has the embedded data directory open. */
  | "DATA_DIR_LOCKED"
  /** The embedded data directory holds two databases, from two older layouts. */
  | "DATA_DIR_AMBIGUOUS"
  /** The database an import reads from (`importFromDjango`) could not be read. */
  | "SOURCE_UNAVAILABLE"
  /**
   * Invalidation notifications sent on the database do not reach the LISTEN connection (LISTEN
   * through a transaction-pooling PgBouncer, or a listen URL on another database).
   */
  | "NOTIFICATIONS_UNAVAILABLE"
  /** No session (refresh-token family) of that id, or it belongs to another user. */
  | "SESSION_NOT_FOUND";

/**
 * An expected, user-facing failure of a store operation (bad input, missing
 * or duplicate row, an embedded data directory in use). The message is one line meant for a CLI or an admin;
 * anything else the database throws (connection loss, bugs) is left as is so
 * callers can tell "you asked for something wrong" from "the store is down".
 */
export class StoreError extends ProtoguardError<StoreErrorCode> {}

/** PostgreSQL SQLSTATE for unique_violation. */
const UNIQUE_VIOLATION = "23505";

/**
 * Whether `error` is PostgreSQL's unique-constraint violation. Drizzle wraps
 * driver errors (DrizzleQueryError) with the driver's error as `cause`, and
 * both postgres.js and PGlite put the SQLSTATE in `code`, so look at the
 * error and its causes.
 */
export function isUniqueViolation(error: unknown): boolean {
  for (const link of causeChain(error)) {
    if (link["code"] === UNIQUE_VIOLATION) return true;
  }
  return false;
}
