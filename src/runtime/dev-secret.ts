/**
 * The development JWT secret: with no `PROTOGUARD_JWT_SECRET` on the
 * embedded database, the CLI and `protoguard serve` sign with an HS256
 * secret generated once into the data directory (`<dataDir>/jwt-secret.dev`).
 * An application that verifies the CLI's tokens (`protoguard token alice`)
 * must use the same secret: `protoguard secret` prints it, and
 * {@link loadDevelopmentSecret} reads it. Development only: production sets
 * `PROTOGUARD_JWT_SECRET` for every process.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError } from "./config.js";

/** Name of the development secret's file in the data directory. */
export const DEVELOPMENT_SECRET_FILE = "jwt-secret.dev";

/** The data directory when none is given, as `PROTOGUARD_DATA_DIR` defaults. */
const DEFAULT_DATA_DIR = ".protoguard";

/**
 * Reads the development secret the CLI generated in `dataDir` (default
 * `.protoguard`, relative to the working directory), for an app's own
 * `createKeyring([{ alg: "HS256", secret }])`.
 *
 * @example
 * ```ts
 * const secret = process.env.PROTOGUARD_JWT_SECRET ?? (await loadDevelopmentSecret());
 * const keyring = await createKeyring([{ alg: "HS256", secret }]);
 * ```
 *
 * @throws {ConfigError} (code `INVALID_CONFIG`) when there is none yet, saying how to make one.
 */
export async function loadDevelopmentSecret(dataDir: string | undefined = DEFAULT_DATA_DIR): Promise<string> {
  const path = join(dataDir, DEVELOPMENT_SECRET_FILE);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError(
      `no development JWT secret in ${path}: run \`protoguard secret\` (with the same PROTOGUARD_DATA_DIR) to create and print it, or set PROTOGUARD_JWT_SECRET for the CLI and your server alike`,
      { cause: error },
    );
  }
  const secret = text.trim();
  if (secret === "") throw new ConfigError(`${path} is empty: delete it and run \`protoguard secret\``);
  return secret;
}

/**
 * The development secret of `dataDir`, generated (32 random bytes,
 * base64url, mode 0600) when there is none. Two processes starting at once
 * agree on one.
 */
export async function ensureDevelopmentSecret(dataDir: string): Promise<{ secret: string; path: string }> {
  const path = join(dataDir, DEVELOPMENT_SECRET_FILE);
  try {
    return { secret: await loadDevelopmentSecret(dataDir), path };
  } catch {
    await mkdir(dataDir, { recursive: true });
    const secret = randomBytes(32).toString("base64url");
    // "wx": two processes starting at once must not both write one.
    const written = await writeFile(path, `${secret}\n`, { mode: 0o600, flag: "wx" }).then(
      () => true,
      () => false,
    );
    return { secret: written ? secret : await loadDevelopmentSecret(dataDir), path };
  }
}
