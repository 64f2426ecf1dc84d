// Issue 19 item 5: a failing JWKS (HTTP 500, a reset connection) is fetched at most once per
// cool-down, whatever the failure, through both ways a JWKS is configured (`jwksUrl` and a trusted
// issuer); calls meanwhile fail closed with KEYS_UNAVAILABLE, and once the endpoint recovers and the
// cool-down has passed, the keys are fetched and tokens verify. Real local HTTP servers counting
// fetches, real RS256 keys.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { createKeyring, createTokenVerifier } from "../src/exports/protoguard.js";
import { withTrustedIssuers, type AccessTokenResult, type AccessVerifier } from "../src/exports/core.js";
import { idpKey, signToken, type IdpKey } from "./helpers/idp.js";
import { TEST_SECRET } from "./helpers/secrets.js";

type Failure = "500" | "reset" | "ok";

/** A JWKS endpoint that fails as told, counting every request. */
async function flakyJwks(key: IdpKey) {
  let mode: Failure = "500";
  let fetches = 0;
  const server = http.createServer((req, res) => {
    fetches++;
    if (mode === "500") res.writeHead(500).end("oops");
    else if (mode === "reset") req.socket.destroy();
    else res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [key.jwk] }));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`,
    set: (next: Failure) => void (mode = next),
    fetches: () => fetches,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const reasonOf = (result: AccessTokenResult) => (result.ok ? "OK" : result.reason);

describe("a failing JWKS is fetched at most once per cool-down", { timeout: 60_000 }, () => {
  let key: IdpKey;
  before(async () => {
    key = await idpKey("flaky-1");
  });

  for (const failure of ["500", "reset"] as const) {
    for (const via of ["jwksUrl", "trusted issuer"] as const) {
      it(`${failure} through ${via}: 200 calls, one fetch; after the cool-down one more; then recovered`, async () => {
        const jwks = await flakyJwks(key);
        try {
          jwks.set(failure);
          const iss = "https://flaky.example.com/";
          let verifier: AccessVerifier;
          if (via === "jwksUrl") {
            verifier = createTokenVerifier({
              jwksUrl: jwks.url,
              jwksOptions: { failureCooldownDuration: 800, timeoutDuration: 2_000 },
            });
          } else {
            const keyring = await createKeyring([{ alg: "HS256", secret: TEST_SECRET }]);
            // The failure cool-down follows a short jwks_cooldown_ms.
            verifier = withTrustedIssuers(createTokenVerifier({ keyring }), [
              { issuer: iss, jwks_url: jwks.url, audience: "api", jwks_cooldown_ms: 800 },
            ]);
          }
          const now = Math.floor(Date.now() / 1000);
          const claims =
            via === "jwksUrl"
              ? { user_id: 7, token_type: "access" } // protoguard's own claims, keys from a JWKS
              : { iss, aud: "api", sub: "u-1" };
          const token = await signToken(key, { ...claims, jti: randomUUID(), iat: now, exp: now + 300 });
          const results = [];
          for (let i = 0; i < 200; i++) results.push(reasonOf(await verifier.verify(token, "access")));
          assert.deepEqual(new Set(results), new Set(["KEYS_UNAVAILABLE"]));
          assert.equal(jwks.fetches(), 1, "one fetch for 200 calls");

          await sleep(900);
          assert.equal(reasonOf(await verifier.verify(token, "access")), "KEYS_UNAVAILABLE");
          assert.equal(jwks.fetches(), 2, "one more fetch once the cool-down passed");

          jwks.set("ok");
          assert.equal(reasonOf(await verifier.verify(token, "access")), "KEYS_UNAVAILABLE", "still cooling down");
          assert.equal(jwks.fetches(), 2);
          await sleep(900);
          assert.equal(reasonOf(await verifier.verify(token, "access")), "OK");
          assert.equal(jwks.fetches(), 3);
        } finally {
          await jwks.close();
        }
      });
    }
  }
});
