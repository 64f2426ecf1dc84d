/**
 * Per-account login throttling kept in the database, so it holds across
 * every server instance that shares it. Keyed by the normalized username
 * whether or not such a user exists, so throttling reveals nothing.
 */
import { eq, sql } from "drizzle-orm";
import type { DrizzleDb } from "./database.js";
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
}

/** The defaults of {@link ThrottlePolicy}. */
export const DEFAULT_THROTTLE: ThrottlePolicy = { freeFailures: 5, baseLockMs: 1000, maxLockMs: 60_000 };

/** Whether `key` is locked now; returns the time it unlocks, or undefined. */
export async function lockedUntil(db: DrizzleDb, key: string, now: Date): Promise<Date | undefined> {
  const [row] = await db
    .select({ lockedUntil: loginAttempts.lockedUntil })
    .from(loginAttempts)
    .where(eq(loginAttempts.username, key));
  return row?.lockedUntil && row.lockedUntil > now ? row.lockedUntil : undefined;
}

/**
 * Counts one failure for `key`, atomically, and locks it with exponential
 * backoff once past the free failures. Returns the new lock end, if any.
 */
export async function recordLoginFailure(
  db: DrizzleDb,
  key: string,
  now: Date,
  policy: ThrottlePolicy = DEFAULT_THROTTLE,
): Promise<Date | undefined> {
  const failures = sql`${loginAttempts.failures} + 1`;
  const over = sql`greatest(${failures} - ${policy.freeFailures}, 0)`;
  // lock = min(base * 2^(over-1), max) once over > 0
  const lockMs = sql`least(${policy.baseLockMs}::float8 * power(2, greatest(${over} - 1, 0)), ${policy.maxLockMs}::float8)`;
  const [row] = await db
    .insert(loginAttempts)
    .values({ username: key, failures: 1, updatedAt: now, lockedUntil: policy.freeFailures < 1 ? new Date(now.getTime() + policy.baseLockMs) : null })
    .onConflictDoUpdate({
      target: loginAttempts.username,
      set: {
        failures: failures,
        updatedAt: now,
        lockedUntil: sql`case when ${over} > 0 then ${now.toISOString()}::timestamptz + (${lockMs} * interval '1 millisecond') else null end`,
      },
    })
    .returning({ lockedUntil: loginAttempts.lockedUntil });
  return row?.lockedUntil ?? undefined;
}

/** Forgets the failures of `key` after a successful login. */
export async function clearLoginFailures(db: DrizzleDb, key: string): Promise<void> {
  await db.delete(loginAttempts).where(eq(loginAttempts.username, key));
}
