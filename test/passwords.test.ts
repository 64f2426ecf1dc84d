import { test } from "node:test";
import assert from "node:assert/strict";
import { pbkdf2Sync, randomBytes } from "node:crypto";
import { MAX_PASSWORD_BYTES, PasswordBusyError, createPasswordHasher } from "../src/lifecycle/passwords.js";

// N=2^14 keeps most tests in milliseconds; one test below runs the production default.
const fast = createPasswordHasher({ scrypt: { logN: 14 } });

const PHC = /^\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

/** Builds a hash exactly as Django's PBKDF2PasswordHasher.encode does. */
function djangoHash(password: string, salt: string, iterations: number, digest: "sha256" | "sha1" = "sha256"): string {
  const keylen = digest === "sha256" ? 32 : 20;
  const key = pbkdf2Sync(Buffer.from(password, "utf8"), Buffer.from(salt, "utf8"), iterations, keylen, digest);
  return `pbkdf2_${digest}$${iterations}$${salt}$${key.toString("base64")}`;
}

test("hash then verify round-trips, and a wrong password fails", async () => {
  const encoded = await fast.hash("correct horse battery staple");
  assert.deepEqual(await fast.verify("correct horse battery staple", encoded), { ok: true, needsRehash: false });
  assert.deepEqual(await fast.verify("correct horse battery stapl", encoded), { ok: false, needsRehash: false });
  assert.deepEqual(await fast.verify("", encoded), { ok: false, needsRehash: false });
});

test("hash produces a PHC-style scrypt string with a fresh 16-byte salt and a 32-byte key", async () => {
  const a = await fast.hash("pw");
  const b = await fast.hash("pw");
  const match = PHC.exec(a);
  assert.ok(match, a);
  assert.deepEqual(match.slice(1, 4), ["14", "8", "1"]);
  assert.equal(Buffer.from(match[4]!, "base64").length, 16);
  assert.equal(Buffer.from(match[5]!, "base64").length, 32);
  // Unpadded base64: 16 bytes in 22 characters, 32 bytes in 43.
  assert.equal(match[4]!.length, 22);
  assert.equal(match[5]!.length, 43);
  assert.notEqual(a, b, "salts differ");
});

test("default parameters are N=2^17, r=8, p=1 and verify without rehash", async () => {
  const hasher = createPasswordHasher();
  const encoded = await hasher.hash("a password at production cost");
  assert.match(encoded, /^\$scrypt\$ln=17,r=8,p=1\$/);
  assert.deepEqual(await hasher.verify("a password at production cost", encoded), { ok: true, needsRehash: false });
});

test("long and non-ASCII passwords work", async () => {
  const long = "x".repeat(100);
  const unicode = "pässwörd-🔑-密码".repeat(5);
  for (const password of [long, unicode]) {
    const encoded = await fast.hash(password);
    assert.equal((await fast.verify(password, encoded)).ok, true);
    assert.equal((await fast.verify(password.slice(0, -1), encoded)).ok, false);
  }
});

test("passwords above 4096 bytes are refused before hashing", async () => {
  const atLimit = "a".repeat(MAX_PASSWORD_BYTES);
  const encoded = await fast.hash(atLimit);
  assert.equal((await fast.verify(atLimit, encoded)).ok, true);

  const tooLong = "a".repeat(MAX_PASSWORD_BYTES + 1);
  await assert.rejects(fast.hash(tooLong), RangeError);
  // Counted in bytes, not characters: 2048 two-byte characters plus one more byte.
  await assert.rejects(fast.hash("é".repeat(2048) + "a"), RangeError);
  assert.deepEqual(await fast.verify(tooLong, encoded), { ok: false, needsRehash: false });
  await fast.dummyVerify(tooLong);
});

test("Django pbkdf2_sha256 hashes verify and ask for a rehash", async () => {
  const salt = randomBytes(12).toString("hex").slice(0, 22);
  const encoded = djangoHash("hunter2-but-longer", salt, 1000);
  assert.match(encoded, /^pbkdf2_sha256\$1000\$[0-9a-f]+\$[A-Za-z0-9+/]{43}=$/);
  assert.deepEqual(await fast.verify("hunter2-but-longer", encoded), { ok: true, needsRehash: true });
  assert.deepEqual(await fast.verify("hunter2", encoded), { ok: false, needsRehash: false });
  // Django's current default count works too.
  const real = djangoHash("s3cret", "abcdefghijklmnopqrstuv", 870000);
  assert.deepEqual(await fast.verify("s3cret", real), { ok: true, needsRehash: true });
});

test("Django hashes computed outside Node (Python hashlib) verify, sha256 and sha1", async () => {
  const password = "correct horse battery staple";
  const sha256 = "pbkdf2_sha256$1000$seasalt1234$JlBQ/OWmu3PcCFg2koQd315wDykzd702rqDsH8M7iWI=";
  const sha1 = "pbkdf2_sha1$1000$seasalt1234$97GO8CSXusSx5eEnsUp77aAsAYE=";
  assert.deepEqual(await fast.verify(password, sha256), { ok: true, needsRehash: true });
  assert.deepEqual(await fast.verify(password, sha1), { ok: true, needsRehash: true });
  assert.equal((await fast.verify(password, sha256.replace("$1000$", "$1001$"))).ok, false);
  assert.equal((await fast.verify(password, sha256.replace("seasalt1234", "seasalt1235"))).ok, false);
});

test("a hash with weaker scrypt parameters than configured asks for a rehash", async () => {
  const weak = await fast.hash("pw");
  const stronger = createPasswordHasher({ scrypt: { logN: 15 } });
  assert.deepEqual(await stronger.verify("pw", weak), { ok: true, needsRehash: true });
  assert.deepEqual(await stronger.verify("nope", weak), { ok: false, needsRehash: false });
  // A stronger stored hash is left alone.
  assert.deepEqual(await fast.verify("pw", await stronger.hash("pw")), { ok: true, needsRehash: false });
});

test("unusable, unknown, malformed and absurd stored values give ok:false without throwing", async () => {
  const good = await fast.hash("pw");
  const [, , , , salt, key] = PHC.exec(good)!;
  const django = djangoHash("pw", "salt", 1000);
  const refused = [
    "",
    "!unusable-django-password",
    "!",
    "garbage",
    "md5$salt$0123456789abcdef0123456789abcdef",
    "bcrypt_sha256$$2b$12$abcdefghijklmnopqrstuu5kXzC1ULv7n2xxpFjYBGRJdpwD4LYtK",
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    good.slice(0, -4),
    good + "$",
    good.replace("$scrypt$", "$SCRYPT$"),
    good.replace("ln=14", "ln=014"),
    // Would need 2^30 blocks or 4 GiB: refused rather than attempted.
    good.replace("ln=14", "ln=30"),
    good.replace("ln=14", "ln=21"),
    good.replace("r=8", "r=99"),
    `$scrypt$ln=14,r=8,p=1$${salt}$${key}=`,
    `$scrypt$ln=14,r=8,p=1$$${key}`,
    `$scrypt$ln=14,r=8,p=1$${salt}$`,
    `$scrypt$r=8,ln=14,p=1$${salt}$${key}`,
    django.replace("$1000$", "$99999999$"),
    django.replace("$1000$", "$0$"),
    django.replace("$1000$", "$-1$"),
    django.replace("$1000$", "$$"),
    django.replace(/=$/, ""),
    django.slice(0, -8) + "!!!!!!!=",
    "pbkdf2_sha256$1000$$" + django.split("$")[3],
    "pbkdf2_sha512$1000$salt$" + django.split("$")[3],
    djangoHash("pw", "salt", 1000).replace("pbkdf2_sha256", "pbkdf2_sha1"),
  ];
  for (const encoded of refused) {
    const started = performance.now();
    assert.deepEqual(await fast.verify("pw", encoded), { ok: false, needsRehash: false }, encoded);
    assert.ok(performance.now() - started < 2000, `no expensive work for ${encoded}`);
  }
  // Non-string inputs from untyped callers are refused too.
  assert.equal((await fast.verify(undefined as unknown as string, good)).ok, false);
  assert.equal((await fast.verify("pw", null as unknown as string)).ok, false);
});

test("beyond maxQueue, calls reject with HASHER_BUSY instead of queueing", async () => {
  const hasher = createPasswordHasher({ scrypt: { logN: 14 }, maxConcurrent: 1, maxQueue: 2 });
  const encoded = await hasher.hash("pw");
  const results = await Promise.allSettled(Array.from({ length: 10 }, () => hasher.verify("pw", encoded)));
  const fulfilled = results.filter((r) => r.status === "fulfilled");
  const rejected = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  assert.equal(fulfilled.length, 3, "one running plus two queued");
  assert.equal(rejected.length, 7);
  for (const { reason } of rejected) {
    assert.ok(reason instanceof PasswordBusyError);
    assert.equal(reason.code, "HASHER_BUSY");
  }
  for (const r of fulfilled) assert.deepEqual(r.value, { ok: true, needsRehash: false });

  const busy = Promise.allSettled([hasher.hash("a"), hasher.hash("b"), hasher.hash("c"), hasher.dummyVerify("d")]);
  const [a, b, c, d] = await busy;
  assert.equal(a.status, "fulfilled");
  assert.equal(b.status, "fulfilled");
  assert.equal(c.status, "fulfilled");
  assert.equal(d.status, "rejected");

  // Slots are released: the hasher is usable again once the flood has drained.
  assert.equal((await hasher.verify("pw", encoded)).ok, true);
});

test("maxQueue 0 allows only the running calls", async () => {
  const hasher = createPasswordHasher({ scrypt: { logN: 14 }, maxConcurrent: 2, maxQueue: 0 });
  const results = await Promise.allSettled([hasher.hash("a"), hasher.hash("b"), hasher.hash("c")]);
  assert.deepEqual(
    results.map((r) => r.status),
    ["fulfilled", "fulfilled", "rejected"],
  );
});

test("bad input to hash is refused before it takes a slot", async () => {
  const hasher = createPasswordHasher({ scrypt: { logN: 14 }, maxConcurrent: 1, maxQueue: 0 });
  await assert.rejects(hasher.hash(42 as unknown as string), TypeError);
  await assert.rejects(hasher.hash("x".repeat(5000)), RangeError);
  assert.match(await hasher.hash("still works"), PHC);
});

test("dummyVerify does a derivation and resolves", async () => {
  await fast.dummyVerify("whatever the unknown user typed");
  await fast.dummyVerify("");
  const hasher = createPasswordHasher();
  assert.equal(await hasher.dummyVerify("at production cost"), undefined);
});

test("out-of-range options refuse to build a hasher", () => {
  assert.throws(() => createPasswordHasher({ scrypt: { logN: 0 } }), RangeError);
  assert.throws(() => createPasswordHasher({ scrypt: { logN: 21 } }), RangeError);
  assert.throws(() => createPasswordHasher({ scrypt: { logN: 16.5 } }), RangeError);
  assert.throws(() => createPasswordHasher({ scrypt: { r: 0 } }), RangeError);
  assert.throws(() => createPasswordHasher({ scrypt: { p: 17 } }), RangeError);
  assert.throws(() => createPasswordHasher({ maxConcurrent: 0 }), RangeError);
  assert.throws(() => createPasswordHasher({ maxQueue: -1 }), RangeError);
  assert.throws(() => createPasswordHasher({ maxQueue: Number.NaN }), RangeError);
});
