/**
 * The HS256 secret tests sign and verify with. Any value of 32 bytes or more would do; one
 * shared constant keeps it from being invented again in every file. Tests that need a second,
 * different secret (a token signed with the wrong key) write their own.
 */
export const TEST_SECRET = "protoguard-test-secret-at-least-32-bytes-long-0123456789";
