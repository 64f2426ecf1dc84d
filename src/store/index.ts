/**
 * The user store: protoguard's Drizzle schema on PostgreSQL (postgres.js) or
 * embedded PGlite, its migrations, the cached and invalidated principal
 * source that `createAuth` reads callers from, and the admin operations on
 * users, groups and permissions (what the `protoguard` command runs).
 *
 * @example
 * ```ts
 * import { createPrincipalSource, migrateDatabase, openDatabase } from "protoguard/store";
 *
 * const database = await openDatabase({ url: process.env.DATABASE_URL }); // PGlite when no url
 * await migrateDatabase(database);
 * const principals = await createPrincipalSource({ database });
 * ```
 *
 * @module protoguard/store
 */

// ---------------------------------------------------------------------------
// Opening the store and reading callers from it
// ---------------------------------------------------------------------------
export { openDatabase, PGLITE_DIR } from "./database.js";
export type { Database, DatabaseClient, DrizzleDb, OpenDatabaseOptions } from "./database.js";
export { migrateDatabase } from "./migrate.js";
export type { MigrateOptions } from "./migrate.js";
export { createPrincipalSource } from "../principals/source.js";
export type { CachedPrincipalSource, PrincipalSourceOptions } from "../principals/source.js";
export { createCertificatePrincipalSource } from "../principals/certificates.js";
export type {
  CachedCertificatePrincipalSource,
  CertificatePrincipalSourceOptions,
} from "../principals/certificates.js";
export { createIdentityResolver } from "../principals/identities.js";
export type { CachedIdentityResolver, IdentityResolverOptions } from "../principals/identities.js";
export {
  findExternalIdentity,
  linkExternalIdentity,
  loadGroupPermissions,
  provisionExternalUser,
  unlinkExternalIdentity,
} from "./external-identities.js";
export type { ExternalUserInit } from "./external-identities.js";

// ---------------------------------------------------------------------------
// Admin operations: users, groups, permissions
// ---------------------------------------------------------------------------
export {
  addUsersToGroup,
  assertValidUsername,
  createGroup,
  createUser,
  deleteUser,
  ensurePermissions,
  findUserByUsername,
  getUserById,
  grantGroupPermissions,
  grantUserPermissions,
  normalizeUsername,
  removeUsersFromGroup,
  revokeGroupPermissions,
  revokeUserPermissions,
  setPasswordHash,
  setUserActive,
  withoutSecrets,
} from "./users.js";
export type { CreateUserInput, PublicUser, SetPasswordHashOptions } from "./users.js";
export {
  assertNotService,
  canonicalTlsIdentity,
  createServiceAccount,
  deleteServiceAccount,
  findServiceByTlsIdentity,
  listServiceAccounts,
  requireServiceId,
  rotateServiceSecret,
  setServiceActive,
} from "./service-accounts.js";
export type { CreateServiceAccountInput, ServiceAccountInfo } from "./service-accounts.js";
export { StoreError, isUniqueViolation } from "./errors.js";
export type { StoreErrorCode } from "./errors.js";

// ---------------------------------------------------------------------------
// The Drizzle schema: every table, and row types
// ---------------------------------------------------------------------------
export * from "./schema.js";
export * as schema from "./schema.js";

// ---------------------------------------------------------------------------
// For library authors: the one-query lookup and cross-instance invalidation
// ---------------------------------------------------------------------------
export { loadPrincipal } from "./principal-query.js";
export type { PrincipalLookup, TokenRevocationInput } from "./principal-query.js";
export { INVALIDATION_CHANNEL, subscribeInvalidations } from "./invalidation.js";
export type { InvalidationEvent, InvalidationSubscription, SubscribeOptions } from "./invalidation.js";

// pool19: new exports
export { SUBSCRIBE_DEFAULTS } from "./invalidation.js";
export type { NotificationState } from "./invalidation.js";
