/**
 * Sessions as users and admins see them: a session is one refresh-token family (one login and
 * the refreshes that continued it). Read here; ended with `revokeFamily` (refresh-tokens.ts),
 * the one path logout and reuse detection take, so a revoked session's access tokens land in
 * `revoked_tokens` and every instance hears of it (the invalidation triggers).
 */
import { and, eq, gt, inArray, isNull, max, min, sql } from "drizzle-orm";
import type { DrizzleDb } from "./database-handle.js";
import { StoreError } from "./errors.js";
import { revokeFamily } from "./refresh-tokens.js";
import { refreshTokens, users } from "./schema.js";

/** One live session, in the shape of auth.proto's `Session`. */
export interface SessionInfo {
  /** The session's id: its refresh-token family. */
  readonly id: string;
  /** The user it belongs to. */
  readonly userId: number;
  /** When the session began (its first refresh token was issued: the login). */
  readonly createdAt: Date;
  /** When its current refresh token was issued (the creation when never refreshed). */
  readonly lastRefreshedAt: Date;
  /** The client address that logged in or last refreshed; `''` when unknown. */
  readonly peerAddress: string;
  /** The User-Agent header sent then; `''` when none. */
  readonly userAgent: string;
  /** When the session's current access token expires. */
  readonly accessExpiresAt: Date;
  /** When its current refresh token expires: the session ends then unless refreshed. */
  readonly expiresAt: Date;
  /** The access token `currentJti` (see {@link listSessions}) was issued in this session. */
  readonly current: boolean;
}

/**
 * The live sessions of a user, newest activity first: families whose current refresh token is
 * neither used, revoked nor expired at `now`. `currentJti` (the caller's access-token `jti`)
 * marks the session it was issued in, whether with the current refresh token or an earlier one
 * of the family.
 */
export async function listSessions(
  db: DrizzleDb,
  userId: number,
  now: Date,
  currentJti?: string,
): Promise<SessionInfo[]> {
  const families = await db
    .select({
      familyId: refreshTokens.familyId,
      createdAt: min(refreshTokens.issuedAt),
      latestId: max(refreshTokens.id),
      current:
        currentJti === undefined || currentJti === ""
          ? sql<boolean>`false`
          : sql<boolean>`bool_or(${refreshTokens.accessJti} = ${currentJti})`,
    })
    .from(refreshTokens)
    .where(eq(refreshTokens.userId, userId))
    .groupBy(refreshTokens.familyId);
  if (families.length === 0) return [];
  const latest = await db
    .select()
    .from(refreshTokens)
    .where(
      and(
        inArray(
          refreshTokens.id,
          families.map((f) => f.latestId!),
        ),
        isNull(refreshTokens.usedAt),
        isNull(refreshTokens.revokedAt),
        gt(refreshTokens.expiresAt, now),
      ),
    );
  const byFamily = new Map(families.map((f) => [f.familyId, f]));
  return latest
    .map((row) => {
      const family = byFamily.get(row.familyId)!;
      return {
        id: row.familyId,
        userId: row.userId,
        createdAt: new Date(family.createdAt ?? row.issuedAt),
        lastRefreshedAt: row.issuedAt,
        peerAddress: row.peerAddress,
        userAgent: row.userAgent,
        accessExpiresAt: row.accessExpiresAt,
        expiresAt: row.expiresAt,
        current: family.current === true,
      };
    })
    .sort((a, b) => b.lastRefreshedAt.getTime() - a.lastRefreshedAt.getTime() || (a.id < b.id ? -1 : 1));
}

/** The live sessions of the user named `username` (people and service accounts alike). */
export async function listSessionsOfUser(db: DrizzleDb, username: string, now: Date): Promise<SessionInfo[]> {
  const [user] = await db
    .select({ id: users.id })
    .from(users)
    .where(eq(users.username, username.normalize("NFKC")))
    .limit(1);
  if (user === undefined) throw new StoreError("USER_NOT_FOUND", `no user "${username}"`);
  return listSessions(db, user.id, now);
}

/** The user a session (refresh-token family) belongs to, or undefined for an unknown id. */
export async function sessionOwner(db: DrizzleDb, sessionId: string): Promise<number | undefined> {
  const [row] = await db
    .select({ userId: refreshTokens.userId })
    .from(refreshTokens)
    .where(eq(refreshTokens.familyId, sessionId))
    .limit(1);
  return row?.userId;
}

/**
 * Ends a session: every refresh token of the family and every live access token issued with
 * them are revoked (`revokeFamily`, as logout), so the session's next call is refused on every
 * instance and its open streams end. When `userId` is given, a session of another user is
 * treated as unknown, so nobody learns which ids exist. Revoking an ended session again is a
 * no-op.
 *
 * @returns the owner of the revoked session.
 * @throws {StoreError} `SESSION_NOT_FOUND` for an unknown id (or another user's).
 */
export async function revokeSession(db: DrizzleDb, sessionId: string, now: Date, userId?: number): Promise<number> {
  const owner = sessionId === "" ? undefined : await sessionOwner(db, sessionId);
  if (owner === undefined || (userId !== undefined && owner !== userId)) {
    throw new StoreError("SESSION_NOT_FOUND", `no session "${sessionId}"`);
  }
  await revokeFamily(db, sessionId, now);
  return owner;
}
