/**
 * API keys as a bearer credential: `pgk_<id>_<secret>`, told apart from a
 * JWT by its shape alone, before any verification or I/O. The id is public
 * (what the store looks keys up by, what `apikey list` shows); the secret is
 * 256 random bits, of which the store keeps only a SHA-256 hash.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Principal, PrincipalLookup } from "../principal.js";

/** What every key starts with: recognisable in logs, secret scanners and config files. */
export const API_KEY_PREFIX = "pgk_";

/** Length of a key's public id: 12 base32 characters (60 random bits). */
export const API_KEY_ID_LENGTH = 12;

/** Length of a key's secret: 32 random bytes in unpadded base64url. */
export const API_KEY_SECRET_LENGTH = 43;

/** Length of a whole key: prefix, id, `_`, secret. */
export const API_KEY_LENGTH = API_KEY_PREFIX.length + API_KEY_ID_LENGTH + 1 + API_KEY_SECRET_LENGTH;

// Lower-case RFC 4648 base32 for the id: no `_` or `-`, so the id's end is
// never in doubt, and nothing a case-folding log viewer could confuse.
const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";
const ID_PATTERN = /^[a-z2-7]{12}$/;
const SECRET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** An API key split into its parts; nothing about it is verified yet. */
export interface ApiKeyCredential {
  /** The public id, 12 base32 characters. */
  readonly id: string;
  /** The secret part as sent (43 base64url characters). */
  readonly secret: string;
}

/** Whether `value` has the shape of an API key (`pgk_` prefix). Says nothing of its validity. */
export function looksLikeApiKey(value: string): boolean {
  return value.startsWith(API_KEY_PREFIX);
}

/**
 * Splits `value` into id and secret when it has exactly the key shape;
 * undefined otherwise (a malformed credential).
 *
 * @example
 * ```ts
 * parseApiKey("pgk_abcdefghijkl_" + "A".repeat(43)); // { id: "abcdefghijkl", secret: "AAA…" }
 * parseApiKey("pgk_short"); // undefined
 * ```
 */
export function parseApiKey(value: string): ApiKeyCredential | undefined {
  if (value.length !== API_KEY_LENGTH || !looksLikeApiKey(value)) return undefined;
  const idEnd = API_KEY_PREFIX.length + API_KEY_ID_LENGTH;
  if (value.charCodeAt(idEnd) !== 95 /* _ */) return undefined;
  const id = value.slice(API_KEY_PREFIX.length, idEnd);
  const secret = value.slice(idEnd + 1);
  if (!ID_PATTERN.test(id) || !SECRET_PATTERN.test(secret)) return undefined;
  return { id, secret };
}

/** A new key: the text to hand out once, its id, and the hash the store keeps. */
export interface GeneratedApiKey {
  /** `pgk_<id>_<secret>`: shown once, never stored. */
  readonly key: string;
  readonly id: string;
  /** SHA-256 of the secret, hex: what the store keeps. */
  readonly secretHash: string;
}

/**
 * Makes a new key from the CSPRNG: a 60-bit id and a 256-bit secret.
 *
 * @example
 * ```ts
 * const { key, id, secretHash } = generateApiKey();
 * ```
 */
export function generateApiKey(): GeneratedApiKey {
  const idBytes = randomBytes(API_KEY_ID_LENGTH);
  let id = "";
  // Each character takes 5 bits of its own byte: 32 divides 256, so no bias.
  for (const byte of idBytes) id += ID_ALPHABET[byte & 31];
  const secret = randomBytes(32).toString("base64url");
  return { key: `${API_KEY_PREFIX}${id}_${secret}`, id, secretHash: hashApiKeySecret(secret) };
}

/**
 * SHA-256 of a key's secret as written, hex. A fast hash is enough: the
 * secret has 256 random bits, so there is nothing to guess. Hashing the text
 * (not the decoded bytes) means a respelled secret (base64url's spare bits)
 * is a different secret, refused.
 */
export function hashApiKeySecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/**
 * Whether `secret` hashes to `storedHash`, compared in constant time (the
 * lengths are fixed, so only the content could leak, and it does not).
 */
export function apiKeySecretMatches(secret: string, storedHash: string): boolean {
  const actual = createHash("sha256").update(secret).digest();
  const expected = Buffer.from(storedHash, "hex");
  return expected.length === actual.length && timingSafeEqual(actual, expected);
}

/**
 * What an API key look-up found. `invalid` covers an unknown id and a wrong
 * secret alike (a caller learns nothing of which ids exist); `revoked` and
 * `expired` are answered only to a holder of the right secret; the rest is
 * the owner's lookup (`not_found` / `inactive` for a deleted or deactivated
 * owner), with, when `ok`, the principal already limited to the key's scopes.
 */
export type ApiKeyLookup =
  | (Extract<PrincipalLookup, { status: "ok" }> & {
      /** When the key stops working, seconds since the epoch; absent when it does not expire. */
      readonly expiresAt?: number;
      /** When the key was made, seconds since the epoch. */
      readonly createdAt: number;
    })
  | Exclude<PrincipalLookup, { status: "ok" }>
  | { readonly status: "invalid" }
  | { readonly status: "expired" };

/**
 * Resolves API keys to their owners (see `createApiKeySource` in
 * `protoguard/store`). Throwing means "backend unavailable".
 */
export interface ApiKeyPrincipalSource {
  load(key: ApiKeyCredential): Promise<ApiKeyLookup>;
  /** The answer without I/O when one is cached (positive or negative); optional. */
  peek?(key: ApiKeyCredential): ApiKeyLookup | undefined;
}

/**
 * The principal a key acts as: its owner with the owner's permissions
 * intersected with the key's scopes. Staff and superuser status and group
 * names are not carried: a key can do only what its scopes name, whatever
 * its owner is.
 */
export function scopedPrincipal(owner: Principal, id: string, scopes: readonly string[]): Principal {
  const sorted = Object.freeze([...scopes].sort());
  const permissions = new Set(sorted.filter((scope) => owner.permissions.has(scope)));
  return Object.freeze({
    id: owner.id,
    username: owner.username,
    email: owner.email,
    isStaff: false,
    isSuperuser: false,
    permissions,
    ...(owner.kind !== undefined && { kind: owner.kind }),
    groups: new Set<string>(),
    apiKey: Object.freeze({ id, scopes: sorted }),
  });
}
