/**
 * The store: protoguard's schema, connection, migrations, the one-query
 * principal lookup and the admin operations over users, groups and
 * permissions.
 */
export * from "./schema.js";
export { openDatabase } from "./database.js";
export type { Database, DatabaseClient, DrizzleDb, OpenDatabaseOptions } from "./database.js";
export { migrateDatabase } from "./migrate.js";
export { loadPrincipal } from "./principal-query.js";
export type { PrincipalLookup, TokenRevocationInput } from "./principal-query.js";
export { StoreError, isUniqueViolation } from "./errors.js";
export type { StoreErrorCode } from "./errors.js";
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
  removeUsersFromGroup,
  revokeGroupPermissions,
  revokeUserPermissions,
  setPasswordHash,
  setUserActive,
} from "./users.js";
export type { CreateUserInput, SetPasswordHashOptions } from "./users.js";
