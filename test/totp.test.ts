import { test } from "node:test";
import assert from "node:assert/strict";
import { Secret } from "otpauth";
import { generateTotp, generateTotpSecret, totpStepAt, totpUri, verifyTotp } from "../src/lifecycle/totp.js";

// RFC 6238 Appendix B: the SHA-1 seed is the ASCII string "12345678901234567890".
const RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
// Appendix B lists 8-digit codes; a 6-digit code is the last six (the modulus is 10^6).
const RFC_VECTORS: ReadonlyArray<readonly [seconds: number, code: string]> = [
  [59, "287082"],
  [1111111109, "081804"],
  [1111111111, "050471"],
  [1234567890, "005924"],
  [2000000000, "279037"],
];

const T = 1_700_000_000_000; // a fixed "now", in milliseconds
const STEP = 30_000;

test("the RFC secret is the base32 of the ASCII seed", () => {
  assert.equal(Secret.fromLatin1("12345678901234567890").base32, RFC_SECRET);
});

test("RFC 6238 Appendix B SHA-1 vectors generate and verify", () => {
  for (const [seconds, code] of RFC_VECTORS) {
    const now = seconds * 1000;
    assert.equal(generateTotp(RFC_SECRET, now), code, `t=${seconds}`);
    assert.deepEqual(verifyTotp({ secret: RFC_SECRET, code, lastAcceptedStep: null, now }), {
      ok: true,
      step: Math.floor(seconds / 30),
    });
  }
});

test("codes one step either side are accepted, two steps are not", () => {
  const secret = generateTotpSecret();
  const current = totpStepAt(T);
  for (const delta of [-1, 0, 1]) {
    const code = generateTotp(secret, T + delta * STEP);
    assert.deepEqual(verifyTotp({ secret, code, lastAcceptedStep: null, now: T }), { ok: true, step: current + delta });
  }
  for (const delta of [-2, 2]) {
    const code = generateTotp(secret, T + delta * STEP);
    // Skip the one-in-a-million case where the far code equals a near one.
    if ([-1, 0, 1].some((d) => generateTotp(secret, T + d * STEP) === code)) continue;
    assert.deepEqual(verifyTotp({ secret, code, lastAcceptedStep: null, now: T }), { ok: false, reason: "INVALID" });
  }
});

test("window 0 accepts only the current step", () => {
  const code = generateTotp(RFC_SECRET, 59_000 - STEP);
  assert.equal(verifyTotp({ secret: RFC_SECRET, code, lastAcceptedStep: null, now: 59_000, window: 0 }).ok, false);
  assert.equal(
    verifyTotp({ secret: RFC_SECRET, code: "287082", lastAcceptedStep: null, now: 59_000, window: 0 }).ok,
    true,
  );
});

test("the same step is never accepted twice, nor an older one", () => {
  const secret = generateTotpSecret();
  const code = generateTotp(secret, T);
  const first = verifyTotp({ secret, code, lastAcceptedStep: null, now: T });
  assert.ok(first.ok);
  const lastAcceptedStep = first.step;

  assert.deepEqual(verifyTotp({ secret, code, lastAcceptedStep, now: T }), { ok: false, reason: "REPLAYED" });
  // Still replayed a step later, while the old code is inside the window.
  assert.deepEqual(verifyTotp({ secret, code, lastAcceptedStep, now: T + STEP }), { ok: false, reason: "REPLAYED" });
  // An older (still in-window) code after a newer one was used.
  const older = generateTotp(secret, T - STEP);
  if (older !== code) {
    assert.deepEqual(verifyTotp({ secret, code: older, lastAcceptedStep, now: T }), { ok: false, reason: "REPLAYED" });
  }
  // The next step's code is fine.
  const next = generateTotp(secret, T + STEP);
  assert.deepEqual(verifyTotp({ secret, code: next, lastAcceptedStep, now: T + STEP }), {
    ok: true,
    step: lastAcceptedStep + 1,
  });
});

test("malformed codes are refused before any HMAC", () => {
  for (const code of [
    "12345",
    "abcdef",
    "1234567",
    " 123456",
    "123456 ",
    "12 456",
    "",
    "１２３４５６",
    "+12345",
    "12345\n",
  ]) {
    assert.deepEqual(
      verifyTotp({ secret: RFC_SECRET, code, lastAcceptedStep: null, now: 59_000 }),
      {
        ok: false,
        reason: "MALFORMED",
      },
      JSON.stringify(code),
    );
  }
  assert.deepEqual(
    verifyTotp({ secret: RFC_SECRET, code: 287082 as unknown as string, lastAcceptedStep: null, now: 59_000 }),
    { ok: false, reason: "MALFORMED" },
  );
});

test("a wrong code of the right shape is INVALID", () => {
  const inWindow = [0, 1, 2].map((step) => generateTotp(RFC_SECRET, step * STEP));
  const wrong = ["000000", "111111", "222222"].find((c) => !inWindow.includes(c))!;
  assert.deepEqual(verifyTotp({ secret: RFC_SECRET, code: wrong, lastAcceptedStep: null, now: 59_000 }), {
    ok: false,
    reason: "INVALID",
  });
});

test("generated secrets are 32 base32 characters (160 bits) and differ", () => {
  const secrets = new Set(Array.from({ length: 50 }, () => generateTotpSecret()));
  assert.equal(secrets.size, 50);
  for (const secret of secrets) {
    assert.match(secret, /^[A-Z2-7]{32}$/);
    // Usable straight away.
    const code = generateTotp(secret, T);
    assert.equal(verifyTotp({ secret, code, lastAcceptedStep: null, now: T }).ok, true);
  }
});

test("the key URI carries secret, issuer, algorithm, digits and period", () => {
  const secret = generateTotpSecret();
  const uri = totpUri({ secret, accountName: "alice@example.com" });
  const url = new URL(uri);
  assert.equal(url.protocol, "otpauth:");
  assert.equal(url.host, "totp");
  assert.equal(decodeURIComponent(url.pathname), "/protoguard:alice@example.com");
  assert.equal(url.searchParams.get("secret"), secret);
  assert.equal(url.searchParams.get("issuer"), "protoguard");
  assert.equal(url.searchParams.get("algorithm"), "SHA1");
  assert.equal(url.searchParams.get("digits"), "6");
  assert.equal(url.searchParams.get("period"), "30");

  const custom = new URL(totpUri({ secret, accountName: "bob smith", issuer: "Acme & Co" }));
  assert.equal(custom.searchParams.get("issuer"), "Acme & Co");
  assert.equal(decodeURIComponent(custom.pathname), "/Acme & Co:bob smith");
});

test("totpUri refuses labels the URI format cannot carry", () => {
  const secret = generateTotpSecret();
  assert.throws(() => totpUri({ secret, accountName: "" }), RangeError);
  assert.throws(() => totpUri({ secret, accountName: "a", issuer: "Acme:Corp" }), RangeError);
  assert.throws(() => totpUri({ secret, accountName: "a", issuer: "" }), RangeError);
  assert.throws(() => totpUri({ secret: "not base32!", accountName: "a" }), TypeError);
});

test("a corrupt or too-short stored secret throws instead of looking like a wrong code", () => {
  for (const secret of [
    "",
    "not-base32!",
    "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ",
    "GEZDGNBVGY3TQOJQ" /* 80 bits */,
  ]) {
    assert.throws(() => verifyTotp({ secret, code: "123456", lastAcceptedStep: null }), TypeError, secret);
  }
  // Lower case and padding are fine.
  assert.equal(generateTotp(RFC_SECRET.toLowerCase(), 59_000), "287082");
  const padded = `${new Secret({ buffer: new Uint8Array(16).fill(7).buffer }).base32}======`;
  assert.equal(padded.length, 32);
  assert.equal(generateTotp(padded, 59_000), generateTotp(padded.replace(/=+$/, ""), 59_000));
});

test("bad now or window is a programming error", () => {
  const base = { secret: RFC_SECRET, code: "287082", lastAcceptedStep: null };
  assert.throws(() => verifyTotp({ ...base, now: Number.NaN }), RangeError);
  assert.throws(() => verifyTotp({ ...base, window: -1 }), RangeError);
  assert.throws(() => verifyTotp({ ...base, window: 1.5 }), RangeError);
  assert.throws(() => verifyTotp({ ...base, window: 6 }), RangeError);
  assert.throws(() => generateTotp(RFC_SECRET, Number.POSITIVE_INFINITY), RangeError);
});

test("steps are 30-second buckets since the epoch", () => {
  assert.equal(totpStepAt(0), 0);
  assert.equal(totpStepAt(29_999), 0);
  assert.equal(totpStepAt(30_000), 1);
  assert.equal(totpStepAt(59_000), 1);
  assert.equal(totpStepAt(1_111_111_109_000), 37037036);
});
