/**
 * Per-account login throttling kept in the database, so it holds across
 * every server instance that shares it. Keyed by the normalized username
 * whether or not such a user exists, so throttling reveals nothing.
 *
 * The table stays bounded: a row is written only for an attempt that is
 * about to be verified (the caller refuses malformed and rate-limited
 * attempts first), failures are forgotten `forgetAfterMs` after the last
 * one, and {@link purgeLoginAttempts} deletes forgotten rows in bounded
 * batches.
 */
import { and, eq, inArray, isNull, lte, or, sql } from "drizzle-orm";
import type { DrizzleDb } from "./database-handle.js";
import { loginAttempts } from "./schema.js";

/** Throttling parameters. */
export interface ThrottlePolicy {
  /** Failures allowed before the account is locked. Default: 5. */
  freeFailures: number;
  /** First lock, in milliseconds; doubles with each further failure. Default: 1000. */
  baseLockMs: number;
  /**
   * Longest lock, in milliseconds. Kept short on purpose: an attacker who
   * knows a username can keep failing, and must not lock its owner out for
   * long. Default: 60000.
   */
  maxLockMs: number;
  /**
   * How long after its last failure (and the end of any lock) a username's
   * failures are forgotten: the next attempt counts from one again, and the
   * row may be purged. Bounds the table to the failures of this window.
   * Default: 900000 (15 minutes).
   */
  forgetAfterMs?: number;
}

/** The defaults of {@link ThrottlePolicy}. */
export const DEFAULT_THROTTLE: ThrottlePolicy = {
  freeFailures: 5,
  baseLockMs: 1000,
  maxLockMs: 60_000,
  forgetAfterMs: 900_000,
};

const DEFAULT_FORGET_AFTER_MS = 900_000;

function forgottenBefore(now: Date, policy: ThrottlePolicy): Date {
  return new Date(now.getTime() - (policy.forgetAfterMs ?? DEFAULT_FORGET_AFTER_MS));
}

/** Whether `key` is locked now; returns the time it unlocks, or undefined. */
export async function lockedUntil(db: DrizzleDb, key: string, now: Date): Promise<Date | undefined> {
  const [row] = await db
    .select({ lockedUntil: loginAttempts.lockedUntil })
    .from(loginAttempts)
    .where(eq(loginAttempts.username, key));
  return row?.lockedUntil && row.lockedUntil > now ? row.lockedUntil : undefined;
}

/** The row of a key's first counted failure. */
function firstFailure(key: string, now: Date, policy: ThrottlePolicy) {
  return {
    username: key,
    failures: 1,
    updatedAt: now,
    lockedUntil: policy.freeFailures < 1 ? new Date(now.getTime() + policy.baseLockMs) : null,
  };
}

/** The update counting one more failure of an existing row, with its backoff. */
function nextFailure(now: Date, policy: ThrottlePolicy) {
  // A row whose failures are forgotten (not yet purged) counts from one again.
  const failures = sql`case when ${loginAttempts.updatedAt} <= ${forgottenBefore(now, policy).toISOString()}::timestamptz then 1 else ${loginAttempts.failures} + 1 end`;
  const over = sql`greatest(${failures} - ${policy.freeFailures}, 0)`;
  // lock = min(base * 2^(over-1), max) once over > 0. The exponent is capped:
  // past 2^1023 float8 overflows and the statement errors, which after ~1000
  // failures would turn every later login of the key into an error; the cap
  // changes nothing else, maxLockMs has long taken over by then.
  const lockMs = sql`least(${policy.baseLockMs}::float8 * power(2::float8, least(greatest(${over} - 1, 0), 60)), ${policy.maxLockMs}::float8)`;
  return {
    failures,
    updatedAt: now,
    lockedUntil: sql`case when ${over} > 0 then ${now.toISOString()}::timestamptz + (${lockMs} * interval '1 millisecond') else null end`,
  };
}

/**
 * Counts one login attempt for `key` before its password is checked, unless
 * `key` is locked at `now`: the lock check and the count are one statement.
 * Checking the lock, then recording a failure after a slow password check,
 * would let N concurrent guesses all pass before the first failure lands; here each one takes the row lock in turn, and once
 * the count passes `freeFailures` the rest see the lock. The attempt that
 * sets a lock is still allowed (it was counted before the lock existed).
 * Call {@link clearLoginFailures} when the attempt succeeds; a failure needs
 * no further write.
 *
 * @returns undefined when the attempt may proceed, otherwise the time the
 *   lock ends (`now` if a concurrent success cleared it meanwhile).
 */
export async function reserveLoginAttempt(
  db: DrizzleDb,
  key: string,
  now: Date,
  policy: ThrottlePolicy = DEFAULT_THROTTLE,
): Promise<Date | undefined> {
  const rows = await db
    .insert(loginAttempts)
    .values(firstFailure(key, now, policy))
    .onConflictDoUpdate({
      target: loginAttempts.username,
      set: nextFailure(now, policy),
      setWhere: sql`${loginAttempts.lockedUntil} is null or ${loginAttempts.lockedUntil} <= ${now.toISOString()}::timestamptz`,
    })
    .returning({ username: loginAttempts.username });
  if (rows.length === 1) return undefined;
  return (await lockedUntil(db, key, now)) ?? now;
}

/**
 * Deletes up to `limit` rows whose failures are forgotten at `now` (last
 * failure older than `forgetAfterMs`, no lock in force). Bounded so that a
 * call never holds the table for long; call again while it returns `limit`.
 * Rows updated meanwhile by a concurrent attempt are kept: the conditions are
 * checked again on the row being deleted.
 *
 * @returns how many rows were deleted.
 */
export async function purgeLoginAttempts(
  db: DrizzleDb,
  now: Date,
  policy: ThrottlePolicy = DEFAULT_THROTTLE,
  limit = 1000,
): Promise<number> {
  const expired = and(
    lte(loginAttempts.updatedAt, forgottenBefore(now, policy)),
    or(isNull(loginAttempts.lockedUntil), lte(loginAttempts.lockedUntil, now)),
  );
  const batch = db.select({ username: loginAttempts.username }).from(loginAttempts).where(expired).limit(limit);
  const deleted = await db
    .delete(loginAttempts)
    .where(and(inArray(loginAttempts.username, batch), expired))
    .returning({ username: loginAttempts.username });
  return deleted.length;
}

/**
 * Takes back one attempt counted by {@link reserveLoginAttempt} whose password
 * was never checked (the hasher was busy): the server's refusal must not
 * count against the account, nor leave a row behind. A lock that the count
 * no longer justifies is lifted; a row left with no failures is deleted.
 */
export async function releaseLoginAttempt(
  db: DrizzleDb,
  key: string,
  policy: ThrottlePolicy = DEFAULT_THROTTLE,
): Promise<void> {
  await db.transaction(async (tx) => {
    const [row] = await tx
      .update(loginAttempts)
      .set({
        failures: sql`greatest(${loginAttempts.failures} - 1, 0)`,
        lockedUntil: sql`case when ${loginAttempts.failures} - 1 <= ${policy.freeFailures} then null else ${loginAttempts.lockedUntil} end`,
      })
      .where(eq(loginAttempts.username, key))
      .returning({ failures: loginAttempts.failures });
    if (row !== undefined && row.failures === 0) {
      await tx.delete(loginAttempts).where(and(eq(loginAttempts.username, key), eq(loginAttempts.failures, 0)));
    }
  });
}

/** Forgets the failures of `key` after a successful login. */
export async function clearLoginFailures(db: DrizzleDb, key: string): Promise<void> {
  await db.delete(loginAttempts).where(eq(loginAttempts.username, key));
}
