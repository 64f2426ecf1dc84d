// What a team meets after the quick start, through the CLI (in this process, as the executable
// runs it): the development secret shared with the app's own server (`protoguard secret`,
// loadDevelopmentSecret, a KeyConfigError that says what to do), `--help` listing each
// command's real flags, `policy --image` reporting what the app serves, and `init` beside a
// buf v1 module config saying what it found and did.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { createKeyring, createTokenVerifier, KeyConfigError } from "../src/exports/protoguard.js";
import { ConfigError, loadDevelopmentSecret } from "../src/exports/server.js";
import { assertOk, cleanEnv, runCliCaptured } from "./helpers/cli.js";

const run = promisify(execFile);
const REPO = join(import.meta.dirname, "..");

describe("protoguard CLI, the second hour", { timeout: 180_000 }, () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoguard-second-hour-"));
  });
  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("protoguard secret prints the development secret the CLI signs with; the app reads the same one", async () => {
    const dataDir = join(dir, "data");
    const env = cleanEnv({ PROTOGUARD_DATA_DIR: dataDir });
    // Before any command ran, there is none, and the error says how to get one.
    await assert.rejects(loadDevelopmentSecret(dataDir), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.code, "INVALID_CONFIG");
      assert.match(error.message, /protoguard secret/);
      return true;
    });
    const printed = await runCliCaptured(["secret"], env);
    assertOk(printed);
    const secret = /^PROTOGUARD_JWT_SECRET=(\S+)$/m.exec(printed.stdout)?.[1];
    assert.ok(secret !== undefined && secret.length >= 32, printed.stdout);
    assert.equal(await loadDevelopmentSecret(dataDir), secret);
    // Stable: a second run prints the same one.
    assert.equal((await runCliCaptured(["secret"], env)).stdout, printed.stdout);

    // The CLI's token verifies in the app's own server built from that secret.
    assertOk(await runCliCaptured(["user", "create", "alice", "--password", "alice-password-123"], env));
    const minted = await runCliCaptured(["token", "alice"], env);
    assertOk(minted);
    const { access_token: token } = JSON.parse(minted.stdout) as { access_token: string };
    const keyring = await createKeyring([{ alg: "HS256", secret: await loadDevelopmentSecret(dataDir) }]);
    const verified = await createTokenVerifier({ keyring }).verify(token, "access");
    assert.equal(verified.ok, true, JSON.stringify(verified));

    // With PROTOGUARD_JWT_SECRET set, that one is what the CLI signs with, and prints.
    const configured = "a-configured-secret-of-more-than-32-bytes!!";
    const explicit = await runCliCaptured(["secret"], cleanEnv({ PROTOGUARD_JWT_SECRET: configured }));
    assert.equal(explicit.stdout.trim(), `PROTOGUARD_JWT_SECRET=${configured}`);
  });

  it("a missing HS256 secret is KEY_MISSING, and the message says where the CLI's secret is", async () => {
    await assert.rejects(createKeyring([{ alg: "HS256", secret: undefined }]), (error: unknown) => {
      assert.ok(error instanceof KeyConfigError);
      assert.equal(error.code, "KEY_MISSING");
      assert.match(error.message, /protoguard secret/);
      assert.match(error.message, /loadDevelopmentSecret/);
      return true;
    });
  });

  it("--help lists every command with the usage line its own --help prints", async () => {
    const top = await runCliCaptured(["--help"], cleanEnv());
    assertOk(top);
    for (const command of [["serve"], ["policy"], ["secret"], ["token"]]) {
      const own = await runCliCaptured([...command, "--help"], cleanEnv());
      assertOk(own);
      const usage = /^usage: protoguard (.+)$/m.exec(own.stdout)?.[1];
      assert.ok(usage !== undefined, own.stdout);
      assert.ok(
        top.stdout.split("\n").some((line) => line.trim() === usage),
        `protoguard --help lacks "${usage}":\n${top.stdout}`,
      );
    }
    assert.match(top.stdout, /--workers N\|auto/);
    assert.match(top.stdout, /--format table\|markdown\|json\|openapi/);
  });

  it("policy --image leaves out protoguard's own services unless --include-protoguard", async () => {
    // This repository's module holds protoguard's protos beside the example's, as an app's
    // buf.yaml does once `init` lists the installed package's protos as a module.
    const image = join(dir, "image.binpb");
    await run(
      join(REPO, "node_modules", ".bin", "buf"),
      ["build", "--path", "proto/example", "--path", "proto/protoguard", "-o", image],
      { cwd: REPO },
    );
    const served = await runCliCaptured(["policy", "--image", image], cleanEnv());
    assertOk(served);
    assert.match(served.stdout, /\/example\.v1\.AccountService\/GetProfile/);
    assert.doesNotMatch(served.stdout, /protoguard\.v1\.AuthService/);
    assert.match(served.stderr, /left out protoguard's own protoguard\.v1\.AuthService/);
    const all = await runCliCaptured(["policy", "--image", image, "--include-protoguard"], cleanEnv());
    assertOk(all);
    assert.match(all.stdout, /\/protoguard\.v1\.AuthService\/Login/);
  });

  it("init beside a buf v1 proto/buf.yaml and a bare buf.gen.yaml says what it found and did, once each", async () => {
    const project = join(dir, "project");
    await mkdir(join(project, "proto"), { recursive: true });
    await mkdir(join(project, "node_modules"), { recursive: true });
    await symlink(REPO, join(project, "node_modules", "protoguard"));
    await writeFile(join(project, "proto", "buf.yaml"), "version: v1\nlint:\n  use:\n    - DEFAULT\n");
    await writeFile(
      join(project, "buf.gen.yaml"),
      "version: v2\nplugins:\n  - local: protoc-gen-es\n    out: src/gen\n    opt: target=ts\n",
    );
    const { initProject } = await import("../src/cli/init.js");
    const result = await initProject({ dir: project });
    assert.deepEqual(result.written, ["buf.yaml"]);
    assert.deepEqual(
      result.found.map((f) => f.file),
      ["proto/buf.yaml"],
    );
    assert.match(result.found[0]!.note, /buf v1 module config/);
    // Both additions to buf.gen.yaml in one block.
    assert.deepEqual(
      result.advice.map((a) => a.file),
      ["buf.gen.yaml"],
    );
    const lines = result.advice[0]!.lines.join("\n");
    assert.match(lines, /rewrite_imports/);
    assert.match(lines, /protoc-gen-protoguard/);
    assert.match(await readFile(join(project, "buf.yaml"), "utf8"), /^version: v2/);
  });
});
