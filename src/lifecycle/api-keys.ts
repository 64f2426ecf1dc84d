/**
 * Minting, listing and revoking API keys: the rules both doors share (the
 * CLI's `protoguard apikey …` and AuthService's CreateApiKey, ListApiKeys
 * and RevokeApiKey for a caller's own keys). A key's scopes must each be a
 * permission its owner holds when it is made; at call time the owner's
 * permissions are intersected with them again, so a key never exceeds its
 * owner later either.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { ApiKeySchema, AuthService } from "../../gen/protoguard/v1/auth_pb.js";
import { requirePrincipal } from "../connect/helpers.js";
import { authError } from "../connect/errors.js";
import { generateApiKey } from "../credential/api-key.js";
import { MESSAGES } from "../decide/verdict.js";
import { ProtoguardError } from "../errors.js";
import { isPermissionString } from "../permission.js";
import type { Principal } from "../principal.js";
import { countActiveApiKeys, insertApiKey, listApiKeys, revokeApiKey, type ApiKeyInfo } from "../store/api-keys.js";
import type { Database } from "../store/database-handle.js";
import { StoreError } from "../store/errors.js";
import { loadPrincipal } from "../store/principal-query.js";
import { recordAuditEvent } from "../store/audit.js";
import { auditContextOf } from "./audit.js";

/** Longest lifetime a key may be given: ten years, in seconds. */
export const MAX_API_KEY_LIFETIME_SECONDS = 3650 * 86_400;

/** Most keys in force one owner may hold through AuthService.CreateApiKey (the CLI has no bound). */
export const MAX_API_KEYS_PER_OWNER = 100;

/** Why a key could not be made or revoked. */
export type ApiKeyErrorCode =
  /** A scope is not `app_label.codename`, or is listed twice. */
  | "INVALID_SCOPE"
  /** A scope names a permission the owner does not hold. */
  | "SCOPE_NOT_HELD"
  /** The lifetime is not a duration like `30d`, `720h`, `90m`, `3600s`, or is out of range. */
  | "INVALID_LIFETIME"
  /** The owner does not exist or is deactivated. */
  | "OWNER_INACTIVE"
  /** The owner holds {@link MAX_API_KEYS_PER_OWNER} keys in force already. */
  | "TOO_MANY_KEYS";

/** A refusal of {@link mintApiKey}; `code` says which. */
export class ApiKeyError extends ProtoguardError<ApiKeyErrorCode> {}

const UNITS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400 };

/**
 * Reads a key lifetime: a whole number and a unit, `s`, `m`, `h` or `d`
 * (`30d`, `720h`), at most ten years.
 *
 * @returns the lifetime in seconds.
 * @throws {ApiKeyError} `INVALID_LIFETIME`.
 * @example
 * ```ts
 * parseApiKeyLifetime("30d"); // 2592000
 * ```
 */
export function parseApiKeyLifetime(text: string): number {
  const match = /^(\d{1,10})([smhd])$/.exec(text.trim());
  const seconds = match === null ? Number.NaN : Number(match[1]) * UNITS[match[2]!]!;
  if (!(seconds >= 1 && seconds <= MAX_API_KEY_LIFETIME_SECONDS)) {
    throw new ApiKeyError(
      "INVALID_LIFETIME",
      `a key lifetime is a whole number with s, m, h or d (like 30d), from 1s to 3650d; got ${JSON.stringify(text)}`,
    );
  }
  return seconds;
}

/** What {@link mintApiKey} is asked for. */
export interface MintApiKeyInput {
  /**
   * The owner: a principal already loaded (a caller of AuthService), or a user id, loaded
   * here (the CLI). Must be active.
   */
  owner: Principal | number;
  /** `app_label.codename` permissions, each held by the owner. */
  scopes: readonly string[];
  /** A label. Default `""`. */
  name?: string | undefined;
  /** Lifetime in seconds (see {@link parseApiKeyLifetime}). Default: until revoked. */
  lifetimeSeconds?: number | undefined;
  /** Refuse when the owner holds this many keys in force already. Default: no bound. */
  maxKeysPerOwner?: number | undefined;
  /** Clock, milliseconds. Default `Date.now`. */
  now?: (() => number) | undefined;
}

/** A key just made: `key` is shown once and never again. */
export interface MintedApiKey {
  /** `pgk_<id>_<secret>`. */
  readonly key: string;
  readonly info: ApiKeyInfo;
}

/**
 * Makes a key for `owner` limited to `scopes`. Each scope must be a
 * permission the owner holds now (a superuser: one that exists), so a typo
 * fails here rather than yielding a key that can do nothing.
 *
 * @throws {ApiKeyError} `INVALID_SCOPE`, `SCOPE_NOT_HELD` (naming them), `OWNER_INACTIVE`,
 *   `TOO_MANY_KEYS`.
 * @throws {StoreError} `INVALID_INPUT` for a name over 200 characters.
 * @example
 * ```ts
 * const { key } = await mintApiKey(database, { owner: user.id, scopes: ["shop.view_order"], lifetimeSeconds: 86_400 });
 * ```
 */
export async function mintApiKey(database: Database, input: MintApiKeyInput): Promise<MintedApiKey> {
  const db = database.db;
  const malformed = input.scopes.filter((scope) => !isPermissionString(scope));
  if (malformed.length > 0) {
    throw new ApiKeyError("INVALID_SCOPE", `scopes must be app_label.codename: ${malformed.join(", ")}`);
  }
  if (new Set(input.scopes).size !== input.scopes.length)
    throw new ApiKeyError("INVALID_SCOPE", "a scope is listed twice");
  let owner: Principal;
  if (typeof input.owner === "number") {
    const lookup = await loadPrincipal(db, input.owner);
    if (lookup.status !== "ok") throw new ApiKeyError("OWNER_INACTIVE", "the owner does not exist or is not active");
    owner = lookup.principal;
  } else owner = input.owner;
  const missing = input.scopes.filter((scope) => !owner.permissions.has(scope));
  if (missing.length > 0) {
    throw new ApiKeyError("SCOPE_NOT_HELD", `the owner does not hold ${missing.join(", ")}`);
  }
  const now = new Date((input.now ?? Date.now)());
  if (input.maxKeysPerOwner !== undefined && (await countActiveApiKeys(db, owner.id, now)) >= input.maxKeysPerOwner) {
    throw new ApiKeyError("TOO_MANY_KEYS", `at most ${input.maxKeysPerOwner} keys in force per owner`);
  }
  const expiresAt =
    input.lifetimeSeconds === undefined ? undefined : new Date(now.getTime() + input.lifetimeSeconds * 1000);
  const generated = generateApiKey();
  const info = await insertApiKey(db, {
    id: generated.id,
    ownerId: owner.id,
    secretHash: generated.secretHash,
    scopes: input.scopes,
    name: input.name ?? "",
    expiresAt,
  });
  return { key: generated.key, info };
}

/** Options of {@link createApiKeyRpcs}. */
export interface ApiKeyRpcOptions {
  database: Database;
  /** Clock, milliseconds. Default `Date.now`. */
  now?: (() => number) | undefined;
}

type ApiKeyRpcs = Pick<ServiceImpl<typeof AuthService>, "createApiKey" | "listApiKeys" | "revokeApiKey">;

/**
 * AuthService's CreateApiKey, ListApiKeys and RevokeApiKey, for the caller's
 * own keys. CreateApiKey and RevokeApiKey refuse API keys by rule
 * (`api_keys: false`): only a token from a login mints or revokes keys.
 *
 * - CreateApiKey: a malformed scope or lifetime is INVALID_ARGUMENT; a scope
 *   the caller does not hold is PERMISSION_DENIED `PERMISSION_MISSING`; more
 *   than {@link MAX_API_KEYS_PER_OWNER} keys in force is FAILED_PRECONDITION.
 * - ListApiKeys: the caller's keys not revoked (expired ones included), no secrets.
 * - RevokeApiKey: another owner's or an unknown id is NOT_FOUND; revoking
 *   twice is fine.
 */
export function createApiKeyRpcs(options: ApiKeyRpcOptions): ApiKeyRpcs {
  const { database } = options;
  const now = options.now ?? Date.now;
  return {
    createApiKey: (req, ctx: HandlerContext) =>
      guard(async () => {
        const caller = requirePrincipal(ctx);
        // The rule refuses keys already (`api_keys: false`); kept here too, should a
        // deployment override the rule: a key never mints keys.
        if (caller.apiKey !== undefined) {
          throw authError(MESSAGES.API_KEY_NOT_ALLOWED, Code.Unauthenticated, "API_KEY_NOT_ALLOWED");
        }
        const lifetimeSeconds = req.expiresIn === "" ? undefined : parseApiKeyLifetime(req.expiresIn);
        const context = auditContextOf(ctx);
        // The key and its audit row commit together, or neither does.
        const minted = await database.db.transaction(async (tx) => {
          const made = await mintApiKey(
            { ...database, db: tx },
            {
              owner: caller,
              scopes: req.scopes,
              name: req.name,
              lifetimeSeconds,
              maxKeysPerOwner: MAX_API_KEYS_PER_OWNER,
              now,
            },
          );
          await recordAuditEvent(tx, {
            type: "apikey.created",
            subject: `apikey:${made.info.id}`,
            detail: {
              owner: made.info.owner,
              name: made.info.name,
              scopes: made.info.scopes,
              expiresAt: made.info.expiresAt?.toISOString() ?? null,
            },
            context,
          });
          return made;
        });
        return { key: minted.key, apiKey: apiKeyMessage(minted.info) };
      }),
    listApiKeys: (_req, ctx: HandlerContext) =>
      guard(async () => {
        const caller = requirePrincipal(ctx);
        const keys = await listApiKeys(database.db, caller.id);
        return { apiKeys: keys.filter((key) => key.revokedAt === null).map(apiKeyMessage) };
      }),
    revokeApiKey: (req, ctx: HandlerContext) =>
      guard(async () => {
        const caller = requirePrincipal(ctx);
        const context = auditContextOf(ctx);
        const outcome = await database.db.transaction(async (tx) => {
          const revoked = await revokeApiKey(tx, req.id, new Date(now()), caller.id);
          // Revoking a revoked key changes nothing, so records nothing.
          if (revoked.status === "revoked") {
            await recordAuditEvent(tx, {
              type: "apikey.revoked",
              subject: `apikey:${revoked.key.id}`,
              detail: { owner: revoked.key.owner },
              context,
            });
          }
          return revoked;
        });
        if (outcome.status === "not_found") throw new ConnectError("no such API key", Code.NotFound);
        return {};
      }),
  };
}

/** An API key in auth.proto's `ApiKey` shape: never its secret or hash (the store row has neither). */
export function apiKeyMessage(info: ApiKeyInfo): MessageInitShape<typeof ApiKeySchema> {
  return {
    id: info.id,
    name: info.name,
    scopes: [...info.scopes],
    owner: info.owner,
    createdAt: timestampFromDate(info.createdAt),
    ...(info.expiresAt !== null && { expiresAt: timestampFromDate(info.expiresAt) }),
    ...(info.lastUsedAt !== null && { lastUsedAt: timestampFromDate(info.lastUsedAt) }),
  };
}

/** Maps the refusals to Connect codes; anything unexpected (the database) is UNAVAILABLE. */
async function guard<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof ConnectError) throw error;
    if (error instanceof ApiKeyError) {
      switch (error.code) {
        case "SCOPE_NOT_HELD":
          throw authError(error.message, Code.PermissionDenied, "PERMISSION_MISSING", error);
        case "OWNER_INACTIVE":
          throw authError(MESSAGES.USER_INACTIVE, Code.Unauthenticated, "USER_INACTIVE", error);
        case "TOO_MANY_KEYS":
          throw new ConnectError(error.message, Code.FailedPrecondition, undefined, undefined, error);
        default:
          throw new ConnectError(error.message, Code.InvalidArgument, undefined, undefined, error);
      }
    }
    if (error instanceof StoreError && error.code === "INVALID_INPUT") {
      throw new ConnectError(error.message, Code.InvalidArgument, undefined, undefined, error);
    }
    throw authError(MESSAGES.AUTH_BACKEND_UNAVAILABLE, Code.Unavailable, "AUTH_BACKEND_UNAVAILABLE", error);
  }
}
