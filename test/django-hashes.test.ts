/**
 * Django's argon2, bcrypt and scrypt hashes through the password hasher's
 * public API. The vectors were made by Django 3.2's own hashers (argon2-cffi,
 * bcrypt) at low cost; the scrypt one in Django 4's ScryptPasswordHasher
 * format with hashlib.scrypt. test/django-migration.test.ts checks the same
 * schemes at Django's default cost against a live Django project.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createPasswordHasher } from "../src/lifecycle/passwords.js";
import { isVerifiablePasswordHash, passwordScheme } from "../src/util/password-schemes.js";

const hasher = createPasswordHasher({ scrypt: { logN: 12 } });
const LONG = "ü".repeat(50); // 100 UTF-8 bytes, beyond bcrypt's 72

const VECTORS: readonly { name: string; password: string; hash: string }[] = [
  { name: "bcrypt", password: "pw-1", hash: "bcrypt$$2b$04$dqj9zTh4xIGwUvjXvcG2qedG/qQyKUULczL7J3vP1gfByuj.gh0TO" },
  {
    name: "bcrypt over 72 bytes",
    password: LONG,
    hash: "bcrypt$$2b$04$YT50bP5nQrxnVjGLWEJEKuodyEQZv0a4Q7LkleIRJr54hqhj5iclS",
  },
  {
    name: "bcrypt_sha256",
    password: LONG,
    hash: "bcrypt_sha256$$2b$04$rL/XAo6IAE433wIYlm.bVe2ZQVcZes0HRnrPx4VxKLRrRS20uQKmK",
  },
  {
    name: "argon2id",
    password: "pw-1",
    hash: "argon2$argon2id$v=19$m=1024,t=1,p=1$U2NucjJacmthd1ozNHhkVVQ5R1lzdg$hpuOXcTSmt9Lwp3RHiDcoA",
  },
  {
    name: "scrypt",
    password: "pässword-1",
    hash: "scrypt$16384$abcdefghijklmnop$8$1$7seauq+xR+7ZzN6HpLyfdNXSoUTcjbVB4FBtokUi/U7xOT+IguNcXtlp+B/o0qEwaeyjyAMQdQ7uqOah3AC/fw==",
  },
];

describe("Django's other password hashers", () => {
  for (const { name, password, hash } of VECTORS) {
    it(`${name}: the right password verifies and asks for a rehash; a wrong one does not`, async () => {
      assert.deepEqual(await hasher.verify(password, hash), { ok: true, needsRehash: true });
      assert.deepEqual(await hasher.verify(`x${password}`, hash), { ok: false, needsRehash: false });
      assert.equal(isVerifiablePasswordHash(hash), true);
    });
  }

  it("plain bcrypt ignores what follows byte 72, as Django's does; bcrypt_sha256 does not", async () => {
    const [, long, sha] = VECTORS;
    assert.equal((await hasher.verify(`${LONG}tail`, long!.hash)).ok, true);
    assert.equal((await hasher.verify(`${LONG}tail`, sha!.hash)).ok, false);
  });

  it("tampered parameters are refused without the work", async () => {
    const argon = VECTORS[3]!.hash;
    const started = Date.now();
    for (const hash of [
      argon.replace("m=1024", "m=4194304"), // 4 GiB
      argon.replace("t=1", "t=99"),
      "bcrypt$$2b$31$dqj9zTh4xIGwUvjXvcG2qedG/qQyKUULczL7J3vP1gfByuj.gh0TO",
      VECTORS[4]!.hash.replace("scrypt$16384", "scrypt$16385"), // not a power of two
      VECTORS[4]!.hash.replace("scrypt$16384", "scrypt$1073741824"),
      VECTORS[4]!.hash.slice(0, -8), // a truncated key
    ]) {
      assert.deepEqual(await hasher.verify("pw-1", hash), { ok: false, needsRehash: false }, hash);
    }
    assert.ok(Date.now() - started < 2000);
  });

  it("names schemes, and tells which ones the import must mark for a reset", () => {
    assert.equal(passwordScheme("md5$salt$abc"), "md5");
    assert.equal(passwordScheme("!unusable"), "unusable");
    assert.equal(passwordScheme(""), "unusable");
    assert.equal(passwordScheme("$scrypt$ln=17,r=8,p=1$a$b"), "scrypt-phc");
    assert.equal(passwordScheme("plaintext"), "unknown");
    assert.equal(isVerifiablePasswordHash("md5$salt$abc"), false);
    assert.equal(isVerifiablePasswordHash("unsalted_sha1$$abc"), false);
    assert.equal(isVerifiablePasswordHash("pbkdf2_sha256$260000$s$k"), true);
  });
});
