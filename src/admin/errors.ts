/**
 * AdminService's errors: the refusals the CLI prints (a StoreError's one-line message), as the
 * Connect codes a client can act on, with the store's code as the ErrorInfo reason.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { ApiKeyError, type ApiKeyErrorCode } from "../lifecycle/api-keys.js";
import { PasswordBusyError } from "../lifecycle/passwords.js";
import { ERROR_DOMAIN } from "../reasons.js";
import { StoreError, type StoreErrorCode } from "../store/errors.js";

/** The Connect code of each store refusal an admin call can meet. */
const STORE_CODES: Readonly<Record<StoreErrorCode, Code>> = {
  USER_NOT_FOUND: Code.NotFound,
  GROUP_NOT_FOUND: Code.NotFound,
  SERVICE_NOT_FOUND: Code.NotFound,
  SESSION_NOT_FOUND: Code.NotFound,
  DUPLICATE_USERNAME: Code.AlreadyExists,
  DUPLICATE_GROUP: Code.AlreadyExists,
  DUPLICATE_IDENTITY: Code.AlreadyExists,
  DUPLICATE_LINK: Code.AlreadyExists,
  INVALID_PERMISSION: Code.InvalidArgument,
  INVALID_INPUT: Code.InvalidArgument,
  IDENTITY_UNLINKED: Code.FailedPrecondition,
  // The store cannot do its work: the client should retry, not change its request.
  DATA_DIR_LOCKED: Code.Unavailable,
  DATA_DIR_AMBIGUOUS: Code.Unavailable,
  SOURCE_UNAVAILABLE: Code.Unavailable,
  NOTIFICATIONS_UNAVAILABLE: Code.Unavailable,
};

/** The Connect code of each refusal of an API key's minting. */
const API_KEY_CODES: Readonly<Record<ApiKeyErrorCode, Code>> = {
  INVALID_SCOPE: Code.InvalidArgument,
  INVALID_LIFETIME: Code.InvalidArgument,
  // The request is well formed; the owner's state does not allow it.
  SCOPE_NOT_HELD: Code.FailedPrecondition,
  OWNER_INACTIVE: Code.FailedPrecondition,
  TOO_MANY_KEYS: Code.FailedPrecondition,
};

/** What a caller is told when the database fails: the cause stays in the server's logs. */
export const ADMIN_BACKEND_UNAVAILABLE = "the user database is unavailable, try again later";

/**
 * A ConnectError with `reason` (a store code, or one of AdminService's own: `NOT_SUPERUSER`,
 * `NOT_FOUND`, `INVALID_ARGUMENT`) in an ErrorInfo of protoguard's domain.
 */
export function adminError(message: string, code: Code, reason: string, cause?: unknown): ConnectError {
  const info = create(ErrorInfoSchema, { reason, domain: ERROR_DOMAIN });
  return new ConnectError(message, code, undefined, [{ desc: ErrorInfoSchema, value: info }], cause);
}

/** INVALID_ARGUMENT for a request the handler refuses before asking the store. */
export function invalidArgument(message: string): ConnectError {
  return adminError(message, Code.InvalidArgument, "INVALID_INPUT");
}

/**
 * Turns what a handler threw into what the client receives: a StoreError keeps its message
 * under the code of {@link STORE_CODES}; a full password hasher is RESOURCE_EXHAUSTED; a
 * refused API key its code's; a RangeError (a password too long for the hasher) INVALID_ARGUMENT; anything else (the
 * database down, a bug) UNAVAILABLE with a generic message, the error kept as `cause` (Connect
 * never sends it).
 */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof StoreError) return adminError(error.message, STORE_CODES[error.code], error.code, error);
  if (error instanceof ApiKeyError) return adminError(error.message, API_KEY_CODES[error.code], error.code, error);
  if (error instanceof PasswordBusyError) {
    return adminError("too many password operations in progress, try again later", Code.ResourceExhausted, error.code);
  }
  if (error instanceof RangeError) return adminError(error.message, Code.InvalidArgument, "INVALID_INPUT", error);
  return adminError(ADMIN_BACKEND_UNAVAILABLE, Code.Unavailable, "AUTH_BACKEND_UNAVAILABLE", error);
}

/** Runs a handler body, answering every failure through {@link toConnectError}. */
export async function answer<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw toConnectError(error);
  }
}
