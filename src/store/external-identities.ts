/**
 * External identities: the `external_identities` rows that link a trusted issuer's subject to a
 * local user, just-in-time provisioning of such users, and the permissions of the groups a
 * token maps onto. The SQL behind `createIdentityResolver`, and the admin link/unlink.
 */
import { createHash, randomBytes } from "node:crypto";
import { and, eq, inArray, sql, TransactionRollbackError } from "drizzle-orm";
import type { DrizzleDb } from "./database-handle.js";
import { StoreError } from "./errors.js";
import {
  externalIdentities,
  externalIdentityTombstones,
  groupPermissions,
  groups,
  permissions,
  users,
} from "./schema.js";
import { serviceAccountRefused } from "./service-accounts.js";
import { normalizeUsername } from "./users.js";

/** What {@link provisionExternalUser} needs to know about the new user. */
export interface ExternalUserInit {
  issuer: string;
  subject: string;
  /** The IdP's username claim, when it has one: the preferred local username. */
  username?: string;
  /** The IdP's email claim, when it has one. */
  email?: string;
}

const USERNAME_LENGTH = 150;
/** Random suffixes tried when every derived username is taken (64 bits each: no second try needed). */
const RANDOM_USERNAME_TRIES = 3;
const EMAIL_LENGTH = 254;
/** Characters outside Django's username alphabet become this. */
const NOT_USERNAME = /[^\p{L}\p{N}_.@+-]/gu;

/** The local user linked to `(issuer, subject)`, or undefined. One primary-key lookup. */
export async function findExternalIdentity(
  db: DrizzleDb,
  issuer: string,
  subject: string,
): Promise<number | undefined> {
  const [row] = await db
    .select({ userId: externalIdentities.userId })
    .from(externalIdentities)
    .where(and(eq(externalIdentities.issuer, issuer), eq(externalIdentities.subject, subject)))
    .limit(1);
  return row?.userId;
}

/**
 * Creates a local user for a subject seen for the first time, and links it, in one
 * transaction. The username is the IdP's username claim (or the subject) with characters
 * outside Django's alphabet replaced by `_`; when that name is taken, by a local account or
 * another issuer's user, a suffix derived from issuer and subject is added (10 hex digits, then
 * 20), and when those are taken too (another IdP user may choose them as their name), a random
 * one: an IdP user is never attached to an existing account by name, and nobody can make
 * provisioning fail for good by taking names. The user has no password (login only through
 * the IdP) and its `credentials_changed_at` starts at the epoch, so the token that introduced
 * it, issued before it existed, is not taken for a revoked one. Concurrent first calls (or two
 * instances) end with one user: the losing transaction rolls back and returns the winner's id.
 *
 * A subject that was linked once and lost its link (unlinked, or its user deleted: see
 * `external_identity_tombstones`) is never provisioned again: only an admin's
 * {@link linkExternalIdentity} lets it in.
 *
 * @returns the linked user's id.
 * @throws {StoreError} `IDENTITY_UNLINKED` for a subject that was unlinked or whose user was deleted.
 */
export async function provisionExternalUser(db: DrizzleDb, init: ExternalUserInit): Promise<number> {
  const hash = createHash("sha256").update(`${init.issuer}\n${init.subject}`).digest("hex");
  const suffix = hash.slice(0, 10);
  const base = usernameFrom(init.username ?? init.subject) || `user_${suffix}`;
  const suffixed = (tail: string) => `${base.slice(0, USERNAME_LENGTH - tail.length - 1)}_${tail}`;
  // The name asked for, then names derived from issuer and subject (stable across instances),
  // then random ones: another IdP user may choose any predictable name as theirs, never all of
  // these, so provisioning cannot be made to fail for good by someone else's choice of name.
  const candidates = [
    base,
    suffixed(suffix),
    suffixed(hash.slice(0, 20)),
    ...Array.from({ length: RANDOM_USERNAME_TRIES }, () => suffixed(randomBytes(8).toString("hex"))),
  ];
  const email = init.email !== undefined && init.email.length <= EMAIL_LENGTH ? init.email : "";
  const linked = await db
    .transaction(async (tx) => {
      const [tombstone] = await tx
        .select({ removedAt: externalIdentityTombstones.removedAt })
        .from(externalIdentityTombstones)
        .where(
          and(eq(externalIdentityTombstones.issuer, init.issuer), eq(externalIdentityTombstones.subject, init.subject)),
        )
        .limit(1);
      if (tombstone !== undefined) {
        throw new StoreError(
          "IDENTITY_UNLINKED",
          `${init.issuer} subject ${init.subject} was unlinked; an admin must link it`,
        );
      }
      let userId: number | undefined;
      for (const username of candidates) {
        const [row] = await tx
          .insert(users)
          .values({ username, email, credentialsChangedAt: new Date(0) })
          .onConflictDoNothing({ target: users.username })
          .returning({ id: users.id });
        if (row !== undefined) {
          userId = row.id;
          break;
        }
      }
      if (userId === undefined) {
        throw new StoreError("DUPLICATE_USERNAME", `no free username for ${init.issuer} subject ${init.subject}`);
      }
      const [link] = await tx
        .insert(externalIdentities)
        .values({ issuer: init.issuer, subject: init.subject, userId })
        .onConflictDoNothing()
        .returning({ userId: externalIdentities.userId });
      // Someone linked the subject meanwhile: undo our user, keep theirs.
      if (link === undefined) tx.rollback();
      return userId;
    })
    .catch((error: unknown) => {
      if (isRollback(error)) return undefined;
      throw error;
    });
  if (linked !== undefined) return linked;
  const existing = await findExternalIdentity(db, init.issuer, init.subject);
  if (existing === undefined) throw new StoreError("USER_NOT_FOUND", "the concurrent link vanished; try again");
  return existing;
}

/**
 * Links `(issuer, subject)` to the existing user `username` (for issuers without
 * provisioning, to attach an IdP account to a local one, or to let back a subject that was
 * unlinked or whose user was deleted: this removes its tombstone). Service accounts are
 * refused: they authenticate with their own credentials only.
 *
 * @throws {StoreError} `USER_NOT_FOUND`; `INVALID_INPUT` for a service account;
 *   `DUPLICATE_LINK` when the subject is already linked.
 */
export async function linkExternalIdentity(
  db: DrizzleDb,
  issuer: string,
  subject: string,
  username: string,
): Promise<void> {
  if (issuer.length === 0 || issuer.length > 512 || subject.length === 0 || subject.length > 255) {
    throw new StoreError("INVALID_INPUT", "issuer must be 1-512 and subject 1-255 characters");
  }
  await db.transaction(async (tx) => {
    const [user] = await tx
      .select({ id: users.id, kind: users.kind })
      .from(users)
      .where(eq(users.username, normalizeUsername(username)))
      .limit(1);
    if (user === undefined) throw new StoreError("USER_NOT_FOUND", `no user "${username}"`);
    if (user.kind === "service") throw serviceAccountRefused(username);
    const [row] = await tx
      .insert(externalIdentities)
      .values({ issuer, subject, userId: user.id })
      .onConflictDoNothing()
      .returning({ userId: externalIdentities.userId });
    if (row === undefined) throw new StoreError("DUPLICATE_LINK", `${issuer} subject ${subject} is already linked`);
    await tx
      .delete(externalIdentityTombstones)
      .where(and(eq(externalIdentityTombstones.issuer, issuer), eq(externalIdentityTombstones.subject, subject)));
  });
}

/**
 * Removes the link of `(issuer, subject)`; the local user stays. The subject is tombstoned (by
 * the database): provisioning will not bring it back until it is linked again.
 *
 * @returns whether a link was removed.
 */
export async function unlinkExternalIdentity(db: DrizzleDb, issuer: string, subject: string): Promise<boolean> {
  const rows = await db
    .delete(externalIdentities)
    .where(and(eq(externalIdentities.issuer, issuer), eq(externalIdentities.subject, subject)))
    .returning({ userId: externalIdentities.userId });
  return rows.length > 0;
}

/**
 * The permissions (`app_label.codename`) of each named group that exists, in one query. A
 * group without permissions maps to an empty list; a name no group has is absent.
 */
export async function loadGroupPermissions(db: DrizzleDb, names: readonly string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  if (names.length === 0) return out;
  const rows = await db
    .select({
      name: groups.name,
      permission: sql<string | null>`${permissions.appLabel} || '.' || ${permissions.codename}`,
    })
    .from(groups)
    .leftJoin(groupPermissions, eq(groupPermissions.groupId, groups.id))
    .leftJoin(permissions, eq(permissions.id, groupPermissions.permissionId))
    .where(inArray(groups.name, [...names]));
  for (const row of rows) {
    let list = out.get(row.name);
    if (list === undefined) out.set(row.name, (list = []));
    if (row.permission !== null) list.push(row.permission);
  }
  return out;
}

function usernameFrom(text: string): string {
  return [...normalizeUsername(text).replace(NOT_USERNAME, "_")].slice(0, USERNAME_LENGTH).join("");
}

function isRollback(error: unknown): boolean {
  return error instanceof TransactionRollbackError;
}
