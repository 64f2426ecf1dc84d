/**
 * Cheap refusals of protoguard's own keys: a header no local key accepts, and an RS256 token
 * that is expired or for another audience, are answered by `peek` (no cryptography, no
 * promise), and `verify` agrees.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { describe, it } from "node:test";
import { createKeyring, createTokenVerifier, type TokenVerifier } from "../src/exports/protoguard.js";

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
const NOW = 1_900_000_000;
const claims = (extra: Record<string, unknown> = {}) => ({
  token_type: "access",
  exp: NOW + 300,
  iat: NOW,
  jti: randomBytes(8).toString("hex"),
  user_id: 3,
  ...extra,
});
const code = (result: { ok: boolean; error?: unknown } | undefined) =>
  (result as { error?: { code?: string } } | undefined)?.error?.code;

async function both(verifier: TokenVerifier, token: string) {
  const peeked = verifier.peek(token, "access");
  const verified = await verifier.verify(token, "access");
  return { peeked, verified };
}

describe("refusals without cryptography", () => {
  it("a header no local key accepts is refused by peek, with the code jose or the key resolver would give", async () => {
    const keyring = await createKeyring([{ alg: "HS256", secret: randomBytes(32), kid: "k1" }]);
    const verifier = createTokenVerifier({ keyring, now: () => NOW * 1000 });
    const sig = randomBytes(32).toString("base64url");
    const cases: [unknown, string][] = [
      [{ alg: "HS256", kid: "unknown" }, "KID_UNKNOWN"],
      [{ alg: "HS256", kid: 7 }, "HEADER_INVALID"],
      [{ alg: "HS256", kid: "k1", b64: true }, "HEADER_INVALID"],
      [{ alg: "RS256", kid: "k1" }, "ERR_JOSE_ALG_NOT_ALLOWED"],
      [{ kid: "k1" }, "ERR_JWS_INVALID"],
      [[1, 2], "ERR_JWS_INVALID"],
    ];
    for (const [header, expected] of cases) {
      // A header per call (as a flood would send), so nothing is answered from memory.
      for (let i = 0; i < 3; i++) {
        const token = `${b64(header)}.${b64(claims({ n: i }))}.${sig}`;
        const { peeked, verified } = await both(verifier, token);
        assert.ok(peeked && !peeked.ok, `peek answers ${JSON.stringify(header)}`);
        assert.equal(peeked.reason, "TOKEN_INVALID");
        assert.equal(code(peeked), expected, JSON.stringify(header));
        assert.equal(verified.ok, false);
        assert.equal(code(verified), expected);
      }
    }
    const notJson = `${Buffer.from("{not json").toString("base64url")}.${b64(claims())}.${sig}`;
    assert.equal(code(verifier.peek(notJson, "access")), "ERR_JWS_INVALID");
    // Long random headers are judged alike.
    const long = `${b64({ alg: "HS256", kid: "x".repeat(4000) })}.${b64(claims())}.${sig}`;
    assert.equal(code(verifier.peek(long, "access")), "KID_UNKNOWN");
  });

  it("with a JWKS configured, an unknown kid is still the JWKS's to judge", async () => {
    const keyring = await createKeyring([{ alg: "HS256", secret: randomBytes(32), kid: "k1" }]);
    const verifier = createTokenVerifier({ keyring, jwksUrl: "http://127.0.0.1:9/jwks.json", now: () => NOW * 1000 });
    const token = `${b64({ alg: "RS256", kid: "remote" })}.${b64(claims())}.${randomBytes(256).toString("base64url")}`;
    assert.equal(verifier.peek(token, "access"), undefined);
  });

  it("an RS256 token that is expired, or for another audience or issuer, is refused before its signature is checked", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const keyring = await createKeyring([
      { alg: "RS256", kid: "r1", publicKey: publicKey.export({ type: "spki", format: "pem" }).toString() },
    ]);
    const verifier = createTokenVerifier({
      keyring,
      issuer: "https://auth.example",
      audience: "api",
      now: () => NOW * 1000,
    });
    const header = b64({ alg: "RS256", kid: "r1", typ: "JWT" });
    const signed = (payload: unknown) => {
      const input = `${header}.${b64(payload)}`;
      return `${input}.${sign("sha256", Buffer.from(input), privateKey).toString("base64url")}`;
    };
    const forged = (payload: unknown) => `${header}.${b64(payload)}.${randomBytes(256).toString("base64url")}`;
    const good = { iss: "https://auth.example", aud: "api" };
    const expired = claims({ ...good, exp: NOW - 600, iat: NOW - 900 });

    // Genuine and forged alike: the claims alone refuse them, answered synchronously.
    for (const token of [signed(expired), forged(expired)]) {
      const { peeked, verified } = await both(verifier, token);
      assert.equal(peeked?.ok === false && peeked.reason, "TOKEN_EXPIRED");
      assert.equal(verified.ok === false && verified.reason, "TOKEN_EXPIRED");
    }
    for (const [payload, expected] of [
      [claims({ ...good, aud: "other" }), "AUDIENCE_MISMATCH"],
      [claims({ aud: "api", iss: "https://evil.example" }), "ISSUER_MISMATCH"],
    ] as const) {
      for (const token of [signed(payload), forged(payload)]) {
        const { peeked, verified } = await both(verifier, token);
        assert.equal(peeked?.ok === false && peeked.reason, "TOKEN_INVALID");
        assert.equal(code(peeked), expected);
        assert.equal(code(verified), expected);
      }
    }
    // A good token still verifies; a forged good one is still a forgery.
    const ok = await verifier.verify(signed(claims(good)), "access");
    assert.equal(ok.ok, true);
    const bad = await verifier.verify(forged(claims(good)), "access");
    assert.equal(bad.ok === false && bad.reason, "TOKEN_INVALID");
    assert.equal(code(bad), "SIGNATURE_INVALID");
  });
});
