/**
 * Reads of `revoked_tokens` for the in-memory revoked set every principal
 * source keeps (src/principals/revoked-set.ts): the whole unexpired set when
 * notifications (re)start, and the expiry of the few `jti`s a notification
 * just named. Times are milliseconds since the epoch.
 */
import { sql } from "drizzle-orm";
import type { DrizzleDb } from "./database-handle.js";
import { revokedTokens } from "./schema.js";

/** One revoked access token: its `jti` and when the token expires (ms since the epoch). */
export interface RevokedTokenRow {
  readonly jti: string;
  readonly expiresAtMs: number;
}

/** The rows of a raw query with `jti` and `expires_ms` columns, on either driver. */
export function rowsOf(result: unknown): { jti: string; expires_ms: number | string }[] {
  // postgres.js answers an array; PGlite an object with `rows`.
  return (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as {
    jti: string;
    expires_ms: number | string;
  }[];
}

/**
 * Every revoked token that has not expired at `nowMs` (the server's clock,
 * not the database's, so a skew between them cannot hide a row the server
 * still considers live).
 */
export async function loadRevokedTokens(db: DrizzleDb, nowMs: number): Promise<RevokedTokenRow[]> {
  const result = await db.execute(sql`
    select ${revokedTokens.jti} as jti,
      floor(extract(epoch from ${revokedTokens.expiresAt}) * 1000)::float8 as expires_ms
    from ${revokedTokens}
    where ${revokedTokens.expiresAt} > ${new Date(nowMs).toISOString()}::timestamptz`);
  return rowsOf(result).map((row) => ({ jti: row.jti, expiresAtMs: Number(row.expires_ms) }));
}

/** The rows of these `jti`s that exist (a `jti` absent from the answer is not revoked). */
export async function revokedTokenExpiries(db: DrizzleDb, jtis: readonly string[]): Promise<RevokedTokenRow[]> {
  if (jtis.length === 0) return [];
  // One JSON text parameter: the drivers disagree on how to send arrays, and
  // JSON carries any jti intact.
  const result = await db.execute(sql`
    select ${revokedTokens.jti} as jti,
      floor(extract(epoch from ${revokedTokens.expiresAt}) * 1000)::float8 as expires_ms
    from ${revokedTokens}
    where ${revokedTokens.jti} in (select jsonb_array_elements_text(${JSON.stringify(jtis)}::jsonb))`);
  return rowsOf(result).map((row) => ({ jti: row.jti, expiresAtMs: Number(row.expires_ms) }));
}

/** Revocations this process has just written (see {@link announceLocalRevocation}). */
export interface LocalRevocation {
  /** Access tokens revoked by `jti`, with their expiry. */
  readonly tokens: readonly RevokedTokenRow[];
  /** Users whose `credentials_changed_at` was bumped (every older token revoked). */
  readonly userIds: readonly number[];
}

const localListeners = new Set<(revocation: LocalRevocation) => void>();

/**
 * Calls `listener` with every revocation written by this process, as soon as
 * it is written: the principal sources' read-your-writes, so a call that
 * follows a logout on the same instance is refused even before the
 * database's notification of it has come back (on PostgreSQL it arrives a
 * moment after the commit). Process-wide: `jti`s are random, so a revocation
 * in another database of the same process names no token of this one.
 * Returns a function that removes the listener.
 */
export function onLocalRevocation(listener: (revocation: LocalRevocation) => void): () => void {
  localListeners.add(listener);
  return () => localListeners.delete(listener);
}

/**
 * Tells the {@link onLocalRevocation} listeners, as soon as the write is made
 * (inside its transaction: early is the safe side, a rollback leaves a token
 * refused here until its `exp`, never a revoked one accepted; listeners do
 * not trust a user's cached cut-off for a while after a credentials change,
 * since a lookup before the commit still reads the old one).
 */
export function announceLocalRevocation(revocation: LocalRevocation): void {
  for (const listener of localListeners) {
    try {
      listener(revocation);
    } catch {
      // One listener's failure must not keep the others from the news.
    }
  }
}
