/**
 * Service accounts in the store: a `users` row of kind `service` (so grants,
 * groups, caches and invalidation work as for people) plus its
 * `service_accounts` row holding the client credentials and the TLS
 * identity. Every write that touches both is one transaction.
 */
import { and, asc, eq, inArray, sql } from "drizzle-orm";
import type { DrizzleDb } from "./database-handle.js";
import { StoreError, isUniqueViolation } from "./errors.js";
import { serviceAccounts, users } from "./schema.js";
import { assertValidUsername, normalizeUsername } from "./users.js";

/** Longest accepted `tls_identity`: the column's size. */
const MAX_TLS_IDENTITY_LENGTH = 512;

/** A service account as the admin commands show it; no secret, no hash. */
export interface ServiceAccountInfo {
  /** The id of its `users` row: the `user_id` claim of its tokens. */
  readonly id: number;
  readonly name: string;
  readonly clientId: string;
  /** The TLS client identity mapped to it (SPIFFE URI or subject DN), or null. */
  readonly tlsIdentity: string | null;
  readonly isActive: boolean;
  readonly createdAt: Date;
  readonly secretRotatedAt: Date;
  /** When the previous secret stops working, if a rotation left one valid. */
  readonly previousSecretExpiresAt: Date | null;
  /** Direct grants, `app_label.codename`, sorted. */
  readonly permissions: readonly string[];
}

/** Fields of {@link createServiceAccount}. */
export interface CreateServiceAccountInput {
  /** Its `users.username`: the same alphabet as usernames, and unique among users and services. */
  name: string;
  /** Public client id, at most 64 characters, unique. */
  clientId: string;
  /** Self-describing hash of the client secret (as `PasswordHasher.hash` makes). */
  secretHash: string;
  /** SPIFFE URI SAN or subject DN of its TLS client certificate. Default: none. */
  tlsIdentity?: string;
}

/**
 * The canonical form of a TLS identity as stored and compared: a SPIFFE URI
 * as written (`spiffe://trust-domain/path`), or a subject DN in RFC 4514
 * order (`CN=billing,O=Example`, what `openssl x509 -noout -subject
 * -nameopt RFC2253` prints) with spaces around separators removed.
 *
 * @throws {StoreError} `INVALID_INPUT` for an empty, oversized or shapeless value.
 */
export function canonicalTlsIdentity(identity: string): string {
  const text = identity.trim();
  let canonical: string;
  if (/^spiffe:\/\//i.test(text)) {
    if (!/^spiffe:\/\/[a-z0-9._-]+(\/[^\s/?#]+)*$/i.test(text)) {
      throw new StoreError("INVALID_INPUT", `invalid SPIFFE ID ${JSON.stringify(identity)}`);
    }
    canonical = `spiffe://${text.slice("spiffe://".length)}`;
  } else {
    const parts = text.split(",").map((part) => part.trim());
    if (parts.some((part) => !/^[A-Za-z][A-Za-z0-9.-]*\s*=\s*\S/.test(part))) {
      throw new StoreError(
        "INVALID_INPUT",
        `invalid TLS identity ${JSON.stringify(identity)}: expected spiffe://… or a subject DN like CN=billing,O=Example`,
      );
    }
    canonical = parts.map((part) => part.replace(/\s*=\s*/, "=")).join(",");
  }
  if (canonical.length > MAX_TLS_IDENTITY_LENGTH) {
    throw new StoreError("INVALID_INPUT", `TLS identity longer than ${MAX_TLS_IDENTITY_LENGTH} characters`);
  }
  return canonical;
}

/**
 * Creates a service account: its `users` row (kind `service`, no password)
 * and its credentials, in one transaction.
 *
 * @throws {StoreError} `INVALID_INPUT` (bad name or TLS identity),
 *   `DUPLICATE_USERNAME` (a user or service has the name),
 *   `DUPLICATE_IDENTITY` (the client id or TLS identity is taken).
 */
export async function createServiceAccount(
  db: DrizzleDb,
  input: CreateServiceAccountInput,
): Promise<ServiceAccountInfo> {
  const name = assertValidUsername(input.name);
  const tlsIdentity = input.tlsIdentity === undefined ? null : canonicalTlsIdentity(input.tlsIdentity);
  const id = await db.transaction(async (tx) => {
    const [user] = await tx
      .insert(users)
      .values({ username: name, kind: "service", password: "" })
      .onConflictDoNothing({ target: users.username })
      .returning({ id: users.id });
    if (user === undefined) {
      throw new StoreError("DUPLICATE_USERNAME", `a user or service named "${name}" already exists`);
    }
    try {
      await tx.insert(serviceAccounts).values({
        userId: user.id,
        clientId: input.clientId,
        secretHash: input.secretHash,
        tlsIdentity,
      });
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new StoreError("DUPLICATE_IDENTITY", `TLS identity ${JSON.stringify(tlsIdentity)} is already mapped`, {
          cause: error,
        });
      }
      throw error;
    }
    return user.id;
  });
  return (await listServiceAccounts(db, [id]))[0]!;
}

/**
 * The service named `name`, or a StoreError saying why not: no such account,
 * or the name is a person's (so `service …` never manages a user).
 *
 * @throws {StoreError} `SERVICE_NOT_FOUND`.
 */
export async function requireServiceId(db: DrizzleDb, name: string): Promise<number> {
  const [row] = await db
    .select({ id: users.id, kind: users.kind })
    .from(users)
    .where(eq(users.username, normalizeUsername(name)))
    .limit(1);
  if (row === undefined) throw new StoreError("SERVICE_NOT_FOUND", `no service account "${name}"`);
  if (row.kind !== "service") {
    throw new StoreError("SERVICE_NOT_FOUND", `"${name}" is a user, not a service account (see "protoguard user")`);
  }
  return row.id;
}

/**
 * Refuses a name that belongs to a service account, for the commands that
 * manage people (`user …`, `otp …`, `token`): a service is managed with
 * `service …` and never gets a password, a TOTP secret or a refresh token.
 * Unknown names pass: the command then reports them its own way.
 *
 * @throws {StoreError} `INVALID_INPUT`.
 */
export async function assertNotService(db: DrizzleDb, name: string): Promise<void> {
  const [row] = await db
    .select({ kind: users.kind })
    .from(users)
    .where(eq(users.username, normalizeUsername(name)))
    .limit(1);
  if (row?.kind === "service") throw serviceAccountRefused(name);
}

/** The refusal of {@link assertNotService}, for callers that already hold the row. */
export function serviceAccountRefused(name: string): StoreError {
  return new StoreError("INVALID_INPUT", `"${name}" is a service account: manage it with "protoguard service"`);
}

/** What the client-credentials exchange needs to check a secret; only for that code. */
export interface ServiceCredentials {
  readonly userId: number;
  readonly isActive: boolean;
  readonly secretHash: string;
  readonly previousSecretHash: string | null;
  readonly previousSecretExpiresAt: Date | null;
}

/**
 * Whether the previous secret still admits the account at `atMs`: there is one, and its grace
 * period has not run out.
 */
export function inGrace<C extends Pick<ServiceCredentials, "previousSecretHash" | "previousSecretExpiresAt">>(
  credentials: C,
  atMs: number,
): credentials is C & { previousSecretHash: string; previousSecretExpiresAt: Date } {
  return (
    credentials.previousSecretHash !== null &&
    credentials.previousSecretExpiresAt !== null &&
    credentials.previousSecretExpiresAt.getTime() > atMs
  );
}

/** The credentials behind `clientId`, or undefined; one indexed query. */
export async function findServiceCredentials(db: DrizzleDb, clientId: string): Promise<ServiceCredentials | undefined> {
  const [row] = await db
    .select({
      userId: serviceAccounts.userId,
      isActive: users.isActive,
      secretHash: serviceAccounts.secretHash,
      previousSecretHash: serviceAccounts.previousSecretHash,
      previousSecretExpiresAt: serviceAccounts.previousSecretExpiresAt,
    })
    .from(serviceAccounts)
    .innerJoin(users, and(eq(users.id, serviceAccounts.userId), eq(users.kind, "service")))
    .where(eq(serviceAccounts.clientId, clientId))
    .limit(1);
  return row;
}

/**
 * Runs `issue` (the signing of a token) only if `secretHash`, the hash a client secret was
 * just verified against, still admits the service account `userId` at `at` (it is the current
 * hash, or the previous one while its grace period runs) and the account is still active: the
 * re-check at the point of issuing, as Login's conditional update. The account's rows stay
 * locked (`FOR SHARE`) until `issue` returns, so a rotation or deactivation committing
 * meanwhile waits for it, and {@link rotateServiceSecret} stamps its change after that: a token
 * minted from a secret is never newer than the rotation that removed the secret.
 *
 * @returns what `issue` returned, or undefined when the secret was rotated away (or the
 *   account deactivated or deleted) since it was read.
 */
export async function issueWhileServiceSecretHolds<T>(
  db: DrizzleDb,
  userId: number,
  secretHash: string,
  at: Date,
  issue: () => Promise<T>,
): Promise<T | undefined> {
  return db.transaction(async (tx) => {
    const [row] = await tx
      .select({
        isActive: users.isActive,
        secretHash: serviceAccounts.secretHash,
        previousSecretHash: serviceAccounts.previousSecretHash,
        previousSecretExpiresAt: serviceAccounts.previousSecretExpiresAt,
      })
      .from(serviceAccounts)
      .innerJoin(users, and(eq(users.id, serviceAccounts.userId), eq(users.kind, "service")))
      .where(eq(serviceAccounts.userId, userId))
      .limit(1)
      .for("share");
    if (row === undefined || !row.isActive) return undefined;
    const holds =
      row.secretHash === secretHash || (row.previousSecretHash === secretHash && inGrace(row, at.getTime()));
    return holds ? issue() : undefined;
  });
}

/**
 * The active service account mapped to one of `identities` (canonical TLS
 * identities, most specific first), or undefined. The first identity that
 * matches wins, so a SPIFFE ID is preferred to a subject.
 */
export async function findServiceByTlsIdentity(
  db: DrizzleDb,
  identities: readonly string[],
): Promise<number | undefined> {
  if (identities.length === 0) return undefined;
  const rows = await db
    .select({ userId: serviceAccounts.userId, tlsIdentity: serviceAccounts.tlsIdentity })
    .from(serviceAccounts)
    .innerJoin(users, and(eq(users.id, serviceAccounts.userId), eq(users.kind, "service")))
    .where(inArray(serviceAccounts.tlsIdentity, [...identities]));
  for (const identity of identities) {
    const row = rows.find((r) => r.tlsIdentity === identity);
    if (row !== undefined) return row.userId;
  }
  return undefined;
}

/**
 * Replaces a service's secret. With `graceSeconds > 0` the old secret keeps
 * working until then (callers roll over without an outage) and tokens
 * already issued stay valid; with 0 the old secret stops at once and so do
 * the tokens issued with it (`credentials_changed_at` is bumped).
 *
 * The account's row is locked first, so an exchange issuing a token from the old secret at that
 * moment (see `issueWhileServiceSecretHolds`) finishes before; without `rotatedAt`, the
 * change is stamped after that, a millisecond past any token it issued, so that token is
 * revoked too.
 *
 * @param rotatedAt when the rotation happens. Default: once the row is locked.
 * @throws {StoreError} `SERVICE_NOT_FOUND`, `INVALID_INPUT` for a negative grace.
 */
export async function rotateServiceSecret(
  db: DrizzleDb,
  name: string,
  secretHash: string,
  graceSeconds: number,
  rotatedAt?: Date,
): Promise<ServiceAccountInfo> {
  if (!Number.isSafeInteger(graceSeconds) || graceSeconds < 0) {
    throw new StoreError("INVALID_INPUT", "the grace period must be a whole number of seconds, 0 or more");
  }
  const id = await db.transaction(async (tx) => {
    const userId = await requireServiceId(tx, name);
    await tx
      .select({ userId: serviceAccounts.userId })
      .from(serviceAccounts)
      .where(eq(serviceAccounts.userId, userId))
      .for("update");
    // A token's iat keeps milliseconds and counts as revoked only when strictly older.
    const at = rotatedAt ?? new Date(Date.now() + 1);
    await tx
      .update(serviceAccounts)
      .set(
        graceSeconds > 0
          ? {
              secretHash,
              // The old hash, as the row held it before this statement.
              previousSecretHash: sql`${serviceAccounts.secretHash}`,
              previousSecretExpiresAt: new Date(at.getTime() + graceSeconds * 1000),
              secretRotatedAt: at,
            }
          : { secretHash, previousSecretHash: null, previousSecretExpiresAt: null, secretRotatedAt: at },
      )
      .where(eq(serviceAccounts.userId, userId));
    if (graceSeconds === 0) await tx.update(users).set({ credentialsChangedAt: at }).where(eq(users.id, userId));
    return userId;
  });
  return (await listServiceAccounts(db, [id]))[0]!;
}

/**
 * Activates or deactivates a service account. Deactivating also bumps
 * `credentials_changed_at`, so its outstanding tokens die at once and stay
 * dead if it is reactivated.
 *
 * @throws {StoreError} `SERVICE_NOT_FOUND`.
 */
export async function setServiceActive(db: DrizzleDb, name: string, active: boolean, at = new Date()): Promise<void> {
  await db.transaction(async (tx) => {
    const userId = await requireServiceId(tx, name);
    await tx
      .update(users)
      .set(active ? { isActive: true } : { isActive: false, credentialsChangedAt: at })
      .where(eq(users.id, userId));
  });
}

/**
 * Deletes a service account with its credentials and grants; its
 * outstanding tokens name a user that no longer exists and are refused.
 *
 * @throws {StoreError} `SERVICE_NOT_FOUND`.
 */
export async function deleteServiceAccount(db: DrizzleDb, name: string): Promise<void> {
  await db.transaction(async (tx) => {
    const userId = await requireServiceId(tx, name);
    await tx.delete(users).where(eq(users.id, userId));
  });
}

/** Every service account (or those with the given ids), by name. */
export async function listServiceAccounts(db: DrizzleDb, ids?: readonly number[]): Promise<ServiceAccountInfo[]> {
  const rows = await db
    .select({
      id: users.id,
      name: users.username,
      clientId: serviceAccounts.clientId,
      tlsIdentity: serviceAccounts.tlsIdentity,
      isActive: users.isActive,
      createdAt: serviceAccounts.createdAt,
      secretRotatedAt: serviceAccounts.secretRotatedAt,
      previousSecretExpiresAt: serviceAccounts.previousSecretExpiresAt,
      permissions: sql<string[]>`array(
        select p.app_label || '.' || p.codename from user_permissions up
          join permissions p on p.id = up.permission_id
          where up.user_id = ${users.id}
          order by 1
      )`,
    })
    .from(serviceAccounts)
    .innerJoin(users, and(eq(users.id, serviceAccounts.userId), eq(users.kind, "service")))
    .where(ids === undefined ? undefined : inArray(users.id, [...ids]))
    .orderBy(asc(users.username));
  return rows;
}
