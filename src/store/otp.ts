/** Per-user TOTP state: the secret, whether it is required, and the last step accepted. */
import { and, eq, isNull, lt, or } from "drizzle-orm";
import type { DrizzleDb } from "./database.js";
import { users } from "./schema.js";

/** Stores a new TOTP secret and requires codes from now on; resets the replay guard. */
export async function enableOtp(db: DrizzleDb, userId: number, secret: string): Promise<void> {
  await db.update(users).set({ otpSecret: secret, otpEnabled: true, otpLastStep: null }).where(eq(users.id, userId));
}


/**
 * Records `step` as used, only if it is later than the last accepted step.
 * Atomic on the row, so two logins racing with one code cannot both pass:
 * exactly one of them sees `true`.
 */
export async function claimOtpStep(db: DrizzleDb, userId: number, step: number): Promise<boolean> {
  const rows = await db
    .update(users)
    .set({ otpLastStep: step })
    .where(and(eq(users.id, userId), or(isNull(users.otpLastStep), lt(users.otpLastStep, step))))
    .returning({ id: users.id });
  return rows.length === 1;
}
