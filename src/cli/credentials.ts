/**
 * `protoguard token`, `protoguard otp enable` and `protoguard keys generate`:
 * the commands that hand out credentials. Their stdout is meant for scripts
 * (one JSON line, one URI, sourceable env lines); everything else goes to
 * stderr.
 */
import { access } from "node:fs/promises";
import { join, resolve } from "node:path";
import { issueSession } from "../lifecycle/sessions.js";
import { enableTotp } from "../lifecycle/auth-service.js";
import { generateKeyPairFiles } from "../token/keys.js";
import { defineStoreSubcommand, defineSubcommand } from "./args.js";
import { CliError, EXIT_OK, UsageError } from "./errors.js";
import { assertActive, requireUser } from "./users.js";

/** Issuer label in `otpauth://` URIs: what authenticator apps show above the code. */
const TOTP_ISSUER = "protoguard";

/** `protoguard token <username>` */
export const tokenSubcommand = defineStoreSubcommand({
  usage: "token <username>",
  summary: 'print {"access_token": ..., "refresh_token": ...} for an active user (the refresh token is recorded)',
  positionals: { min: 1, max: 1, names: "<username>" },
  prepare: ({ positionals: [username] }) => username!,
  async work(runtime, username) {
    const user = await requireUser(runtime.database.db, username);
    assertActive(user);
    // Through issueSession, not the bare issuer: the refresh token must
    // exist in its family to be refreshable, revocable and logged out.
    return issueSession(runtime.database.db, runtime.issuer, user.id);
  },
  report: (session) => JSON.stringify({ access_token: session.accessToken, refresh_token: session.refreshToken }),
  // The session's family and the access token's id, never the tokens themselves.
  audit: (session, username) => ({
    type: "token.issued",
    subject: `user:${username}`,
    detail: { familyId: session.familyId, accessJti: session.access.jti },
  }),
  warnAboutKeys: true,
});

const totpEnable = defineStoreSubcommand({
  usage: "otp enable <username>",
  summary: "give a user a new TOTP secret, require codes at login, and print the otpauth:// URI to enrol",
  positionals: { min: 1, max: 1, names: "<username>" },
  prepare: ({ positionals: [username] }) => username!,
  work: async (runtime, username) => {
    await requireUser(runtime.database.db, username);
    return enableTotp(runtime.database, username, TOTP_ISSUER);
  },
  // Only the URI: it carries the secret, and a single line pipes straight
  // into a QR encoder (`protoguard otp enable alice | qrencode -t ansi`).
  report: ({ uri }) => uri,
  audit: (_, username) => ({ type: "totp.enabled", subject: `user:${username}` }),
});

/** The `otp` subcommands. */
export const totpSubcommands = { enable: totpEnable };

/** Quotes a value for a POSIX shell / dotenv line only when it needs it. */
function shellValue(value: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

const keysGenerate = defineSubcommand({
  usage: "keys generate --alg RS256|ES256 --out <dir>",
  summary: "write a new private.pem (0600) and public.pem into <dir> and print the env lines that use them",
  flags: { alg: "string", out: "string" },
  positionals: { min: 0, max: 0, names: "no positional arguments" },
  async run({ flags }, _env, io) {
    if (flags.alg === undefined) throw new UsageError("missing --alg RS256|ES256");
    if (flags.out === undefined) throw new UsageError("missing --out <dir>");
    const alg = flags.alg.toUpperCase();
    if (alg !== "RS256" && alg !== "ES256") {
      throw new UsageError(`--alg must be RS256 or ES256, got ${JSON.stringify(flags.alg)}`);
    }
    // Absolute paths, so the printed env lines work from any directory.
    const dir = resolve(flags.out);
    // generateKeyPairFiles never overwrites, but it writes one file before
    // finding the other taken; checking both first leaves no stray half.
    for (const name of ["private.pem", "public.pem"]) {
      const path = join(dir, name);
      if (await exists(path)) throw new CliError(`${path} already exists; refusing to overwrite a key`);
    }
    const { privateKeyPath, publicKeyPath, kid } = await generateKeyPairFiles(alg, dir);
    // Comments and KEY=value lines only: the output can be appended to an
    // env file or sourced as is.
    io.out(`# ${alg} key pair, kid ${kid}`);
    io.out(`# private key: ${privateKeyPath} (keep it secret; only the signing service needs it)`);
    io.out(`# public key:  ${publicKeyPath}`);
    io.out(`PROTOGUARD_JWT_ALGORITHM=${alg}`);
    io.out(`PROTOGUARD_JWT_PRIVATE_KEY=${shellValue(privateKeyPath)}`);
    // Commented out: the signing service derives the public key from the
    // private one, and configuring the same key twice is refused. Services
    // that only verify set this line instead of the private key.
    io.out(`# verify-only services: PROTOGUARD_JWT_PUBLIC_KEY=${shellValue(publicKeyPath)}`);
    return EXIT_OK;
  },
});

/** The `keys` subcommands; they need no database. */
export const keysSubcommands = { generate: keysGenerate };
