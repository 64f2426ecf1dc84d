/**
 * What users import in their own tests (django-cfg's "Testing with
 * Authentication"): a throwaway user store, users with permissions and
 * groups, tokens minted for them, and Connect's in-memory transport wired
 * with the auth layer.
 *
 * @module protoguard/testing
 */
export { createTestDatabase } from "../testing/database.js";
export type { TestDatabase, TestDatabaseOptions } from "../testing/database.js";
// The table types (ConformanceTable, ConformanceCase, …) are in `protoguard`, where generated code finds them.
export { checkConformance, runConformance } from "../testing/conformance.js";
export type {
  ConformanceOptions,
  ConformanceRequest,
  ConformanceRequestContext,
  ConformanceResult,
  ConformanceTestContext,
} from "../testing/conformance.js";

export { createTestAuth } from "../testing/auth.js";
export type { TestAuth, TestAuthOptions, TestAuthServiceParts, TestUserInit } from "../testing/auth.js";
