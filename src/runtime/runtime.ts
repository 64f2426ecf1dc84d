/**
 * The pieces every command and the server share, built from a
 * {@link ProtoguardConfig}: the database, keys, issuer, verifier and hasher.
 */
import { createPublicKey } from "node:crypto";
import { calculateJwkThumbprint, type JWK } from "jose";
import { createPasswordHasher, type PasswordHasher } from "../lifecycle/passwords.js";
import { defaultProcessName } from "../store/data-dir-lock.js";
import { openDatabase } from "../store/database.js";
import { type Database } from "../store/database-handle.js";
import { migrateDatabase } from "../store/migrate.js";
import { createTokenIssuer, type TokenIssuer } from "../token/issuer.js";
import { createKeyring, loadKeyFile, type KeyConfig, type Keyring } from "../token/keys.js";
import { createTokenVerifier, type TokenVerifier } from "../token/verifier.js";
import { loadTrustedIssuers, type TrustedIssuer } from "../identity/trusted-issuers.js";
import { ConfigError, type ProtoguardConfig } from "./config.js";
import { ensureDevelopmentSecret } from "./dev-secret.js";

/** What {@link openRuntime} builds. */
export interface Runtime {
  readonly config: ProtoguardConfig;
  readonly database: Database;
  readonly keyring: Keyring;
  readonly issuer: TokenIssuer;
  /** protoguard's own tokens. */
  readonly verifier: TokenVerifier;
  /**
   * The identity providers of `PROTOGUARD_TRUSTED_ISSUERS` (none when unset), validated: what
   * `startServer` hands `createAuth`, which composes them with {@link verifier}.
   */
  readonly trustedIssuers?: readonly TrustedIssuer[];
  readonly passwordHasher: PasswordHasher;
  close(): Promise<void>;
}

/** Options for {@link openRuntime}. */
export interface OpenRuntimeOptions {
  /** Apply pending migrations after connecting. Default: true. */
  migrate?: boolean;
  /** Where to say that a development secret is in use. Default: none. */
  warn?: (message: string) => void;
  /**
   * How this process is described to another that finds the embedded data
   * directory in use. Default: `protoguard` and up to two arguments of this
   * process before the first option (`protoguard serve`, `protoguard user grant`).
   */
  processName?: string;
  /**
   * When another process holds the embedded data directory and shares it
   * (as `protoguard serve` does), work through it over its local socket
   * instead of failing `DATA_DIR_LOCKED`. Default false: a server must own
   * its directory.
   */
  joinHolder?: boolean;
}

/** The name this process goes by in the lock of an embedded data directory. */
const PROGRAM_NAME = "protoguard";

/**
 * Connects to the database and loads the keys.
 *
 * With no `PROTOGUARD_JWT_SECRET` on the embedded database (no
 * `DATABASE_URL`), an HS256 secret is generated once into the data directory
 * and reused, with a warning: fine for a demo, never for production. With
 * `DATABASE_URL` set, a missing secret is an error: several instances must
 * share one key, and a generated one would not be shared.
 *
 * The embedded database is `openDatabase({ dataDir: config.dataDir })`: the
 * same directory an app opens, and held by one process at a time.
 *
 * @throws {StoreError} `DATA_DIR_LOCKED` when another process has the
 *   embedded data directory open.
 */
export async function openRuntime(config: ProtoguardConfig, options: OpenRuntimeOptions = {}): Promise<Runtime> {
  // Keys that need nothing written are checked before the database opens, so
  // a configuration mistake is reported at once. The development secret is
  // written only once this process holds the data directory: a process
  // refused because another one has it must leave no trace.
  const trustedIssuers = await trustedIssuersOf(config);
  const needsDevelopmentSecret = config.algorithm === "HS256" && config.secret === undefined;
  const early = needsDevelopmentSecret ? undefined : await createKeyring(await keyConfigs(config, options.warn));
  if (needsDevelopmentSecret && config.databaseUrl !== undefined) throw developmentSecretWithUrl();
  const database = await openDatabase(
    config.databaseUrl !== undefined
      ? {
          url: config.databaseUrl,
          ...(config.databasePoolMax !== undefined && { max: config.databasePoolMax }),
          ...(config.databasePrepare !== undefined && { prepare: config.databasePrepare }),
          ...(config.listenDatabaseUrl !== undefined && { listenUrl: config.listenDatabaseUrl }),
        }
      : {
          dataDir: config.dataDir,
          processName: options.processName ?? defaultProcessName(PROGRAM_NAME),
          joinHolder: options.joinHolder ?? false,
        },
  );
  let keyring: Keyring;
  try {
    keyring = early ?? (await createKeyring(await keyConfigs(config, options.warn)));
    if (options.migrate ?? true) await migrateDatabase(database);
  } catch (error) {
    await database.close();
    throw error;
  }
  const claims = { issuer: config.issuer, audience: config.audience };
  const issuer = createTokenIssuer({
    keyring,
    accessTtlSeconds: config.accessTtlSeconds,
    refreshTtlSeconds: config.refreshTtlSeconds,
    ...claims,
  });
  const verifier = createTokenVerifier({
    keyring,
    leewaySeconds: config.leewaySeconds,
    // The issuer's TTLs are the verifier's lifetime bounds, for PROTOGUARD_JWKS_URL's tokens too.
    maxLifetimeSeconds: { access: config.accessTtlSeconds, refresh: config.refreshTtlSeconds },
    cache: { maxEntries: config.cacheEntries },
    jwksUrl: config.jwksUrl,
    jwksUserIdClaim: config.jwksUserIdClaim,
    ...claims,
  });
  const passwordHasher = createPasswordHasher({ scrypt: { logN: config.scryptLogN } });
  return {
    config,
    database,
    keyring,
    issuer,
    verifier,
    trustedIssuers,
    passwordHasher,
    close: () => database.close(),
  };
}

/** The validated `PROTOGUARD_TRUSTED_ISSUERS` file, read before anything opens: a mistake there stops start-up. */
async function trustedIssuersOf(config: ProtoguardConfig): Promise<readonly TrustedIssuer[]> {
  if (config.trustedIssuersPath === undefined) return [];
  try {
    return await loadTrustedIssuers(config.trustedIssuersPath);
  } catch (error) {
    throw new ConfigError(`PROTOGUARD_TRUSTED_ISSUERS: ${(error as Error).message}`, { cause: error });
  }
}

async function keyConfigs(config: ProtoguardConfig, warn?: (message: string) => void): Promise<KeyConfig[]> {
  if (config.algorithm === "HS256") {
    const secret = config.secret ?? (await developmentSecret(config, warn));
    return [secret, ...config.previousSecrets].map((s) => ({ alg: "HS256", secret: s }));
  }
  const alg = config.algorithm;
  const keys: KeyConfig[] = [];
  // The signing key verifies too; listing its public half again (as the current key of a
  // rotation list naturally does) must not count twice. createKeyring refuses a key configured
  // twice (DUPLICATE_KEY), which is right for an explicit key list but not for these variables.
  const seen = new Set<string>();
  if (config.privateKeyPath !== undefined) {
    const loaded = await keyFile("PROTOGUARD_JWT_PRIVATE_KEY", config.privateKeyPath);
    if (loaded.privateKey === undefined) {
      throw new ConfigError(
        `PROTOGUARD_JWT_PRIVATE_KEY (${config.privateKeyPath}) holds a public key, not a private one`,
      );
    }
    seen.add(await thumbprint(loaded.privateKey));
    keys.push({ alg, privateKey: loaded.privateKey, kid: loaded.kid });
  }
  for (const path of config.publicKeyPaths) {
    const loaded = await keyFile("PROTOGUARD_JWT_PUBLIC_KEY", path);
    const key = loaded.publicKey ?? loaded.privateKey;
    const id = await thumbprint(key);
    if (seen.has(id)) continue;
    seen.add(id);
    keys.push({ alg, publicKey: key, kid: loaded.kid });
  }
  if (keys.length === 0) {
    throw new ConfigError(
      `PROTOGUARD_JWT_ALGORITHM=${alg} needs PROTOGUARD_JWT_PRIVATE_KEY and/or PROTOGUARD_JWT_PUBLIC_KEY`,
    );
  }
  return keys;
}

/** Loads a key file, naming the variable that pointed at it when it cannot be read. */
async function keyFile(variable: string, path: string) {
  try {
    return await loadKeyFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? `${path}: no such file`
        : code === "EACCES"
          ? `${path}: permission denied`
          : error instanceof Error
            ? error.message // a KeyConfigError, which names the path already
            : String(error);
    throw new ConfigError(`${variable}: ${why}`, { cause: error });
  }
}

/**
 * RFC 7638 thumbprint of the public half of a key file's key (PEM or JWK, private or public):
 * `createPublicKey` derives the public half from a private key.
 */
async function thumbprint(key: string | JWK): Promise<string> {
  const publicKey =
    typeof key === "string" ? createPublicKey(key) : createPublicKey({ key: key as never, format: "jwk" });
  return calculateJwkThumbprint(publicKey.export({ format: "jwk" }) as JWK, "sha256");
}

function developmentSecretWithUrl(): ConfigError {
  return new ConfigError("PROTOGUARD_JWT_SECRET is required with DATABASE_URL (every instance must share it)");
}

async function developmentSecret(config: ProtoguardConfig, warn?: (message: string) => void): Promise<string> {
  if (config.databaseUrl !== undefined) throw developmentSecretWithUrl();
  const { secret, path } = await ensureDevelopmentSecret(config.dataDir);
  warn?.(
    `using the development JWT secret in ${path}; your own server verifies these tokens with the same secret (\`protoguard secret\` prints it, loadDevelopmentSecret() reads it); set PROTOGUARD_JWT_SECRET in production`,
  );
  return secret;
}
