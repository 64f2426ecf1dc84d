/**
 * `npx tsx bench/external-decide.ts`: what a trusted issuer's token costs the decision, next to
 * protoguard's own, in process (no network but the loopback JWKS), on an embedded database.
 * Prints microseconds per decision for: a local token seen before; an IdP token seen before;
 * a new IdP token of a known subject (signature check + user lookup); a subject seen for the
 * first time (signature check + provisioning a user and its link).
 */
import { randomUUID } from "node:crypto";
import { GuardedService } from "../gen/guardtest/v1/guarded_pb.js";
import { createAuth, createKeyring, createTokenIssuer, createTokenVerifier } from "../src/exports/protoguard.js";
import {
  createGroup,
  createIdentityResolver,
  createPrincipalSource,
  createUser,
  grantGroupPermissions,
} from "../src/exports/store.js";
import { createTestDatabase } from "../src/exports/testing.js";
import { idpKey, signToken, startJwksServer } from "../test/helpers/idp.js";

const ISSUER = "https://sso.example.com/realms/shop";
const database = await createTestDatabase();
const jwks = await startJwksServer();
const key = await idpKey("kc-1");
jwks.publish("/certs", [key]);
const keyring = await createKeyring([{ alg: "HS256", secret: "bench-secret-bench-secret-bench-secret!!" }]);
const verifier = createTokenVerifier({ keyring });
const trustedIssuers = [
  {
    issuer: ISSUER,
    jwks_url: `${jwks.origin}/certs`,
    audience: "shop-api",
    groups_claim: "realm_access.roles",
    provision: true,
  },
];
const principals = await createPrincipalSource({ database });
const identities = await createIdentityResolver({ database, invalidations: principals });
const auth = createAuth({ verifier, trustedIssuers, principals, identities, services: [GuardedService] });
await createGroup(database.db, "order-viewer");
await grantGroupPermissions(database.db, "order-viewer", ["shop.view_order"]);
const local = await createUser(database.db, { username: "local", isSuperuser: true });
const method = GuardedService.method.permissionUnary;

const iat = () => Math.floor(Date.now() / 1000);
const keycloak = (sub: string) => ({
  iss: ISSUER,
  aud: ["shop-api", "account"],
  sub,
  iat: iat(),
  exp: iat() + 300,
  jti: randomUUID(),
  preferred_username: "bench",
  realm_access: { roles: ["order-viewer"] },
});
const headers = (token: string) => new Headers({ authorization: `Bearer ${token}` });

async function measure(name: string, tokens: readonly string[], repeat: number): Promise<void> {
  const all = tokens.map(headers);
  // Warm caches and the JIT on the cached cases; first-sight cases must stay first.
  if (repeat > tokens.length) for (let i = 0; i < repeat; i++) await auth.decide(method, all[i % all.length]!);
  const started = performance.now();
  for (let i = 0; i < repeat; i++) {
    const verdict = await auth.decide(method, all[i % all.length]!);
    if (verdict.outcome !== "allow")
      throw new Error(`${name}: ${verdict.outcome} ${"reason" in verdict ? verdict.reason : ""}`);
  }
  const us = ((performance.now() - started) * 1000) / repeat;
  console.log(`${name.padEnd(48)} ${us.toFixed(1).padStart(8)} µs/decision  (${repeat} decisions)`);
}

const localToken = (await createTokenIssuer({ keyring }).issueAccess(local.id)).token;
const known = randomUUID();
const externalToken = await signToken(key, keycloak(known));
await measure("local token, seen before", [localToken], 20_000);
await measure("IdP token, seen before", [externalToken], 20_000);
const fresh = await Promise.all(Array.from({ length: 500 }, () => signToken(key, keycloak(known))));
await measure("new IdP token of a known subject", fresh, fresh.length);
const newcomers = await Promise.all(Array.from({ length: 100 }, () => signToken(key, keycloak(randomUUID()))));
await measure("IdP subject seen first (provisioned)", newcomers, newcomers.length);

await identities.close();
await principals.close();
await jwks.close();
await database.close();
