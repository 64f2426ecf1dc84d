/** Unit tests for src/cli/args.ts: the strict argument parser. Errors are asserted by type (UsageError, exit 2). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { expectPositionals, parseArgs } from "../src/cli/args.js";
import { UsageError } from "../src/cli/errors.js";

const SPEC = { password: "string", staff: "boolean", email: "string" } as const;

describe("parseArgs", () => {
  it("reads --name value, --name=value, boolean flags and positionals in order", () => {
    const parsed = parseArgs(["alice", "--password", "pw", "--email=a@b", "--staff", "extra"], SPEC);
    assert.deepEqual(parsed.positionals, ["alice", "extra"]);
    assert.deepEqual({ ...parsed.flags }, { password: "pw", email: "a@b", staff: true });
    assert.equal(parsed.help, false);
  });

  it("leaves absent flags undefined, and has no prototype to read flags from", () => {
    const { flags } = parseArgs([], SPEC);
    assert.equal(flags.password, undefined);
    assert.equal(Object.getPrototypeOf(flags), null);
  });

  it("takes a value that starts with a dash, unless it is one of the command's flags", () => {
    assert.equal(parseArgs(["--password", "-secret"], SPEC).flags.password, "-secret");
    assert.equal(parseArgs(["--password", "--unknown"], SPEC).flags.password, "--unknown");
    assert.throws(() => parseArgs(["--password", "--staff"], SPEC), UsageError);
    assert.throws(() => parseArgs(["--password", "--email=x"], SPEC), UsageError);
    assert.equal(parseArgs(["--password=--staff"], SPEC).flags.password, "--staff");
  });

  it("accepts only =true / =false on a boolean flag", () => {
    assert.equal(parseArgs(["--staff=true"], SPEC).flags.staff, true);
    assert.equal(parseArgs(["--staff=false"], SPEC).flags.staff, false);
    assert.throws(() => parseArgs(["--staff=yes"], SPEC), UsageError);
  });

  it("refuses unknown, repeated, short and valueless flags", () => {
    for (const argv of [
      ["--superuser"],
      ["--staff", "--staff"],
      ["--password=a", "--password", "b"],
      ["-s"],
      ["--password"],
      ["--constructor"],
      ["--__proto__=x"],
    ]) {
      assert.throws(() => parseArgs(argv, SPEC), UsageError, JSON.stringify(argv));
    }
  });

  it("ends flags at --, keeps a lone - as positional, and notes --help / -h", () => {
    const parsed = parseArgs(["-", "--", "--staff", "-h"], SPEC);
    assert.deepEqual(parsed.positionals, ["-", "--staff", "-h"]);
    assert.equal(parsed.flags.staff, undefined);
    assert.equal(parsed.help, false);
    assert.equal(parseArgs(["x", "-h"], SPEC).help, true);
    assert.equal(parseArgs(["--help"], SPEC).help, true);
  });
});

describe("expectPositionals", () => {
  it("passes within bounds and throws UsageError outside", () => {
    expectPositionals(["a"], 1, 2, "<username>");
    expectPositionals(["a", "b"], 1, 2, "<username>");
    assert.throws(() => expectPositionals([], 1, 2, "<username>"), UsageError);
    assert.throws(() => expectPositionals(["a", "b", "c"], 1, 2, "<username>"), UsageError);
  });
});
