/**
 * Claim paths: where in a token's payload a trusted issuer puts the subject, the groups or the
 * username. Written either as a dot path (`"realm_access.roles"`) or, for claim names that
 * themselves contain dots or slashes (Auth0's namespaced `"https://example.com/roles"`), as a
 * JSON array of exact keys (`["https://example.com/roles"]`, `["resource_access", "my-api",
 * "roles"]`). An array is never split; a string always is.
 */

/** A claim path as configured: a dot path, or an array of exact keys. */
export type ClaimPathInit = string | readonly string[];

/** A parsed claim path: the keys to walk, in order. */
export type ClaimPath = readonly string[];

const MAX_SEGMENTS = 8;
const MAX_SEGMENT_LENGTH = 256;

/**
 * Parses a configured claim path.
 *
 * @throws {TypeError} naming `where` for an empty path, an empty segment or a non-string key.
 */
export function parseClaimPath(init: unknown, where: string): ClaimPath {
  const segments = typeof init === "string" ? init.split(".") : Array.isArray(init) ? [...(init as unknown[])] : [];
  if (segments.length === 0 || segments.length > MAX_SEGMENTS) {
    throw new TypeError(
      `${where} must be a dot path ("realm_access.roles") or an array of exact keys (["https://example.com/roles"])`,
    );
  }
  for (const segment of segments) {
    if (typeof segment !== "string" || segment.length === 0 || segment.length > MAX_SEGMENT_LENGTH) {
      throw new TypeError(
        `${where}: every key must be a non-empty string (write a key containing dots as an array: ["https://example.com/roles"])`,
      );
    }
  }
  return Object.freeze(segments as string[]);
}

/**
 * The value at `path` in `payload`, walking own properties of plain objects only: a path
 * through `__proto__`, `constructor` or an array index finds nothing.
 */
export function readClaim(payload: unknown, path: ClaimPath): unknown {
  let value: unknown = payload;
  for (const key of path) {
    if (typeof value !== "object" || value === null || Array.isArray(value) || !Object.hasOwn(value, key)) {
      return undefined;
    }
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}
