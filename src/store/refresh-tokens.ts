/**
 * Refresh-token families: rotation, reuse detection and revocation. Every
 * lookup is by the token's verified `jti` (unique per token, and signed, so a
 * respelled twin of a token cannot change it); the token itself is stored
 * only as a SHA-256 hash and never reaches the database.
 */
import { and, eq, gt, isNull, sql, type SQL } from "drizzle-orm";
import type { DrizzleDb } from "./database-handle.js";
import { refreshTokens, revokedTokens, users } from "./schema.js";

/** One issued refresh token, with the access token issued beside it. */
export interface RefreshTokenRecord {
  jti: string;
  familyId: string;
  userId: number;
  /** SHA-256 hex of the token string (kept for audits; lookups go by `jti`). */
  tokenHash: string;
  issuedAt: Date;
  expiresAt: Date;
  /** The access token issued together with this refresh token, revoked with its family. */
  accessJti: string;
  accessExpiresAt: Date;
  /** The client address it was issued to, for the session list. Default `''` (unknown). */
  peerAddress?: string;
  /** The User-Agent header of the request it was issued for. Default `''`. */
  userAgent?: string;
}

/** Records a newly issued refresh token. */
export async function insertRefreshToken(db: DrizzleDb, record: RefreshTokenRecord): Promise<void> {
  await db.insert(refreshTokens).values(record);
}

/** The outcome of presenting a refresh token. */
export type ConsumeResult =
  /** The token was live and is now used; `familyId` continues with a new token. */
  | { status: "ok"; userId: number; familyId: string }
  /** Unknown, expired or revoked. */
  | { status: "invalid" }
  /** Already used: a stolen copy is being replayed; the family has been revoked. */
  | { status: "reused"; userId: number; familyId: string };

/**
 * Marks the refresh token with this `jti` used, atomically: of any number of
 * concurrent calls with one token, exactly one sees `ok` (the conditional
 * UPDATE is the arbiter, on either driver). A token that was already used is
 * reuse: its family is revoked at once, including the access tokens issued
 * with it. Pass only a `jti` read from a verified token.
 *
 * Run it in the same transaction as {@link insertRefreshToken} for the
 * successor, so a failure leaves the old token live rather than neither.
 */
export async function consumeRefreshToken(db: DrizzleDb, jti: string, now: Date): Promise<ConsumeResult> {
  const [used] = await db
    .update(refreshTokens)
    .set({ usedAt: now })
    .where(
      and(
        eq(refreshTokens.jti, jti),
        isNull(refreshTokens.usedAt),
        isNull(refreshTokens.revokedAt),
        gt(refreshTokens.expiresAt, now),
      ),
    )
    .returning({ userId: refreshTokens.userId, familyId: refreshTokens.familyId });
  if (used !== undefined) return { status: "ok", ...used };
  const [row] = await db
    .select({ userId: refreshTokens.userId, familyId: refreshTokens.familyId, usedAt: refreshTokens.usedAt })
    .from(refreshTokens)
    .where(eq(refreshTokens.jti, jti));
  if (row === undefined || row.usedAt === null) return { status: "invalid" };
  await revokeFamily(db, row.familyId, now);
  return { status: "reused", userId: row.userId, familyId: row.familyId };
}

/**
 * Revokes every refresh token of a family and every access token issued
 * with one of them (by jti), so logout and reuse detection end the session
 * everywhere at once.
 */
export async function revokeFamily(db: DrizzleDb, familyId: string, now: Date): Promise<void> {
  await db.transaction((tx) => revokeTokensWhere(tx, eq(refreshTokens.familyId, familyId), now));
}

/** Finds the family of a refresh token by its verified `jti` (used or not), for logout. */
export async function findRefreshFamily(db: DrizzleDb, jti: string): Promise<string | undefined> {
  const [row] = await db
    .select({ familyId: refreshTokens.familyId })
    .from(refreshTokens)
    .where(eq(refreshTokens.jti, jti));
  return row?.familyId;
}

/**
 * Ends every session of a user: marks the credentials changed (access tokens
 * issued before now stop working), revokes all refresh tokens, and revokes
 * by jti the live access tokens issued with them. Used on password change
 * and deactivation.
 */
export async function revokeUserSessions(db: DrizzleDb, userId: number, now: Date): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.update(users).set({ credentialsChangedAt: now }).where(eq(users.id, userId));
    await revokeTokensWhere(tx, eq(refreshTokens.userId, userId), now);
  });
}

/**
 * Revokes the refresh tokens matching `where` (one family, or all of a user) and, by jti, the live
 * access tokens issued with them. Run inside the caller's transaction. Revoking by jti does not
 * depend on clocks: `iat < credentials_changed_at` alone misses a token issued in the same
 * millisecond as a change, or by a server whose clock runs ahead.
 */
async function revokeTokensWhere(tx: DrizzleDb, where: SQL, now: Date): Promise<void> {
  // Lock the rows in id order before updating them. A plain UPDATE locks them in scan order,
  // which differs between transactions once rows have moved on the heap, and concurrent reuse
  // detections of one family (a refresh race) then deadlocked on PostgreSQL.
  await lockInIdOrder(tx, where);
  await tx
    .update(refreshTokens)
    .set({ revokedAt: now })
    .where(and(where, isNull(refreshTokens.revokedAt)));
  // Dates go in as ISO strings: raw SQL parameters skip Drizzle's column
  // encoders, and the drivers disagree on how to send a Date.
  await tx.execute(sql`
    insert into ${revokedTokens} (jti, user_id, expires_at)
    select ${refreshTokens.accessJti}, ${refreshTokens.userId}, ${refreshTokens.accessExpiresAt}
    from ${refreshTokens}
    where ${where}
      and ${refreshTokens.accessExpiresAt} > ${now.toISOString()}::timestamptz
    on conflict do nothing`);
}

/**
 * Row-locks the refresh tokens matching `where` in primary-key order, so
 * every writer of several rows of one family or user takes the locks in the
 * same order and none can wait on another in a cycle.
 */
async function lockInIdOrder(db: DrizzleDb, where: SQL | undefined): Promise<void> {
  await db.select({ id: refreshTokens.id }).from(refreshTokens).where(where).orderBy(refreshTokens.id).for("update");
}
