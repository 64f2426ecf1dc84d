/**
 * The one Drizzle schema module: every protoguard table lives here so that
 * `drizzle-kit generate` sees the whole database and migrations stay in one
 * ordered folder. Column names follow Django's auth tables where they overlap,
 * which keeps a data import from an existing Django project mechanical.
 */
import {
  bigint,
  boolean,
  index,
  integer,
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
export const users = pgTable("users", {
  id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
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
});

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
/** A row of `login_attempts` as read. */
export type LoginAttempt = typeof loginAttempts.$inferSelect;
/** A row of `login_attempts` as written. */
export type NewLoginAttempt = typeof loginAttempts.$inferInsert;
