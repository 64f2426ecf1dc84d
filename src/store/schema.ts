/**
 * The one Drizzle schema module: every protoguard table lives here so that
 * `drizzle-kit generate` sees the whole database and migrations stay in one
 * ordered folder. Column names follow Django's auth tables where they overlap,
 * which keeps a data import from an existing Django project mechanical.
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  check,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
  varchar,
} from "drizzle-orm/pg-core";

/**
 * Accounts. `password` holds a self-describing hash string (PHC or Django
 * format); `''` (the default) means no password login is possible.
 * `credentials_changed_at` is bumped on password change and deactivation:
 * tokens whose `iat` precedes it are treated as revoked.
 */
export const users = pgTable(
  "users",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    /**
     * `user` for people; `service` for service accounts, which never log in
     * with a password (their `password` stays `''`) and authenticate through
     * `service_accounts` instead. Permissions and groups work the same for both.
     */
    kind: varchar("kind", { length: 16 }).$type<PrincipalKindName>().notNull().default("user"),
    username: varchar("username", { length: 150 }).notNull().unique(),
    email: varchar("email", { length: 254 }).notNull().default(""),
    password: text("password").notNull().default(""),
    isActive: boolean("is_active").notNull().default(true),
    isStaff: boolean("is_staff").notNull().default(false),
    isSuperuser: boolean("is_superuser").notNull().default(false),
    dateJoined: timestamp("date_joined", { withTimezone: true }).notNull().defaultNow(),
    lastLogin: timestamp("last_login", { withTimezone: true }),
    credentialsChangedAt: timestamp("credentials_changed_at", { withTimezone: true }).notNull().defaultNow(),
    /** Base32 TOTP secret; null until enrolment starts. */
    totpSecret: text("otp_secret"),
    totpEnabled: boolean("otp_enabled").notNull().default(false),
    /** Last accepted TOTP time step, so one code is never accepted twice. */
    totpLastStep: bigint("otp_last_step", { mode: "number" }),
    /**
     * Set by `protoguard import django` for a user whose imported password
     * hash protoguard cannot verify: Login answers `PASSWORD_RESET_REQUIRED`
     * (instead of a silent `INVALID_CREDENTIALS`) until a new password is set,
     * which clears it. Default false.
     */
    passwordResetRequired: boolean("password_reset_required").notNull().default(false),
  },
  (t) => [check("users_kind_check", sql`${t.kind} in ('user', 'service')`)],
);

/** What `users.kind` may hold. */
export type PrincipalKindName = "user" | "service";

/** Named sets of permissions that users can belong to. */
export const groups = pgTable("groups", {
  id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
  name: varchar("name", { length: 150 }).notNull().unique(),
});

/** Permissions, written `app_label.codename` everywhere outside this table. */
export const permissions = pgTable(
  "permissions",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    appLabel: varchar("app_label", { length: 100 }).notNull(),
    codename: varchar("codename", { length: 100 }).notNull(),
    name: varchar("name", { length: 255 }).notNull().default(""),
  },
  (t) => [unique("permissions_app_label_codename_unique").on(t.appLabel, t.codename)],
);

/**
 * Group membership. The primary key (user_id, group_id) serves lookups by
 * user; the extra index serves "members of a group" and cascading deletes of
 * a group.
 */
export const userGroups = pgTable(
  "user_groups",
  {
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    groupId: integer("group_id")
      .notNull()
      .references(() => groups.id, { onDelete: "cascade" }),
  },
  (t) => [primaryKey({ columns: [t.userId, t.groupId] }), index("user_groups_group_id_idx").on(t.groupId)],
);

/** Permissions granted directly to a user. */
export const userPermissions = pgTable(
  "user_permissions",
  {
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    permissionId: integer("permission_id")
      .notNull()
      .references(() => permissions.id, { onDelete: "cascade" }),
  },
  (t) => [
    primaryKey({ columns: [t.userId, t.permissionId] }),
    index("user_permissions_permission_id_idx").on(t.permissionId),
  ],
);

/** Permissions granted to every member of a group. */
export const groupPermissions = pgTable(
  "group_permissions",
  {
    groupId: integer("group_id")
      .notNull()
      .references(() => groups.id, { onDelete: "cascade" }),
    permissionId: integer("permission_id")
      .notNull()
      .references(() => permissions.id, { onDelete: "cascade" }),
  },
  (t) => [
    primaryKey({ columns: [t.groupId, t.permissionId] }),
    index("group_permissions_permission_id_idx").on(t.permissionId),
  ],
);

/**
 * Refresh tokens, stored only as the sha256 hex of the token so a database
 * leak yields nothing usable. `used_at` is set by a single conditional UPDATE
 * when a token is rotated, which makes each token single-use even under
 * concurrent refreshes; a second use of a rotated token revokes its family.
 */
export const refreshTokens = pgTable(
  "refresh_tokens",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    jti: varchar("jti", { length: 64 }).notNull().unique(),
    // varchar rather than uuid so the issuer may pick any random id format.
    familyId: varchar("family_id", { length: 64 }).notNull(),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    tokenHash: varchar("token_hash", { length: 64 }).notNull().unique(),
    // The access token issued beside this refresh token: logout and reuse
    // detection revoke it by jti together with the family.
    accessJti: varchar("access_jti", { length: 64 }).notNull(),
    accessExpiresAt: timestamp("access_expires_at", { withTimezone: true }).notNull(),
    issuedAt: timestamp("issued_at", { withTimezone: true }).notNull(),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    usedAt: timestamp("used_at", { withTimezone: true }),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
    // Who obtained this token (at login, or by the refresh that issued it), for the session
    // list: the client address (`peerAddressKey`) and the User-Agent header, '' when unknown.
    peerAddress: varchar("peer_address", { length: 64 }).notNull().default(""),
    userAgent: varchar("user_agent", { length: 512 }).notNull().default(""),
  },
  (t) => [index("refresh_tokens_family_id_idx").on(t.familyId), index("refresh_tokens_user_id_idx").on(t.userId)],
);

/**
 * Revoked access tokens, keyed by `jti` (never by the token string). A row is
 * only needed until the token would have expired anyway, so `expires_at`
 * tells a purge job what it may delete.
 */
export const revokedTokens = pgTable(
  "revoked_tokens",
  {
    jti: varchar("jti", { length: 64 }).primaryKey(),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    revokedAt: timestamp("revoked_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    // Serves the cascade from users and "revoke everything of this user".
    index("revoked_tokens_user_id_idx").on(t.userId),
    index("revoked_tokens_expires_at_idx").on(t.expiresAt),
  ],
);

/**
 * Client credentials of service accounts (a `users` row of kind `service`).
 * The secret is stored only as a self-describing hash, like a password.
 * Rotation keeps the previous hash valid until `previous_secret_expires_at`
 * so callers can roll over without an outage. `tls_identity` maps a TLS
 * client certificate (a SPIFFE URI SAN such as
 * `spiffe://example.org/billing`, or a subject DN) to the account.
 */
export const serviceAccounts = pgTable("service_accounts", {
  userId: integer("user_id")
    .primaryKey()
    .references(() => users.id, { onDelete: "cascade" }),
  clientId: varchar("client_id", { length: 64 }).notNull().unique(),
  secretHash: text("secret_hash").notNull(),
  previousSecretHash: text("previous_secret_hash"),
  previousSecretExpiresAt: timestamp("previous_secret_expires_at", { withTimezone: true }),
  tlsIdentity: varchar("tls_identity", { length: 512 }).unique(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  secretRotatedAt: timestamp("secret_rotated_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * Identities asserted by trusted external issuers (an IdP's `iss` and the
 * subject claim it puts in tokens) linked to local users. Deactivating or
 * deleting the local user locks the external identity out with it.
 */
export const externalIdentities = pgTable(
  "external_identities",
  {
    issuer: varchar("issuer", { length: 512 }).notNull(),
    subject: varchar("subject", { length: 255 }).notNull(),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.issuer, t.subject] }), index("external_identities_user_id_idx").on(t.userId)],
);

/**
 * External identities that were linked once and are no more: a row is left
 * here (by a trigger on `external_identities`, whoever deletes the link:
 * `user unlink`, `user delete`, a cascade from Django's admin, psql) so that
 * provisioning never brings the subject back as a fresh user. Linking the
 * subject again (`protoguard user link`) removes the row.
 */
export const externalIdentityTombstones = pgTable(
  "external_identity_tombstones",
  {
    issuer: varchar("issuer", { length: 512 }).notNull(),
    subject: varchar("subject", { length: 255 }).notNull(),
    removedAt: timestamp("removed_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.issuer, t.subject] })],
);

/**
 * Login throttling state per normalized username. Deliberately not a foreign
 * key: unknown usernames are throttled too, so probing cannot tell which
 * accounts exist.
 */
export const loginAttempts = pgTable("login_attempts", {
  username: varchar("username", { length: 150 }).primaryKey(),
  failures: integer("failures").notNull().default(0),
  lockedUntil: timestamp("locked_until", { withTimezone: true }),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * What `protoguard import django` last read for each user it imported: the
 * Django row's fields as canonical JSON. A re-import applies a field only
 * when Django changed it since, so a hash protoguard upgraded on login (or a
 * change made on protoguard's side) is not undone by an unchanged Django row.
 */
export const djangoImportedUsers = pgTable("django_imported_users", {
  userId: integer("user_id")
    .primaryKey()
    .references(() => users.id, { onDelete: "cascade" }),
  source: text("source").notNull(),
  importedAt: timestamp("imported_at", { withTimezone: true }).notNull().defaultNow(),
});

/** A row of `users` as read. */
export type User = typeof users.$inferSelect;
/** A row of `users` as written (defaults optional; `id` is generated). */
export type NewUser = typeof users.$inferInsert;
/** A row of `groups` as read. */
export type Group = typeof groups.$inferSelect;
/** A row of `groups` as written. */
export type NewGroup = typeof groups.$inferInsert;
/** A row of `permissions` as read. */
export type Permission = typeof permissions.$inferSelect;
/** A row of `permissions` as written. */
export type NewPermission = typeof permissions.$inferInsert;
/** A row of `user_groups`. */
export type UserGroup = typeof userGroups.$inferSelect;
/** A row of `user_permissions`. */
export type UserPermission = typeof userPermissions.$inferSelect;
/** A row of `group_permissions`. */
export type GroupPermission = typeof groupPermissions.$inferSelect;
/** A row of `refresh_tokens` as read. */
export type RefreshToken = typeof refreshTokens.$inferSelect;
/** A row of `refresh_tokens` as written. */
export type NewRefreshToken = typeof refreshTokens.$inferInsert;
/** A row of `revoked_tokens` as read. */
export type RevokedToken = typeof revokedTokens.$inferSelect;
/** A row of `revoked_tokens` as written. */
export type NewRevokedToken = typeof revokedTokens.$inferInsert;
/** A row of `service_accounts` as read. */
export type ServiceAccount = typeof serviceAccounts.$inferSelect;
/** A row of `service_accounts` as written. */
export type NewServiceAccount = typeof serviceAccounts.$inferInsert;
/** A row of `external_identities` as read. */
export type ExternalIdentity = typeof externalIdentities.$inferSelect;
/** A row of `external_identities` as written. */
export type NewExternalIdentity = typeof externalIdentities.$inferInsert;
/** A row of `external_identity_tombstones` as read. */
export type ExternalIdentityTombstone = typeof externalIdentityTombstones.$inferSelect;
/** A row of `login_attempts` as read. */
export type LoginAttempt = typeof loginAttempts.$inferSelect;
/** A row of `login_attempts` as written. */
export type NewLoginAttempt = typeof loginAttempts.$inferInsert;

/**
 * API keys (`pgk_<id>_<secret>`): the public id and a SHA-256 hash of the
 * secret, never the secret. A key acts for its owner (a person or a service
 * account: both are `users` rows) with the owner's permissions intersected
 * with `scopes` at call time. `last_used_at` is written at most once a minute
 * per key. Revocation is final: `revoked_at` is set, the row stays for the
 * record. A change to `revoked_at`, `expires_at`, `scopes` or the owner
 * announces the owner on the invalidation channel (migration `api_keys_sql`).
 */
export const apiKeys = pgTable(
  "api_keys",
  {
    id: varchar("id", { length: 16 }).primaryKey(),
    ownerId: integer("owner_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    name: varchar("name", { length: 200 }).notNull().default(""),
    /** SHA-256 of the secret, hex. */
    secretHash: varchar("secret_hash", { length: 64 }).notNull(),
    /** Permissions the key is limited to, `app_label.codename`. */
    scopes: text("scopes").array().notNull().default(sql`'{}'::text[]`),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp("expires_at", { withTimezone: true }),
    lastUsedAt: timestamp("last_used_at", { withTimezone: true }),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
  },
  (t) => [index("api_keys_owner_idx").on(t.ownerId)],
);

/** A row of `api_keys` as read. */
export type ApiKeyRow = typeof apiKeys.$inferSelect;
/** A row of `api_keys` as written. */
export type NewApiKeyRow = typeof apiKeys.$inferInsert;

/**
 * The audit log: security events and every write, hash-chained. Each row's
 * `hash` is SHA-256 over a canonical encoding of its content and `prev_hash`
 * (the previous row's `hash`), so `protoguard audit verify` finds the first
 * row altered, removed or reordered. Rows are appended only through
 * `recordAuditEvent` (src/store/audit.ts), which serialises appends on the
 * {@link auditChain} row. `detail` never holds a password, token or secret.
 */
export const auditEvents = pgTable(
  "audit_events",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    time: timestamp("time", { withTimezone: true, precision: 3 }).notNull(),
    type: varchar("type", { length: 64 }).notNull(),
    /** `user:<id>`, `service:<id>`, `cli:<os user>`, `anonymous` or `system`. */
    actor: varchar("actor", { length: 300 }).notNull(),
    actorUsername: varchar("actor_username", { length: 150 }),
    subject: varchar("subject", { length: 600 }),
    peerAddress: varchar("peer_address", { length: 128 }),
    userAgent: varchar("user_agent", { length: 512 }),
    requestId: varchar("request_id", { length: 128 }),
    detail: jsonb("detail").$type<Record<string, unknown>>().notNull().default({}),
    prevHash: varchar("prev_hash", { length: 64 }).notNull(),
    hash: varchar("hash", { length: 64 }).notNull(),
  },
  (t) => [index("audit_events_time_idx").on(t.time), index("audit_events_type_idx").on(t.type, t.id)],
);

/**
 * The audit chain's state, one row (`id` = 1, inserted by the migration):
 * the head (last appended row and its hash), locked FOR UPDATE by every
 * append so that instances writing at once form one chain; and the anchor
 * (the last pruned row's id and hash), where verification starts after
 * retention removed the oldest rows.
 */
export const auditChain = pgTable(
  "audit_chain",
  {
    id: integer("id").primaryKey(),
    headId: bigint("head_id", { mode: "number" }).notNull().default(0),
    headHash: varchar("head_hash", { length: 64 }).notNull(),
    anchorId: bigint("anchor_id", { mode: "number" }).notNull().default(0),
    anchorHash: varchar("anchor_hash", { length: 64 }).notNull(),
    prunedAt: timestamp("pruned_at", { withTimezone: true }),
  },
  (t) => [check("audit_chain_one_row", sql`${t.id} = 1`)],
);

/** A row of `audit_events` as read. */
export type AuditEventRow = typeof auditEvents.$inferSelect;
/** A row of `audit_events` as written. */
export type NewAuditEventRow = typeof auditEvents.$inferInsert;
/** The row of `audit_chain`. */
export type AuditChainRow = typeof auditChain.$inferSelect;
