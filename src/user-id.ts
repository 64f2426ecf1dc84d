/**
 * The range of a user id, owned here once: the token claims, the principal query and the admin
 * API all accept exactly the same ids.
 */

/** Largest accepted user id: the top of a PostgreSQL `integer` (Django's AutoField). */
export const MAX_USER_ID = 2 ** 31 - 1;

/**
 * Whether `value` is a user id: a safe integer in 1..{@link MAX_USER_ID}. A narrowing guard, so
 * callers can take `unknown` input (a claim, a CLI argument already converted) and branch on it.
 */
export function isUserId(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 1 && value <= MAX_USER_ID;
}
