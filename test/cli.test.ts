/**
 * The `protoguard` CLI against a PGlite data directory (and PostgreSQL when
 * DATABASE_URL is set): most commands through `runCli` in this process,
 * and enough as real child processes (the package bin, example/cli.ts) to
 * cover what the executable adds: exit codes, the streams, stdin. Results
 * are checked through the store, opening the PGlite directory only while no
 * CLI command has it open.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { eq } from "drizzle-orm";
import { loadPrincipal, openDatabase, findUserByUsername } from "../src/exports/store.js";
import { permissions, refreshTokens } from "../src/store/schema.js";
import type { DrizzleDb } from "../src/exports/store.js";
import type { PrincipalLookup } from "../src/exports/core.js";
import { findCredentials } from "../src/store/users.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/database.js";
import { createKeyring, loadKeyFile } from "../src/token/keys.js";
import type { KeyConfig } from "../src/token/keys.js";
import { createTokenVerifier } from "../src/token/verifier.js";
import type { VerifiedClaims } from "../src/token/claims.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";
import { assertOk, cleanEnv, runCliCaptured, type CliResult } from "./helpers/cli.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
// Each CLI command opening PGlite takes 1-5 s (far more on a loaded
// machine); about 25 of them run here.
const SUITE_TIMEOUT = 600_000;
const EXPLICIT_SECRET = "an-explicit-hs256-secret-of-at-least-32-bytes";

/**
 * Runs one `protoguard` invocation to completion. By default in this process
 * through `runCli`, the function the executable wraps (a child process costs
 * a Node start and a TypeScript load of the CLI, about 2 s of CPU each, and
 * this file runs ~30 commands). With `child` (implied by `bin` and `stdin`),
 * as a real process: example/cli.ts (this repository's CLI), or the package bin; those calls cover
 * the executable's own wiring (exit code, streams, stdin).
 */
async function cli(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  { stdin, bin = false, child = bin || stdin !== undefined }: { stdin?: string; bin?: boolean; child?: boolean } = {},
): Promise<CliResult> {
  if (!child) {
    return runCliCaptured(args, env);
  }
  const entry = bin ? ["--import", "tsx", "src/cli/bin.ts"] : ["--import", "tsx", "example/cli.ts"];
  const proc = spawn(process.execPath, [...entry, ...args], { cwd: ROOT, env, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  proc.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  proc.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  proc.stdin.end(stdin ?? "");
  return new Promise((resolve, reject) => {
    proc.on("error", reject);
    proc.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

function lines(text: string): string[] {
  return text.split("\n").filter((line) => line !== "");
}

/** Exit code 1 and exactly one `protoguard: ...` line on stderr, no stack trace. */
function assertOneLineFailure(result: CliResult, pattern: RegExp): void {
  assert.equal(result.code, 1, `stdout: ${result.stdout}\nstderr: ${result.stderr}`);
  const errLines = lines(result.stderr);
  assert.equal(errLines.length, 1, `expected one stderr line, got:\n${result.stderr}`);
  assert.match(errLines[0]!, /^protoguard: /);
  assert.match(errLines[0]!, pattern);
  assert.doesNotMatch(result.stderr, /\n\s+at /);
}

interface TokenPair {
  access_token: string;
  refresh_token: string;
}

function parseTokens(result: CliResult): TokenPair {
  assertOk(result);
  const out = lines(result.stdout);
  assert.equal(out.length, 1, "token prints exactly one line");
  const pair = JSON.parse(out[0]!) as TokenPair;
  assert.deepEqual(Object.keys(pair).sort(), ["access_token", "refresh_token"]);
  return pair;
}

async function verifyPair(
  keys: KeyConfig[],
  pair: TokenPair,
): Promise<{ access: VerifiedClaims; refresh: VerifiedClaims }> {
  const verifier = createTokenVerifier({ keyring: await createKeyring(keys) });
  const access = await verifier.verify(pair.access_token, "access");
  const refresh = await verifier.verify(pair.refresh_token, "refresh");
  assert.ok(access.ok, "access token verifies");
  assert.ok(refresh.ok, "refresh token verifies");
  for (const claims of [access.claims, refresh.claims]) {
    for (const claim of ["token_type", "exp", "iat", "jti", "user_id"]) {
      assert.ok(Object.hasOwn(claims.payload, claim), `claim ${claim} present`);
    }
  }
  assert.equal(access.claims.payload["token_type"], "access");
  assert.equal(refresh.claims.payload["token_type"], "refresh");
  assert.equal(access.claims.userId, refresh.claims.userId);
  return { access: access.claims, refresh: refresh.claims };
}

function permissionsOf(lookup: PrincipalLookup): string[] {
  assert.equal(lookup.status, "ok");
  return [...(lookup as Extract<PrincipalLookup, { status: "ok" }>).principal.permissions].sort();
}

function tokenFacts(claims: VerifiedClaims) {
  return { jti: claims.jti, issuedAt: claims.issuedAt };
}

describe("protoguard CLI on PGlite", { timeout: SUITE_TIMEOUT }, () => {
  let dir: string;
  let dataDir: string;
  let env: NodeJS.ProcessEnv;
  let devSecret: string;
  let aliceFirst: { access: VerifiedClaims; refresh: VerifiedClaims };

  /** Opens the CLI's PGlite directory; only call while no CLI process runs. */
  async function withStore<T>(fn: (db: DrizzleDb) => Promise<T>): Promise<T> {
    const database = await openDatabase({ dataDir: join(dataDir, "pgdata") });
    try {
      return await fn(database.db);
    } finally {
      await database.close();
    }
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoguard-cli-"));
    dataDir = join(dir, "data");
    env = cleanEnv({ PROTOGUARD_DATA_DIR: dataDir });
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("prints the usage for help and no arguments, and exits 2 on an unknown command", async () => {
    const help = await cli(["--help"], env, { bin: true });
    assertOk(help);
    for (const command of [
      "migrate",
      "user create",
      "user set-password",
      "group add",
      "token",
      "otp enable",
      "keys generate",
    ]) {
      assert.ok(help.stdout.includes(`  ${command}`), `usage lists ${command}`);
    }
    const bare = await cli([], env);
    assertOk(bare);
    assert.equal(bare.stdout, help.stdout);

    const unknown = await cli(["frobnicate"], env, { child: true });
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stdout, "");
    assert.match(unknown.stderr, /^usage: protoguard/);
    assert.match(unknown.stderr, /protoguard: unknown command "frobnicate"\n$/);
  });

  it("refuses malformed command lines with exit 2 before opening anything", async () => {
    const misspelled = await cli(["user", "create", "eve", "--pasword", "x"], env);
    assert.equal(misspelled.code, 2);
    assert.match(misspelled.stderr, /unknown option --pasword/);
    const missing = await cli(["user", "grant", "eve"], env);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /missing <username> <permission>\.\.\./);
  });

  it("migrates, twice", async () => {
    assertOk(await cli(["migrate"], env));
    const again = await cli(["migrate"], env);
    assertOk(again);
    assert.match(again.stdout, /up to date/);
    devSecret = (await readFile(join(dataDir, "jwt-secret.dev"), "utf8")).trim();
  });

  it("creates users; a duplicate or a bad flag value fails cleanly and creates nothing", async () => {
    assertOk(await cli(["user", "create", "alice", "--password", "pw-alice-1", "--email", "alice@example.com"], env));
    assertOneLineFailure(
      await cli(["user", "create", "alice", "--password", "other"], env, { child: true }),
      /user "alice" already exists/,
    );

    const badFlag = await cli(["user", "create", "bob", "--password", "pw", "--superuser=maybe"], env);
    assert.equal(badFlag.code, 2);
    assert.match(badFlag.stderr, /--superuser takes no value/);

    assertOk(await cli(["user", "create", "root", "--password", "pw-root", "--superuser"], env));
  });

  it("grants all or nothing, revokes, and manages groups", async () => {
    assertOneLineFailure(
      await cli(["user", "grant", "alice", "shop.delete", "bad"], env),
      /invalid permission "bad": expected app_label\.codename/,
    );
    assertOk(await cli(["user", "grant", "alice", "shop.view", "shop.edit"], env));
    assertOk(await cli(["user", "revoke", "alice", "shop.edit"], env));
    assertOk(await cli(["group", "create", "editors"], env));
    assertOk(await cli(["group", "grant", "editors", "blog.publish"], env));
    assertOk(await cli(["group", "add", "editors", "alice"], env));

    await withStore(async (db) => {
      const alice = await findUserByUsername(db, "alice");
      assert.ok(alice);
      assert.equal(alice.email, "alice@example.com");
      assert.equal(alice.isStaff, false);
      assert.match((await findCredentials(db, "alice"))!.password, /^\$scrypt\$ln=12,/);
      assert.deepEqual(permissionsOf(await loadPrincipal(db, alice.id)), ["blog.publish", "shop.view"]);
      // The refused grant left not even its permission row behind.
      const rows = await db.select().from(permissions).where(eq(permissions.codename, "delete"));
      assert.equal(rows.length, 0);

      assert.equal(await findUserByUsername(db, "bob"), undefined);
      const root = await findUserByUsername(db, "root");
      assert.ok(root);
      assert.equal(root.isSuperuser, true);
      assert.equal(root.isStaff, true, "--superuser implies staff");
    });
  });

  it("issues a recorded token pair that verifies with the development secret", async () => {
    const pair = parseTokens(await cli(["token", "alice"], env));
    aliceFirst = await verifyPair([{ alg: "HS256", secret: devSecret }], pair);
    assertOneLineFailure(await cli(["token", "nobody"], env), /no user "nobody"/);

    await withStore(async (db) => {
      const lookup = await loadPrincipal(db, aliceFirst.access.userId, tokenFacts(aliceFirst.access));
      assert.deepEqual(permissionsOf(lookup), ["blog.publish", "shop.view"]);
      const [row] = await db.select().from(refreshTokens).where(eq(refreshTokens.jti, aliceFirst.refresh.jti));
      assert.ok(row, "the refresh token is recorded");
      assert.equal(row.accessJti, aliceFirst.access.jti);
      assert.equal(row.revokedAt, null);
    });
  });

  it("set-password ends earlier sessions, deactivate ends all of them", async () => {
    assertOk(await cli(["user", "set-password", "alice", "--password-stdin"], env, { stdin: "pw-alice-2\n" }));
    const second = await verifyPair(
      [{ alg: "HS256", secret: devSecret }],
      parseTokens(await cli(["token", "alice"], env)),
    );

    await withStore(async (db) => {
      const alice = await findUserByUsername(db, "alice");
      assert.ok(alice);
      assert.match((await findCredentials(db, "alice"))!.password, /^\$scrypt\$/);
      assert.equal((await loadPrincipal(db, alice.id, tokenFacts(aliceFirst.access))).status, "revoked");
      assert.equal((await loadPrincipal(db, alice.id, tokenFacts(second.access))).status, "ok");
      const [first] = await db.select().from(refreshTokens).where(eq(refreshTokens.jti, aliceFirst.refresh.jti));
      assert.notEqual(first!.revokedAt, null, "the old refresh token is revoked");
    });

    assertOk(await cli(["user", "deactivate", "alice"], env));
    assertOneLineFailure(await cli(["token", "alice"], env), /user "alice" is inactive/);

    await withStore(async (db) => {
      assert.equal((await loadPrincipal(db, second.access.userId, tokenFacts(second.access))).status, "inactive");
      const rows = await db.select().from(refreshTokens).where(eq(refreshTokens.userId, second.access.userId));
      assert.equal(rows.length, 2);
      assert.ok(
        rows.every((row) => row.revokedAt !== null),
        "every refresh token is revoked",
      );
    });
  });

  it("otp enable prints an otpauth:// URI", async () => {
    const result = await cli(["otp", "enable", "root"], env);
    assertOk(result);
    const out = lines(result.stdout);
    assert.equal(out.length, 1);
    const uri = new URL(out[0]!);
    assert.equal(uri.protocol, "otpauth:");
    assert.equal(uri.host, "totp");
    assert.equal(decodeURIComponent(uri.pathname), "/protoguard:root");
    assert.equal(uri.searchParams.get("issuer"), "protoguard");
    assert.match(uri.searchParams.get("secret") ?? "", /^[A-Z2-7]{32}$/);
  });

  it("signs with an explicit PROTOGUARD_JWT_SECRET, and deletes users", async () => {
    assertOk(await cli(["user", "create", "carol", "--password", "pw-carol"], env));
    const explicit = { ...env, PROTOGUARD_JWT_SECRET: EXPLICIT_SECRET };
    const result = await cli(["token", "carol"], explicit);
    assert.doesNotMatch(result.stderr, /development JWT secret/);
    const pair = parseTokens(result);
    const { access } = await verifyPair([{ alg: "HS256", secret: EXPLICIT_SECRET }], pair);
    const devVerifier = createTokenVerifier({ keyring: await createKeyring([{ alg: "HS256", secret: devSecret }]) });
    assert.equal((await devVerifier.verify(pair.access_token, "access")).ok, false);

    assertOk(await cli(["user", "delete", "carol"], env));
    assertOneLineFailure(await cli(["user", "delete", "carol"], env), /no user "carol"/);
    await withStore(async (db) => {
      assert.equal((await loadPrincipal(db, access.userId)).status, "not_found");
    });
  });

  it("keys generate writes a pair createKeyring accepts, prints env lines that work, never overwrites", async () => {
    const out = join(dir, "keys");
    const generated = await cli(["keys", "generate", "--alg", "ES256", "--out", out], cleanEnv({}));
    assertOk(generated);
    const vars = Object.fromEntries(
      lines(generated.stdout)
        .filter((line) => !line.startsWith("#"))
        .map((line) => line.split("=", 2) as [string, string]),
    );
    // The signing service's lines are live; the verify-only one is a comment.
    assert.deepEqual(Object.keys(vars).sort(), ["PROTOGUARD_JWT_ALGORITHM", "PROTOGUARD_JWT_PRIVATE_KEY"]);
    assert.equal(vars["PROTOGUARD_JWT_ALGORITHM"], "ES256");
    assert.equal(vars["PROTOGUARD_JWT_PRIVATE_KEY"], join(out, "private.pem"));
    const publicPath = /PROTOGUARD_JWT_PUBLIC_KEY=(.+)$/m.exec(generated.stdout)?.[1];
    assert.equal(publicPath, join(out, "public.pem"));
    const privateKey = await loadKeyFile(vars["PROTOGUARD_JWT_PRIVATE_KEY"]!);
    const publicKey = await loadKeyFile(publicPath);
    const keyring = await createKeyring([{ alg: "ES256", ...privateKey }]);
    assert.ok(keyring.signingKey);
    assert.match(generated.stdout, new RegExp(`kid ${keyring.signingKey.kid}`));
    const publicOnly = [{ alg: "ES256", ...publicKey } as KeyConfig];
    await createKeyring(publicOnly);

    assertOneLineFailure(
      await cli(["keys", "generate", "--alg", "ES256", "--out", out], cleanEnv({})),
      /already exists; refusing to overwrite/,
    );

    // The printed lines, used as they are, sign tokens the public key verifies.
    await verifyPair(publicOnly, parseTokens(await cli(["token", "root"], { ...env, ...vars })));
  });

  it("reports an unreachable database in one line", async () => {
    const result = await cli(
      ["user", "create", "dave", "--password", "pw"],
      cleanEnv({ DATABASE_URL: "postgres://postgres@127.0.0.1:1/x", PROTOGUARD_JWT_SECRET: EXPLICIT_SECRET }),
    );
    assertOneLineFailure(result, /database unreachable: 127\.0\.0\.1:1/);
  });
});

describeOr(skipWithoutPostgres, "protoguard CLI on PostgreSQL", { timeout: SUITE_TIMEOUT }, () => {
  let database: TestDatabase;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    database = await createTestDatabase({ driver: "postgres", url: postgresUrl!, migrate: false });
    env = cleanEnv({ DATABASE_URL: database.url!, PROTOGUARD_JWT_SECRET: EXPLICIT_SECRET });
  });

  after(async () => {
    await database?.close();
  });

  it("migrates, creates a user and issues a token", async () => {
    assertOk(await cli(["migrate"], env));
    assertOk(await cli(["user", "create", "alice", "--password", "pw-alice", "--staff"], env));
    const { access } = await verifyPair(
      [{ alg: "HS256", secret: EXPLICIT_SECRET }],
      parseTokens(await cli(["token", "alice"], env)),
    );
    const lookup = await loadPrincipal(database.db, access.userId, tokenFacts(access));
    assert.equal(lookup.status, "ok");
    assert.equal((lookup as Extract<PrincipalLookup, { status: "ok" }>).principal.isStaff, true);
  });
});
