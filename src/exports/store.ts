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
 * The tables themselves, with their row types, are `protoguard/store/schema`
 * (`import * as schema from "protoguard/store/schema"`, as drizzle does).
 *
 * @module protoguard/store
 */

// ---------------------------------------------------------------------------
// Opening the store and reading callers from it
// ---------------------------------------------------------------------------
export { openDatabase, PGLITE_DIR } from "../store/database.js";
export type { OpenDatabaseOptions } from "../store/database.js";
export type { Database, DatabaseClient, DrizzleDb } from "../store/database-handle.js";
export { migrateDatabase } from "../store/migrate.js";
export type { MigrateOptions } from "../store/migrate.js";
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
} from "../store/external-identities.js";
export type { ExternalUserInit } from "../store/external-identities.js";

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
} from "../store/users.js";
export type { CreateUserInput, PublicUser, SetPasswordHashOptions } from "../store/users.js";
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
} from "../store/service-accounts.js";
export type { CreateServiceAccountInput, ServiceAccountInfo } from "../store/service-accounts.js";
export { StoreError, isUniqueViolation } from "../store/errors.js";
export type { StoreErrorCode } from "../store/errors.js";

// ---------------------------------------------------------------------------
// For library authors: the one-query lookup and cross-instance invalidation
// ---------------------------------------------------------------------------
export { loadPrincipal } from "../store/principal-query.js";
export type { TokenRevocationInput } from "../store/principal-query.js";
export { INVALIDATION_CHANNEL, SUBSCRIBE_DEFAULTS, subscribeInvalidations } from "../store/invalidation.js";
export type {
  InvalidationEvent,
  InvalidationSubscription,
  NotificationState,
  SubscribeOptions,
} from "../store/invalidation.js";

// ---------------------------------------------------------------------------
// Moving from Django: import its users, groups and permissions
// ---------------------------------------------------------------------------
export { importFromDjango } from "../store/django-import.js";
export type { DjangoImportOptions, DjangoImportReport } from "../store/django-import.js";

// ---------------------------------------------------------------------------
// The read side: users, groups, permissions, who may call what, sessions
// ---------------------------------------------------------------------------
export {
  DEFAULT_USER_PAGE_SIZE,
  MAX_USER_PAGE_SIZE,
  deleteGroup,
  groupDetail,
  listGroups,
  listPermissions,
  listUsers,
  userDetail,
} from "../store/directory.js";
export type {
  EffectivePermission,
  GroupDetail,
  GroupSummary,
  ListUsersOptions,
  PermissionInfo,
  UserDetail,
  UserPage,
  UserSummary,
} from "../store/directory.js";
export { whoCan } from "../store/who-can.js";
export type { WhoCanResult } from "../store/who-can.js";
export { listSessions, listSessionsOfUser, revokeSession, sessionOwner } from "../store/sessions.js";
export type { SessionInfo } from "../store/sessions.js";

// ---------------------------------------------------------------------------
// API keys: the cached source the auth layer resolves keys with, and the table's functions
// ---------------------------------------------------------------------------
export { createApiKeySource } from "../principals/api-keys.js";
export type { ApiKeySourceOptions, CachedApiKeySource } from "../principals/api-keys.js";
export { findApiKey, insertApiKey, listApiKeys, revokeApiKey, touchApiKey } from "../store/api-keys.js";
export type { ApiKeyInfo, ApiKeyRecord, InsertApiKeyInput } from "../store/api-keys.js";

// ---------------------------------------------------------------------------
// The audit log: hash-chained security events and writes
// ---------------------------------------------------------------------------
export {
  AUDIT_GENESIS_HASH,
  appendAuditEvent,
  auditEventJson,
  auditRowHash,
  formatAuditActor,
  listAuditEvents,
  pruneAuditEvents,
  recordAuditEvent,
  verifyAuditChain,
} from "../store/audit.js";
export type { AuditEventJson, AuditListFilter, AuditPruneResult, AuditVerifyResult } from "../store/audit.js";
export { AUDIT_EVENT_TYPES } from "../audit-event.js";
export type { AuditActor, AuditContext, AuditEventInput, AuditEventType } from "../audit-event.js";
