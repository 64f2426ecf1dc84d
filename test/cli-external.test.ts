// `protoguard user link|unlink`: attaching an identity provider's subject to a local account
// from a shell, run in this process through runCli on an embedded database.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { findExternalIdentity, openDatabase } from "../src/exports/store.js";
import { cleanEnv, runCliCaptured, type CliResult } from "./helpers/cli.js";

const ENTRA = "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0";

describe("protoguard user link / unlink", { timeout: 120_000 }, () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const cli = (...args: string[]): Promise<CliResult> => runCliCaptured(args, env);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoguard-cli-link-"));
    env = cleanEnv({ PROTOGUARD_DATA_DIR: dir });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("links a subject to a user once, unlinks it, and says why when it cannot", async () => {
    assert.equal((await cli("user", "create", "megan", "--password", "pw-pw-pw-pw")).code, 0);
    const linked = await cli("user", "link", "megan", ENTRA, "00000000-0000-0000-0000-00000000000a");
    assert.equal(linked.code, 0, linked.stderr);
    assert.equal(linked.stdout, `linked ${ENTRA} subject "00000000-0000-0000-0000-00000000000a" to user "megan"\n`);

    const again = await cli("user", "link", "megan", ENTRA, "00000000-0000-0000-0000-00000000000a");
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^protoguard: .*already linked\n$/);
    const nobody = await cli("user", "link", "nobody", ENTRA, "x");
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /no user "nobody"/);
    const missing = await cli("user", "link", "megan", ENTRA);
    assert.equal(missing.code, 2, missing.stderr);

    const database = await openDatabase({ dataDir: dir });
    try {
      assert.ok((await findExternalIdentity(database.db, ENTRA, "00000000-0000-0000-0000-00000000000a")) !== undefined);
    } finally {
      await database.close();
    }

    assert.equal((await cli("user", "unlink", ENTRA, "00000000-0000-0000-0000-00000000000a")).code, 0);
    const twice = await cli("user", "unlink", ENTRA, "00000000-0000-0000-0000-00000000000a");
    assert.equal(twice.code, 1);
    assert.match(twice.stderr, /is not linked/);
  });
});
