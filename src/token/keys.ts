/**
 * Signing and verification keys: parsing, validation against the algorithm they are bound to,
 * `kid` assignment, and the public JWKS.
 */
import {
  createHmac,
  createPrivateKey,
  createSecretKey,
  createPublicKey,
  generateKeyPair,
  KeyObject,
  webcrypto,
} from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { calculateJwkThumbprint } from "jose";
import type { JWK } from "jose";
import { KeyConfigError } from "./errors.js";

/** The algorithms protoguard signs and verifies with. */
export type TokenAlgorithm = "HS256" | "RS256" | "ES256";

/** Asymmetric algorithms (the ones a JWKS can publish). */
export type AsymmetricAlgorithm = "RS256" | "ES256";

/** Key material accepted for RS256/ES256: a PEM string (PKCS8 / SPKI), a JWK, a CryptoKey or a KeyObject. */
export type AsymmetricKeyInput = string | JWK | CryptoKey | KeyObject;

/**
 * One configured key. The algorithm comes from here, never from a token header, and each key is
 * bound to exactly that one algorithm.
 *
 * - HS256: `secret` of at least 32 bytes (a string is used as its UTF-8 bytes, as
 *   djangorestframework-simplejwt does with `SIGNING_KEY`).
 * - RS256 (RSA >= 2048 bits) / ES256 (P-256): a `privateKey` (the public key is derived from it)
 *   and/or a `publicKey` (verification only).
 *
 * `kid` defaults to the RFC 7638 JWK thumbprint for asymmetric keys and to a short HMAC-derived
 * id for HS256 secrets.
 */
export type KeyConfig =
  | { alg: "HS256"; secret: string | Uint8Array | undefined; kid?: string | undefined }
  | {
      alg: AsymmetricAlgorithm;
      kid?: string | undefined;
      privateKey?: AsymmetricKeyInput | undefined;
      publicKey?: AsymmetricKeyInput | undefined;
    };

/** A key that verifies tokens of exactly one algorithm. */
export interface VerificationKey {
  readonly kid: string;
  readonly alg: TokenAlgorithm;
  /** Non-extractable WebCrypto key (public key, or the HMAC secret) with the `verify` usage. */
  readonly key: CryptoKey;
  /**
   * The same key as a `node:crypto` KeyObject, when the keyring made it: what the synchronous
   * signature pre-check uses (Node 24 deprecates making one from a non-extractable CryptoKey).
   */
  readonly nodeKey?: KeyObject;
}

/** The key new tokens are signed with. */
export interface SigningKey {
  readonly kid: string;
  readonly alg: TokenAlgorithm;
  /** Non-extractable WebCrypto key (private key, or the HMAC secret) with the `sign` usage. */
  readonly key: CryptoKey;
}

/** A validated set of keys, built by {@link createKeyring}. */
export interface Keyring {
  /** The first configured key that can sign, or `undefined` for a verification-only keyring. */
  readonly signingKey: SigningKey | undefined;
  /** Every key that verifies, by `kid`. */
  readonly keys: ReadonlyMap<string, VerificationKey>;
  /** The distinct algorithms of {@link keys}: the verifier's allow-list. */
  readonly algorithms: readonly TokenAlgorithm[];
  /** Public JWKS of the asymmetric keys (`kid`, `alg`, `use: "sig"`; never private members or HMAC secrets). */
  publicJwks(): { keys: JWK[] };
}

const MIN_HMAC_BYTES = 32;
const MIN_RSA_BITS = 2048;
const KID_PATTERN = /^[\x21-\x7e]{1,128}$/;
const subtle = webcrypto.subtle;

const HMAC_PARAMS = { name: "HMAC", hash: "SHA-256" } as const;
const IMPORT_PARAMS: Record<AsymmetricAlgorithm, RsaHashedImportParams | EcKeyImportParams> = {
  RS256: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
  ES256: { name: "ECDSA", namedCurve: "P-256" },
};

interface PreparedKey {
  verification: VerificationKey;
  signing: SigningKey | undefined;
  publicJwk: JWK | undefined;
  /** Identifies the key material (not the kid) to catch the same key configured twice. */
  fingerprint: string;
}

/**
 * Validates and imports keys once, at startup.
 *
 * List the newest key first: it signs. Older keys stay in the list so tokens they signed keep
 * verifying until those expire, then remove them. An HS256 key and an RS256 key may share a
 * keyring (they get different kids), but no key ever verifies two algorithms.
 *
 * @throws {KeyConfigError} on any unusable key (codes `NO_KEYS`, `KEY_TOO_SHORT`,
 *   `KEY_TYPE_MISMATCH`, `KEY_CURVE_MISMATCH`, `DUPLICATE_KID`, ...).
 * @example
 * ```ts
 * const keyring = await createKeyring([
 *   { alg: "ES256", privateKey: await readFile("keys/2025-06/private.pem", "utf8") }, // signs
 *   { alg: "ES256", publicKey: await readFile("keys/2025-01/public.pem", "utf8") },   // still verifies
 * ]);
 * ```
 */
export async function createKeyring(keys: readonly KeyConfig[]): Promise<Keyring> {
  if (!Array.isArray(keys) || keys.length === 0) {
    throw new KeyConfigError("NO_KEYS", "at least one key is required");
  }
  const prepared = await Promise.all(keys.map((config, index) => prepareKey(config, index)));
  const byKid = new Map<string, VerificationKey>();
  const fingerprints = new Set<string>();
  const jwks: JWK[] = [];
  const algorithms = new Set<TokenAlgorithm>();
  let signingKey: SigningKey | undefined;
  for (const p of prepared) {
    const { kid } = p.verification;
    if (byKid.has(kid)) throw new KeyConfigError("DUPLICATE_KID", `kid "${kid}" is configured twice`);
    if (fingerprints.has(p.fingerprint)) {
      throw new KeyConfigError("DUPLICATE_KEY", `the key with kid "${kid}" is already configured under another kid`);
    }
    byKid.set(kid, p.verification);
    fingerprints.add(p.fingerprint);
    algorithms.add(p.verification.alg);
    if (p.publicJwk) jwks.push(p.publicJwk);
    signingKey ??= p.signing;
  }
  const frozenJwks = Object.freeze(jwks.map((jwk) => Object.freeze(jwk)));
  return Object.freeze({
    signingKey,
    keys: byKid,
    algorithms: Object.freeze([...algorithms]),
    publicJwks: () => ({ keys: frozenJwks.map((jwk) => ({ ...jwk })) }),
  });
}

async function prepareKey(config: KeyConfig, index: number): Promise<PreparedKey> {
  const where = `key #${index}`;
  if (config === null || typeof config !== "object") {
    throw new KeyConfigError("KEY_INVALID", `${where} is not a key configuration object`);
  }
  if (config.kid !== undefined && (typeof config.kid !== "string" || !KID_PATTERN.test(config.kid))) {
    throw new KeyConfigError("KID_INVALID", `${where}: kid must be 1-128 printable ASCII characters`);
  }
  switch (config.alg) {
    case "HS256":
      return prepareHmac(config, where);
    case "RS256":
    case "ES256":
      return prepareAsymmetric(config, where);
    default:
      throw new KeyConfigError(
        "UNSUPPORTED_ALG",
        `${where}: alg must be HS256, RS256 or ES256, got ${JSON.stringify((config as { alg?: unknown }).alg)}`,
      );
  }
}

async function prepareHmac(config: Extract<KeyConfig, { alg: "HS256" }>, where: string): Promise<PreparedKey> {
  const { secret } = config;
  if ("privateKey" in config || "publicKey" in config) {
    throw new KeyConfigError("KEY_TYPE_MISMATCH", `${where}: HS256 takes a secret, not a private/public key`);
  }
  let bytes: Uint8Array;
  if (typeof secret === "string") {
    // A PEM used as an HMAC secret is the classic alg-confusion setup (RFC 8725 §2.1): refuse it.
    if (secret.includes("-----BEGIN")) {
      throw new KeyConfigError("KEY_TYPE_MISMATCH", `${where}: an HS256 secret must not be a PEM key`);
    }
    bytes = new TextEncoder().encode(secret);
  } else if (secret instanceof Uint8Array) {
    bytes = secret;
  } else {
    throw new KeyConfigError(
      "KEY_MISSING",
      `${where}: HS256 needs a secret (string or Uint8Array), got ${secret === undefined ? "undefined" : typeof secret}: pass the secret the tokens are signed with. Tokens of the protoguard CLI are signed with PROTOGUARD_JWT_SECRET, or without it with a development secret in its data directory: \`protoguard secret\` prints it, loadDevelopmentSecret() from protoguard/server reads it`,
    );
  }
  if (bytes.byteLength < MIN_HMAC_BYTES) {
    throw new KeyConfigError("KEY_TOO_SHORT", `${where}: HS256 secret must be at least ${MIN_HMAC_BYTES} bytes`);
  }
  // The id is an HMAC *keyed by* the secret: anyone holding a token can already test guesses of
  // the secret against its signature, so publishing this truncated tag reveals nothing more.
  const tag = createHmac("sha256", bytes).update("protoguard/kid/v1").digest("base64url");
  const kid = config.kid ?? `hs256-${tag.slice(0, 16)}`;
  const key = await subtle.importKey("raw", bytes, HMAC_PARAMS, false, ["sign", "verify"]);
  return {
    verification: Object.freeze({ kid, alg: "HS256", key, nodeKey: createSecretKey(bytes) }),
    signing: Object.freeze({ kid, alg: "HS256", key }),
    publicJwk: undefined,
    fingerprint: `oct:${tag}`,
  };
}

async function prepareAsymmetric(
  config: Extract<KeyConfig, { alg: AsymmetricAlgorithm }>,
  where: string,
): Promise<PreparedKey> {
  const { alg } = config;
  if ("secret" in config) {
    throw new KeyConfigError("KEY_TYPE_MISMATCH", `${where}: ${alg} takes a private/public key, not a secret`);
  }
  const privateKey = config.privateKey === undefined ? undefined : toKeyObject(config.privateKey, "private", where);
  const givenPublic = config.publicKey === undefined ? undefined : toKeyObject(config.publicKey, "public", where);
  if (!privateKey && !givenPublic) {
    throw new KeyConfigError("KEY_MISSING", `${where}: ${alg} needs a privateKey and/or a publicKey`);
  }
  const publicKey = privateKey ? createPublicKey(privateKey) : (givenPublic as KeyObject);
  assertFitsAlg(publicKey, alg, where);

  const publicJwk = publicKey.export({ format: "jwk" }) as JWK;
  const thumbprint = await calculateJwkThumbprint(publicJwk, "sha256");
  if (privateKey && givenPublic) {
    const other = await calculateJwkThumbprint(givenPublic.export({ format: "jwk" }) as JWK, "sha256");
    if (other !== thumbprint) {
      throw new KeyConfigError("KEY_PAIR_MISMATCH", `${where}: publicKey does not belong to privateKey`);
    }
  }
  const kid = config.kid ?? thumbprint;
  const params = IMPORT_PARAMS[alg];
  const verifyKey = await subtle.importKey("jwk", publicJwk as JsonWebKey, params, false, ["verify"]);
  const signKey = privateKey
    ? await subtle.importKey("jwk", privateKey.export({ format: "jwk" }) as JsonWebKey, params, false, ["sign"])
    : undefined;
  return {
    verification: Object.freeze({ kid, alg, key: verifyKey, nodeKey: publicKey }),
    signing: signKey ? Object.freeze({ kid, alg, key: signKey }) : undefined,
    publicJwk: { ...pickPublicMembers(publicJwk), kid, alg, use: "sig" },
    fingerprint: `jwk:${thumbprint}`,
  };
}

/** Only the members RFC 7518 defines for public RSA / EC keys: nothing private can slip through. */
function pickPublicMembers(jwk: JWK): JWK {
  return jwk.kty === "RSA" ? { kty: "RSA", n: jwk.n, e: jwk.e } : { kty: "EC", crv: jwk.crv, x: jwk.x, y: jwk.y };
}

function toKeyObject(input: AsymmetricKeyInput, kind: "private" | "public", where: string): KeyObject {
  let key: KeyObject;
  try {
    if (input instanceof KeyObject) {
      key = input;
    } else if (typeof input === "string") {
      key = kind === "private" ? createPrivateKey(input) : createPublicKey(input);
    } else if (isCryptoKey(input)) {
      key = KeyObject.from(input as unknown as webcrypto.CryptoKey);
    } else if (input !== null && typeof input === "object" && typeof (input as JWK).kty === "string") {
      const jwk = input as JWK;
      key =
        kind === "private"
          ? createPrivateKey({ key: jwk as never, format: "jwk" })
          : createPublicKey({ key: jwk as never, format: "jwk" });
    } else {
      throw new TypeError("expected a PEM string, a JWK, a CryptoKey or a KeyObject");
    }
  } catch (cause) {
    throw new KeyConfigError("KEY_INVALID", `${where}: the ${kind} key cannot be read`, { cause });
  }
  if (key.type !== kind) {
    throw new KeyConfigError("KEY_TYPE_MISMATCH", `${where}: expected a ${kind} key, got a ${key.type} key`);
  }
  return key;
}

function isCryptoKey(value: unknown): value is CryptoKey {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag] === "CryptoKey"
  );
}

function assertFitsAlg(publicKey: KeyObject, alg: AsymmetricAlgorithm, where: string): void {
  const type = publicKey.asymmetricKeyType;
  const details = publicKey.asymmetricKeyDetails ?? {};
  if (alg === "RS256") {
    // rsa-pss keys are bound to PSS by their own parameters: refuse rather than reuse them for PKCS#1 v1.5.
    if (type !== "rsa") throw new KeyConfigError("KEY_TYPE_MISMATCH", `${where}: RS256 needs an RSA key, got ${type}`);
    if ((details.modulusLength ?? 0) < MIN_RSA_BITS) {
      throw new KeyConfigError("KEY_TOO_SHORT", `${where}: RSA keys must be at least ${MIN_RSA_BITS} bits`);
    }
  } else {
    if (type !== "ec") throw new KeyConfigError("KEY_TYPE_MISMATCH", `${where}: ES256 needs an EC key, got ${type}`);
    if (details.namedCurve !== "prime256v1") {
      throw new KeyConfigError("KEY_CURVE_MISMATCH", `${where}: ES256 needs a P-256 key, got ${details.namedCurve}`);
    }
  }
}

/** What {@link loadKeyFile} found: spread it into a {@link KeyConfig} next to `alg`. */
export type LoadedKey =
  | { privateKey: string | JWK; publicKey?: undefined; kid?: string }
  | { publicKey: string | JWK; privateKey?: undefined; kid?: string };

const MAX_KEY_FILE_BYTES = 64 * 1024;

/**
 * Reads a key file: PEM (PKCS8 private key or SPKI public key) or a JWK as JSON (a `kid` in the
 * JWK is kept). The key is parsed once to fail early; algorithm checks happen in
 * {@link createKeyring}.
 *
 * @throws {KeyConfigError} `KEY_FILE_INVALID` when the file holds neither.
 * @example
 * ```ts
 * const keyring = await createKeyring([{ alg: "RS256", ...(await loadKeyFile("keys/private.pem")) }]);
 * ```
 */
export async function loadKeyFile(path: string): Promise<LoadedKey> {
  const raw = await readFile(path);
  if (raw.byteLength > MAX_KEY_FILE_BYTES) {
    throw new KeyConfigError("KEY_FILE_INVALID", `${path}: larger than ${MAX_KEY_FILE_BYTES} bytes`);
  }
  const text = raw.toString("utf8").trim();
  try {
    if (text.startsWith("{")) {
      const jwk = JSON.parse(text) as JWK;
      if (jwk === null || typeof jwk !== "object" || typeof jwk.kty !== "string" || jwk.kty === "oct") {
        throw new TypeError("not an RSA or EC JWK");
      }
      const kid = typeof jwk.kid === "string" ? jwk.kid : undefined;
      if (typeof jwk.d === "string") {
        createPrivateKey({ key: jwk as never, format: "jwk" });
        return kid === undefined ? { privateKey: jwk } : { privateKey: jwk, kid };
      }
      createPublicKey({ key: jwk as never, format: "jwk" });
      return kid === undefined ? { publicKey: jwk } : { publicKey: jwk, kid };
    }
    if (text.includes("-----BEGIN PRIVATE KEY-----")) {
      createPrivateKey(text);
      return { privateKey: text };
    }
    if (text.includes("-----BEGIN PUBLIC KEY-----")) {
      createPublicKey(text);
      return { publicKey: text };
    }
  } catch (cause) {
    throw new KeyConfigError("KEY_FILE_INVALID", `${path}: not a readable PEM or JWK key`, { cause });
  }
  throw new KeyConfigError("KEY_FILE_INVALID", `${path}: expected a PKCS8/SPKI PEM or a JWK`);
}

function generatePemPair(alg: AsymmetricAlgorithm): Promise<{ publicKey: string; privateKey: string }> {
  const encoding = {
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  } as const;
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, publicKey: string, privateKey: string) =>
      err ? reject(err) : resolve({ publicKey, privateKey });
    if (alg === "RS256") generateKeyPair("rsa", { modulusLength: 2048, ...encoding }, done);
    else generateKeyPair("ec", { namedCurve: "prime256v1", ...encoding }, done);
  });
}

/**
 * Generates a fresh RS256 (2048-bit) or ES256 (P-256) key pair and writes `private.pem` (PKCS8,
 * mode 0600) and `public.pem` (SPKI) into `outDir` (created if missing). Existing files are never
 * overwritten: the call fails with `EEXIST` instead, so a rotation cannot destroy the current key.
 *
 * @returns the two paths and the key's default `kid` (its JWK thumbprint).
 */
export async function generateKeyPairFiles(
  alg: AsymmetricAlgorithm,
  outDir: string,
): Promise<{ privateKeyPath: string; publicKeyPath: string; kid: string }> {
  if (alg !== "RS256" && alg !== "ES256") {
    throw new KeyConfigError("UNSUPPORTED_ALG", `cannot generate keys for ${String(alg)}`);
  }
  const pair = await generatePemPair(alg);

  await mkdir(outDir, { recursive: true, mode: 0o700 });
  const privateKeyPath = join(outDir, "private.pem");
  const publicKeyPath = join(outDir, "public.pem");
  await writeFile(privateKeyPath, pair.privateKey, { mode: 0o600, flag: "wx" });
  await writeFile(publicKeyPath, pair.publicKey, { mode: 0o644, flag: "wx" });
  const kid = await calculateJwkThumbprint(createPublicKey(pair.publicKey).export({ format: "jwk" }) as JWK, "sha256");
  return { privateKeyPath, publicKeyPath, kid };
}
