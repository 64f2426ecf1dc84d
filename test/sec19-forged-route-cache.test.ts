// Issue 19 item 7: nothing an unauthenticated client sends is cached before it is verified. With
// trusted issuers configured, the issuer router remembers tokens as protoguard's own only once the
// local verifier accepted them: thousands of forged 8 KiB tokens without `iss` leave its route cache
// (the public `routeCacheSize`) and the verification caches empty. Real keys, real verification.
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { createKeyring, createTokenIssuer, createTokenVerifier } from "../src/exports/protoguard.js";
import { withTrustedIssuers } from "../src/exports/core.js";
import { TEST_SECRET } from "./helpers/secrets.js";

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

describe("forged tokens are not kept in memory", () => {
  it("5,000 forged tokens without iss: route cache and caches stay empty; a real token is remembered", async () => {
    const keyring = await createKeyring([{ alg: "HS256", secret: TEST_SECRET }]);
    const verifier = withTrustedIssuers(createTokenVerifier({ keyring }), [
      { issuer: "https://idp.example.com/", jwks_url: "https://idp.example.com/jwks", audience: "api" },
    ]);
    const header = b64({ alg: "HS256", typ: "JWT" });
    const now = Math.floor(Date.now() / 1000);
    for (let i = 0; i < 5_000; i++) {
      const payload = b64({
        token_type: "access",
        user_id: 1,
        jti: randomUUID(),
        iat: now,
        exp: now + 300,
        pad: randomBytes(6_000).toString("base64url"),
      });
      const forged = `${header}.${payload}.${randomBytes(32).toString("base64url")}`;
      const result = await verifier.verify(forged, "access");
      assert.equal(result.ok, false);
      if (i === 0) assert.equal(verifier.peek(forged, "access")?.ok, false, "peek refuses it too");
    }
    assert.equal(verifier.routeCacheSize, 0, "no forged token remembered for routing");
    assert.equal(verifier.cacheSize, 0, "no forged token cached as verified");

    const { token } = await createTokenIssuer({ keyring }).issueAccess(1);
    assert.equal((await verifier.verify(token, "access")).ok, true);
    assert.equal(verifier.routeCacheSize, 1, "a verified token of protoguard's own is remembered");
    assert.equal((await verifier.verify(token, "access")).ok, true);
    assert.equal(verifier.routeCacheSize, 1);
  });
});
