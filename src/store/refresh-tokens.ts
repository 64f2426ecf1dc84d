/**
 * Refresh-token families: rotation, reuse detection and revocation. Every
 * lookup is by the token's verified `jti` (unique per token, and signed, so a
 * respelled twin of a token cannot change it); the token itself is stored
 * only as a SHA-256 hash and never reaches the database.
 */
import { and, eq, gt, inArray, isNotNull, isNull, lt, sql, type SQL } from "drizzle-orm";
import type { DrizzleDb } from "./database-handle.js";
import { announceLocalRevocation, rowsOf } from "./revoked-tokens.js";
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
  /** When the family's holder last entered a credential; null (or absent) when unknown. */
  authTime?: Date | null;
  /** RFC 8176 methods of that authentication, separated by spaces (`"pwd otp"`); null when unknown. */
  amr?: string | null;
}

/** Records a newly issued refresh token. */
export async function insertRefreshToken(db: DrizzleDb, record: RefreshTokenRecord): Promise<void> {
  await db.insert(refreshTokens).values(record);
}

/** The outcome of presenting a refresh token. */
export type ConsumeResult =
  /**
   * The token was live and is now used; `familyId` continues with a new token, carrying the
   * family's `authTime` and `amr` (null for a family from before step-up).
   */
  | { status: "ok"; userId: number; familyId: string; authTime: Date | null; amr: string | null }
  /**
   * Already used, within the reuse grace window, by a family still live: `sealed` is the
   * successor pair the first use was answered with (see {@link sealSuccessor}). Nothing was revoked.
   */
  | { status: "grace"; userId: number; familyId: string; sealed: string }
  /** Unknown, expired or revoked. */
  | { status: "invalid" }
  /** Already used: a stolen copy is being replayed; the family has been revoked. */
  | { status: "reused"; userId: number; familyId: string };

/**
 * Marks the refresh token with this `jti` used, atomically: of any number of
 * concurrent calls with one token, exactly one sees `ok` (the conditional
 * UPDATE is the arbiter, on either driver). A token that was already used is
 * reuse: its family is revoked at once, including the access tokens issued
 * with it, unless it was used less than `graceSeconds` ago (default 0: never)
 * and its successor is sealed on its row, which is then returned (`grace`).
 * Pass only a `jti` read from a verified token.
 *
 * Run it in the same transaction as {@link insertRefreshToken} and
 * {@link sealSuccessor} for the successor, so a failure leaves the old token
 * live rather than neither. On PostgreSQL a concurrent call's UPDATE waits on
 * the winner's row lock until it commits, so it then reads the sealed successor.
 */
export async function consumeRefreshToken(
  db: DrizzleDb,
  jti: string,
  now: Date,
  graceSeconds = 0,
): Promise<ConsumeResult> {
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
    .returning({
      userId: refreshTokens.userId,
      familyId: refreshTokens.familyId,
      authTime: refreshTokens.authTime,
      amr: refreshTokens.amr,
    });
  if (used !== undefined) return { status: "ok", ...used };
  const [row] = await db
    .select({
      userId: refreshTokens.userId,
      familyId: refreshTokens.familyId,
      usedAt: refreshTokens.usedAt,
      revokedAt: refreshTokens.revokedAt,
      sealed: refreshTokens.successorSealed,
    })
    .from(refreshTokens)
    .where(eq(refreshTokens.jti, jti));
  if (row === undefined || row.usedAt === null) return { status: "invalid" };
  // A concurrent call that lost the race (two tabs, a retried request) may see the used
  // token's clock a little ahead of its own: a negative age is inside the window too.
  if (
    graceSeconds > 0 &&
    row.revokedAt === null &&
    row.sealed !== null &&
    now.getTime() - row.usedAt.getTime() < graceSeconds * 1000
  ) {
    return { status: "grace", userId: row.userId, familyId: row.familyId, sealed: row.sealed };
  }
  await revokeFamily(db, row.familyId, now);
  return { status: "reused", userId: row.userId, familyId: row.familyId };
}

/**
 * Keeps the successor pair of the just-used token `jti`, sealed by the caller (the lifecycle's
 * refresh grace), for a second presentation inside the grace window. Run it in the rotating
 * transaction, so concurrent presentations waiting on the row find it once they may read.
 */
export async function sealSuccessor(db: DrizzleDb, jti: string, sealed: string): Promise<void> {
  await db.update(refreshTokens).set({ successorSealed: sealed }).where(eq(refreshTokens.jti, jti));
}

/**
 * Drops sealed successors of tokens used before `usedBefore` (the grace window's start), at
 * most `limit` of them; returns how many were dropped (a full batch means there are more).
 */
export async function purgeSealedSuccessors(db: DrizzleDb, usedBefore: Date, limit: number): Promise<number> {
  const due = db
    .select({ id: refreshTokens.id })
    .from(refreshTokens)
    .where(and(isNotNull(refreshTokens.successorSealed), lt(refreshTokens.usedAt, usedBefore)))
    .limit(limit);
  const dropped = await db
    .update(refreshTokens)
    .set({ successorSealed: null })
    .where(inArray(refreshTokens.id, due))
    .returning({ id: refreshTokens.id });
  return dropped.length;
}

/** The session (refresh family) an access token was issued in, by the access token's verified `jti`. */
export async function findSessionOfAccess(
  db: DrizzleDb,
  accessJti: string,
): Promise<{ familyId: string; userId: number } | undefined> {
  const [row] = await db
    .select({ familyId: refreshTokens.familyId, userId: refreshTokens.userId })
    .from(refreshTokens)
    .where(eq(refreshTokens.accessJti, accessJti))
    .limit(1);
  return row;
}

/** The access token StepUp issues into a session, and the authentication it records. */
export interface SteppedUpAccess {
  readonly accessJti: string;
  readonly accessExpiresAt: Date;
  readonly authTime: Date;
  readonly amr: string;
}

/**
 * Records a stepped-up access token in its session: the family's live refresh token now
 * carries its `auth_time` and `amr` (so later refreshes keep them) and covers the new access
 * token (so logout and reuse revoke it). The access tokens it supersedes, the one presented
 * (`presented`) and the one the live row covered, are revoked: the session has one live access
 * token, as after a refresh. Returns false when the family has no live refresh token (logged
 * out, revoked or expired): nothing is written. Run inside a transaction.
 */
export async function stepUpSession(
  tx: DrizzleDb,
  familyId: string,
  now: Date,
  access: SteppedUpAccess,
  presented: { jti: string; userId: number; expiresAt: Date },
): Promise<boolean> {
  const [live] = await tx
    .select({
      id: refreshTokens.id,
      accessJti: refreshTokens.accessJti,
      accessExpiresAt: refreshTokens.accessExpiresAt,
    })
    .from(refreshTokens)
    .where(
      and(
        eq(refreshTokens.familyId, familyId),
        isNull(refreshTokens.usedAt),
        isNull(refreshTokens.revokedAt),
        gt(refreshTokens.expiresAt, now),
      ),
    )
    .for("update");
  if (live === undefined) return false;
  const superseded = [
    { jti: presented.jti, userId: presented.userId, expiresAt: presented.expiresAt },
    { jti: live.accessJti, userId: presented.userId, expiresAt: live.accessExpiresAt },
  ].filter((token) => token.expiresAt > now);
  if (superseded.length > 0) await tx.insert(revokedTokens).values(superseded).onConflictDoNothing();
  await tx
    .update(refreshTokens)
    .set({
      accessJti: access.accessJti,
      accessExpiresAt: access.accessExpiresAt,
      authTime: access.authTime,
      amr: access.amr,
    })
    .where(eq(refreshTokens.id, live.id));
  return true;
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
    announceLocalRevocation({ tokens: [], userIds: [userId] });
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
    .set({ revokedAt: now, successorSealed: null })
    .where(and(where, isNull(refreshTokens.revokedAt)));
  // Dates go in as ISO strings: raw SQL parameters skip Drizzle's column
  // encoders, and the drivers disagree on how to send a Date.
  const inserted = await tx.execute(sql`
    insert into ${revokedTokens} (jti, user_id, expires_at)
    select ${refreshTokens.accessJti}, ${refreshTokens.userId}, ${refreshTokens.accessExpiresAt}
    from ${refreshTokens}
    where ${where}
      and ${refreshTokens.accessExpiresAt} > ${now.toISOString()}::timestamptz
    on conflict do nothing
    returning jti, floor(extract(epoch from expires_at) * 1000)::float8 as expires_ms`);
  const tokens = rowsOf(inserted).map((row) => ({ jti: row.jti, expiresAtMs: Number(row.expires_ms) }));
  if (tokens.length > 0) announceLocalRevocation({ tokens, userIds: [] });
}

/**
 * Row-locks the refresh tokens matching `where` in primary-key order, so
 * every writer of several rows of one family or user takes the locks in the
 * same order and none can wait on another in a cycle.
 */
async function lockInIdOrder(db: DrizzleDb, where: SQL | undefined): Promise<void> {
  await db.select({ id: refreshTokens.id }).from(refreshTokens).where(where).orderBy(refreshTokens.id).for("update");
}
