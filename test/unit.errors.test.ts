// One base error class: everything protoguard throws of its own is a ProtoguardError with a
// stable string code (jose's model), so callers branch on `code`, never on messages.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { KeyConfigError, PolicyError, ProtoguardError } from "../src/exports/protoguard.js";
import { ConditionError, TokenRejectedError } from "../src/exports/core.js";
import { ConfigError, ServerError } from "../src/exports/server.js";
import { StoreError } from "../src/exports/store.js";
import { PasswordBusyError } from "../src/exports/auth-service.js";

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "../src");

function* sources(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* sources(path);
    else if (path.endsWith(".ts")) yield path;
  }
}

describe("errors", () => {
  it("every error class in src/ extends ProtoguardError (directly or through another of ours)", () => {
    const direct: string[] = [];
    for (const file of sources(SRC)) {
      const text = readFileSync(file, "utf8");
      for (const match of text.matchAll(/class (\w+) extends (Error|TypeError|RangeError|SyntaxError)\b/g)) {
        if (relative(SRC, file) === "errors.ts" && match[1] === "ProtoguardError") continue;
        direct.push(`${relative(SRC, file)}: ${match[1]} extends ${match[2]}`);
      }
    }
    assert.deepEqual(direct, []);
  });

  it("the public error classes carry their class name and a string code", () => {
    const errors: ProtoguardError[] = [
      new PolicyError(["method x: bad"]),
      new KeyConfigError("KEY_MISSING", "no key"),
      new TokenRejectedError("KID_UNKNOWN", "unknown kid"),
      new ConditionError("not a bool"),
      new ConfigError("PORT must be an integer"),
      new ServerError("PORT_IN_USE", "port taken"),
      new StoreError("USER_NOT_FOUND", "no such user"),
      new PasswordBusyError(),
    ];
    for (const error of errors) {
      assert.ok(error instanceof ProtoguardError && error instanceof Error);
      assert.equal(error.name, error.constructor.name);
      assert.equal(typeof error.code, "string");
      assert.match(error.code, /^[A-Z][A-Z0-9_]*$/);
    }
    assert.equal(new PolicyError([]).code, "INVALID_RULE");
    assert.equal(new ConfigError("x").code, "INVALID_CONFIG");
    assert.equal(new PasswordBusyError().code, "HASHER_BUSY");
  });
});
