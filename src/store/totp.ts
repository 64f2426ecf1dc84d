/**
 * Per-user TOTP state: the secret, whether it is required, and the last step accepted. The
 * columns keep their `otp_*` names (they are in the migrations and Django-compatible rows); the
 * code says TOTP, the one kind of one-time password protoguard has.
 */
import { and, eq, isNull, lt, or } from "drizzle-orm";
import type { DrizzleDb } from "./database-handle.js";
import { users } from "./schema.js";

/** Stores a new TOTP secret and requires codes from now on; resets the replay guard. */
export async function storeTotpSecret(db: DrizzleDb, userId: number, secret: string): Promise<void> {
  await db.update(users).set({ totpSecret: secret, totpEnabled: true, totpLastStep: null }).where(eq(users.id, userId));
}

/**
 * Records `step` as used, only if it is later than the last accepted step.
 * Atomic on the row, so two logins racing with one code cannot both pass:
 * exactly one of them sees `true`.
 */
export async function claimTotpStep(db: DrizzleDb, userId: number, step: number): Promise<boolean> {
  const rows = await db
    .update(users)
    .set({ totpLastStep: step })
    .where(and(eq(users.id, userId), or(isNull(users.totpLastStep), lt(users.totpLastStep, step))))
    .returning({ id: users.id });
  return rows.length === 1;
}
