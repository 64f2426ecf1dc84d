/**
 * Django writes a permission as `app_label.codename`; both halves are
 * identifiers. Anything else (spaces, a missing dot, two dots) is a typo that
 * would silently never match, so it is refused wherever a permission enters:
 * rules in .proto files, the CLI and the store.
 */
const PERMISSION_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,99}\.[A-Za-z_][A-Za-z0-9_]{0,99}$/;

/** Whether `value` is a well-formed `app_label.codename` permission string. */
export function isPermissionString(value: string): boolean {
  return PERMISSION_PATTERN.test(value);
}

/**
 * Splits a permission into its app label and codename.
 *
 * @throws {RangeError} if `value` is not `app_label.codename`.
 */
export function parsePermission(value: string): { appLabel: string; codename: string } {
  if (!isPermissionString(value)) {
    throw new RangeError(`invalid permission "${value}": expected app_label.codename`);
  }
  const dot = value.indexOf(".");
  return { appLabel: value.slice(0, dot), codename: value.slice(dot + 1) };
}
