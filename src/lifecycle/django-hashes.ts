/**
 * Verification of Django's other password hashers, for users imported from
 * a Django database: `argon2$…` (Argon2PasswordHasher), `bcrypt_sha256$…`
 * (BCryptSHA256PasswordHasher), `bcrypt$…` (BCryptPasswordHasher) and
 * `scrypt$…` (ScryptPasswordHasher, Django 4.0+). `pbkdf2_*` lives in
 * passwords.ts. A match always asks for a rehash: the user moves to
 * protoguard's hasher on the first successful login.
 *
 * argon2 and bcrypt come from hash-wasm (WebAssembly, no native addon). They
 * run on the calling thread, unlike node:crypto's scrypt and PBKDF2: about
 * half a second for Django's argon2 defaults, once per user until upgraded.
 */
import { createHash, scrypt, timingSafeEqual } from "node:crypto";
import { argon2Verify, bcryptVerify } from "hash-wasm";

/** Runs a derivation under the hasher's concurrency limit. */
export type DerivationSlot = <T>(task: () => Promise<T>) => Promise<T>;

// Bounds on parameters read from stored hashes: the text is data, and a
// tampered row must not make one login allocate gigabytes.
const MAX_ARGON2_MEMORY_KIB = 256 * 1024;
const MAX_ARGON2_TIME = 16;
const MAX_ARGON2_PARALLELISM = 16;
const MAX_BCRYPT_COST = 16;
const MAX_SCRYPT_N = 2 ** 20;
const MAX_SCRYPT_R = 32;
const MAX_SCRYPT_P = 16;
const MAX_SCRYPT_MEMORY = 1024 * 1024 * 1024;

const ARGON2_RE =
  /^argon2\$(argon2id|argon2i|argon2d)\$v=19\$m=([1-9][0-9]{0,8}),t=([1-9][0-9]?),p=([1-9][0-9]?)\$([A-Za-z0-9+/]{11,128})\$([A-Za-z0-9+/]{16,128})$/;
const BCRYPT_RE = /^(bcrypt_sha256|bcrypt)\$(\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53})$/;
const DJANGO_SCRYPT_RE =
  /^scrypt\$([1-9][0-9]{0,8})\$([^$]{1,256})\$([1-9][0-9]?)\$([1-9][0-9]?)\$([A-Za-z0-9+/]+={0,2})$/;

/**
 * Verifies `password` against a Django argon2, bcrypt or scrypt hash. Returns
 * undefined when `encoded` is none of these (or malformed, or its parameters
 * are out of bounds), otherwise whether it matches.
 */
export async function verifyDjangoHash(
  password: string,
  encoded: string,
  slot: DerivationSlot,
): Promise<boolean | undefined> {
  const argon = ARGON2_RE.exec(encoded);
  if (argon !== null) {
    const [, , m, t, p] = argon;
    if (Number(m) > MAX_ARGON2_MEMORY_KIB || Number(t) > MAX_ARGON2_TIME || Number(p) > MAX_ARGON2_PARALLELISM) {
      return undefined;
    }
    // Django stores argon2-cffi's PHC string behind its own "argon2" prefix.
    const phc = encoded.slice("argon2".length);
    return slot(() => argon2Verify({ password, hash: phc }).catch(() => false));
  }
  const bcrypt = BCRYPT_RE.exec(encoded);
  if (bcrypt !== null) {
    const [, algorithm, hash, cost] = bcrypt;
    if (Number(cost) < 4 || Number(cost) > MAX_BCRYPT_COST) return undefined;
    // BCryptSHA256 feeds bcrypt the hex SHA-256 of the password, which lifts
    // bcrypt's 72-byte limit; plain BCrypt gives the password, cut at 72 bytes.
    const input =
      algorithm === "bcrypt_sha256"
        ? createHash("sha256").update(password, "utf8").digest("hex")
        : Buffer.from(password, "utf8").subarray(0, 72);
    return slot(() => bcryptVerify({ password: input, hash: hash! }).catch(() => false));
  }
  const django = DJANGO_SCRYPT_RE.exec(encoded);
  if (django !== null) {
    const n = Number(django[1]);
    const r = Number(django[3]);
    const p = Number(django[4]);
    const powerOfTwo = n >= 2 && (n & (n - 1)) === 0;
    if (!powerOfTwo || n > MAX_SCRYPT_N || r > MAX_SCRYPT_R || p > MAX_SCRYPT_P || 128 * n * r > MAX_SCRYPT_MEMORY) {
      return undefined;
    }
    const expected = Buffer.from(django[5]!, "base64");
    if (expected.toString("base64") !== django[5] || expected.length !== 64) return undefined;
    const salt = Buffer.from(django[2]!, "utf8");
    const key = await slot(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          scrypt(password, salt, 64, { N: n, r, p, maxmem: 128 * r * (n + p + 2) + 1024 * 1024 }, (err, derived) =>
            err ? reject(err) : resolve(derived),
          );
        }),
    );
    return timingSafeEqual(key, expected);
  }
  return undefined;
}
