/**
 * Names the scheme of a stored password hash from its text alone, without
 * checking that it is well formed: what `protoguard import django` reports,
 * and how it decides which imported users must reset their password.
 */

/** Schemes the password hasher verifies (and, for the Django ones, upgrades on login). */
export const VERIFIABLE_PASSWORD_SCHEMES: readonly string[] = Object.freeze([
  "scrypt-phc",
  "pbkdf2_sha256",
  "pbkdf2_sha1",
  "argon2",
  "bcrypt_sha256",
  "bcrypt",
  "scrypt",
]);

/**
 * The scheme of `encoded`: `"scrypt-phc"` for protoguard's own
 * `$scrypt$…`, Django's algorithm name for `algo$…` strings (`pbkdf2_sha256`,
 * `argon2`, `bcrypt_sha256`, `md5`, …), `"unusable"` for `''` and Django's
 * `!…` unusable passwords, `"unknown"` for anything else.
 */
export function passwordScheme(encoded: string): string {
  if (encoded === "" || encoded.startsWith("!")) return "unusable";
  if (encoded.startsWith("$scrypt$")) return "scrypt-phc";
  const dollar = encoded.indexOf("$");
  if (dollar <= 0) return "unknown";
  const algorithm = encoded.slice(0, dollar);
  return /^[a-z0-9_]{1,32}$/.test(algorithm) ? algorithm : "unknown";
}

/** Whether protoguard's password hasher can verify a hash of this form. */
export function isVerifiablePasswordHash(encoded: string): boolean {
  return VERIFIABLE_PASSWORD_SCHEMES.includes(passwordScheme(encoded));
}
