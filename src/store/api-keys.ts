/**
 * API keys in the store (`api_keys`): created with the id and the hash of
 * their secret, looked up by id, listed, revoked, and touched (last use,
 * coarse). The secret itself never reaches this module.
 */
import { and, asc, eq, gt, isNull, lt, or, sql } from "drizzle-orm";
import type { DrizzleDb } from "./database-handle.js";
import { StoreError, isUniqueViolation } from "./errors.js";
import { apiKeys, users } from "./schema.js";
import { assertValidPermissions } from "./users.js";

/** Longest accepted key name: the column's size. */
const MAX_NAME_LENGTH = 200;

/** A key as listed: everything but its hash. */
export interface ApiKeyInfo {
  /** The public id (the part between `pgk_` and the secret). */
  readonly id: string;
  /** The owner's `users.id`. */
  readonly ownerId: number;
  /** The owner's username (or service account name). */
  readonly owner: string;
  readonly name: string;
  /** Permissions the key is limited to, sorted. */
  readonly scopes: readonly string[];
  readonly createdAt: Date;
  /** Null when the key does not expire. */
  readonly expiresAt: Date | null;
  /** Null when never used; written at most once a minute. */
  readonly lastUsedAt: Date | null;
  /** Null while the key is in force. */
  readonly revokedAt: Date | null;
}

/** What the decision needs of a key: its owner, hash, scopes and lifetime. */
export interface ApiKeyRecord {
  readonly id: string;
  readonly ownerId: number;
  readonly secretHash: string;
  readonly scopes: readonly string[];
  readonly createdAt: Date;
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
}

/** Fields of {@link insertApiKey}. */
export interface InsertApiKeyInput {
  /** The public id from `generateApiKey`. */
  id: string;
  ownerId: number;
  /** SHA-256 of the secret, hex, from `generateApiKey`. */
  secretHash: string;
  /** `app_label.codename` strings; checked for shape here, against the owner by the caller. */
  scopes: readonly string[];
  /** A label. Default: `""`. */
  name?: string;
  /** Default: never. */
  expiresAt?: Date | undefined;
}

const infoColumns = {
  id: apiKeys.id,
  ownerId: apiKeys.ownerId,
  owner: users.username,
  name: apiKeys.name,
  scopes: apiKeys.scopes,
  createdAt: apiKeys.createdAt,
  expiresAt: apiKeys.expiresAt,
  lastUsedAt: apiKeys.lastUsedAt,
  revokedAt: apiKeys.revokedAt,
};

const sorted = <T extends { scopes: readonly string[] }>(row: T): T => ({ ...row, scopes: [...row.scopes].sort() });

/**
 * Records a new key.
 *
 * @throws {StoreError} `INVALID_PERMISSION` for a malformed scope, `INVALID_INPUT` for a
 *   name over 200 characters or a scope listed twice, `USER_NOT_FOUND` for an unknown owner,
 *   `DUPLICATE_IDENTITY` for an id already taken (a collision of 60 random bits: retry).
 */
export async function insertApiKey(db: DrizzleDb, input: InsertApiKeyInput): Promise<ApiKeyInfo> {
  assertValidPermissions(input.scopes);
  if (new Set(input.scopes).size !== input.scopes.length) {
    throw new StoreError("INVALID_INPUT", "a scope is listed twice");
  }
  const name = input.name ?? "";
  if (name.length > MAX_NAME_LENGTH) {
    throw new StoreError("INVALID_INPUT", `a key name has at most ${MAX_NAME_LENGTH} characters`);
  }
  const [owner] = await db.select({ username: users.username }).from(users).where(eq(users.id, input.ownerId));
  if (owner === undefined) throw new StoreError("USER_NOT_FOUND", `no user with id ${input.ownerId}`);
  try {
    const [row] = await db
      .insert(apiKeys)
      .values({
        id: input.id,
        ownerId: input.ownerId,
        name,
        secretHash: input.secretHash,
        scopes: [...input.scopes].sort(),
        expiresAt: input.expiresAt ?? null,
      })
      .returning();
    return { ...row!, owner: owner.username };
  } catch (error) {
    if (isUniqueViolation(error)) throw new StoreError("DUPLICATE_IDENTITY", `an API key with id ${input.id} exists`);
    throw error;
  }
}

/** The key with `id`, revoked or not; undefined when there is none. One primary-key lookup. */
export async function findApiKey(db: DrizzleDb, id: string): Promise<ApiKeyRecord | undefined> {
  const [row] = await db
    .select({
      id: apiKeys.id,
      ownerId: apiKeys.ownerId,
      secretHash: apiKeys.secretHash,
      scopes: apiKeys.scopes,
      createdAt: apiKeys.createdAt,
      expiresAt: apiKeys.expiresAt,
      revokedAt: apiKeys.revokedAt,
    })
    .from(apiKeys)
    .where(eq(apiKeys.id, id));
  return row;
}

/** The keys of `ownerId` (every owner's when undefined), revoked ones included, oldest first. */
export async function listApiKeys(db: DrizzleDb, ownerId?: number): Promise<ApiKeyInfo[]> {
  const rows = await db
    .select(infoColumns)
    .from(apiKeys)
    .innerJoin(users, eq(users.id, apiKeys.ownerId))
    .where(ownerId === undefined ? undefined : eq(apiKeys.ownerId, ownerId))
    .orderBy(asc(apiKeys.createdAt), asc(apiKeys.id));
  return rows.map(sorted);
}

/**
 * Revokes the key `id` (of `ownerId` only, when given: another owner's key is
 * "not found", so a caller cannot probe ids). Revoking a revoked key changes
 * nothing and reports `already_revoked`; its first revocation time stays.
 */
export async function revokeApiKey(
  db: DrizzleDb,
  id: string,
  at: Date,
  ownerId?: number,
): Promise<{ status: "revoked" | "already_revoked"; key: ApiKeyInfo } | { status: "not_found" }> {
  const mine = ownerId === undefined ? eq(apiKeys.id, id) : and(eq(apiKeys.id, id), eq(apiKeys.ownerId, ownerId));
  const [updated] = await db
    .update(apiKeys)
    .set({ revokedAt: at })
    .where(and(mine, isNull(apiKeys.revokedAt)))
    .returning({ id: apiKeys.id });
  const [row] = await db.select(infoColumns).from(apiKeys).innerJoin(users, eq(users.id, apiKeys.ownerId)).where(mine);
  if (row === undefined) return { status: "not_found" };
  return { status: updated === undefined ? "already_revoked" : "revoked", key: sorted(row) };
}

/**
 * Notes a use of key `id` at `at`, unless one was noted less than
 * `coarseMs` before: the condition is in the statement, so every instance
 * together writes a key's row at most once per `coarseMs` (a no-op UPDATE
 * writes nothing). Whether a row was written.
 */
export async function touchApiKey(db: DrizzleDb, id: string, at: Date, coarseMs: number): Promise<boolean> {
  const before = new Date(at.getTime() - coarseMs);
  const rows = await db
    .update(apiKeys)
    .set({ lastUsedAt: at })
    .where(and(eq(apiKeys.id, id), or(isNull(apiKeys.lastUsedAt), lt(apiKeys.lastUsedAt, before))))
    .returning({ id: apiKeys.id });
  return rows.length > 0;
}

/** Number of keys in force (not revoked, not expired at `at`) of `ownerId`. */
export async function countActiveApiKeys(db: DrizzleDb, ownerId: number, at: Date): Promise<number> {
  const [row] = await db
    .select({ n: sql<number>`count(*)::int` })
    .from(apiKeys)
    .where(
      and(
        eq(apiKeys.ownerId, ownerId),
        isNull(apiKeys.revokedAt),
        or(isNull(apiKeys.expiresAt), gt(apiKeys.expiresAt, at)),
      ),
    );
  return row?.n ?? 0;
}
