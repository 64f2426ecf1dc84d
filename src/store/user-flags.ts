/**
 * Changing a person's flags and email, as Django admin's user form does: the fields AdminService's
 * UpdateUser sets besides activation (which has its own path, since deactivating ends sessions).
 */
import { and, eq } from "drizzle-orm";
import type { DrizzleDb } from "./database-handle.js";
import { StoreError } from "./errors.js";
import { users } from "./schema.js";
import { normalizeUsername, withoutSecrets, type PublicUser } from "./users.js";

const MAX_EMAIL_LENGTH = 254;

/** What {@link updateUserFlags} changes; unset fields are left as they are. */
export interface UserFlagsUpdate {
  isStaff?: boolean;
  isSuperuser?: boolean;
  /** At most 254 characters; `""` clears it. */
  email?: string;
}

/**
 * Sets the given flags of the person `username` (never a service account: those have no staff
 * or superuser flag and no email). Taking away `is_staff` or `is_superuser` takes effect on the
 * next call on every instance (the users row's invalidation trigger), without ending sessions.
 *
 * @returns the updated row.
 * @throws {StoreError} `USER_NOT_FOUND` (also for a service account's name), `INVALID_INPUT`
 *   for an email over 254 characters.
 */
export async function updateUserFlags(db: DrizzleDb, username: string, update: UserFlagsUpdate): Promise<PublicUser> {
  if (update.email !== undefined && [...update.email].length > MAX_EMAIL_LENGTH) {
    throw new StoreError("INVALID_INPUT", `invalid email: longer than ${MAX_EMAIL_LENGTH} characters`);
  }
  const set = {
    ...(update.isStaff !== undefined && { isStaff: update.isStaff }),
    ...(update.isSuperuser !== undefined && { isSuperuser: update.isSuperuser }),
    ...(update.email !== undefined && { email: update.email }),
  };
  const where = and(eq(users.username, normalizeUsername(username)), eq(users.kind, "user"));
  const [row] =
    Object.keys(set).length === 0
      ? await db.select().from(users).where(where).limit(1)
      : await db.update(users).set(set).where(where).returning();
  if (row === undefined) throw new StoreError("USER_NOT_FOUND", `no user "${username}"`);
  return withoutSecrets(row);
}
