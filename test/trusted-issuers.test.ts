// Tokens from existing identity providers: Keycloak, Auth0 and Entra ID access tokens, shaped as
// each documents them, signed with real keys whose JWKS a real HTTP server in this test serves,
// sent over HTTP/2 to a real server. Covers routing by iss, JIT provisioning and its refusal,
// groups → permissions, audience, expiry, kid rotation, a JWKS outage and deactivation.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { eq } from "drizzle-orm";
import { pino } from "pino";
import { GuardedService } from "../gen/guardtest/v1/guarded_pb.js";
import {
  createAuth,
  createKeyring,
  createTokenIssuer,
  createTokenVerifier,
  type Keyring,
  type TrustedIssuerInit,
} from "../src/exports/protoguard.js";
import { parseTrustedIssuers, withTrustedIssuers } from "../src/exports/core.js";
import { ConfigError, loadConfig, openRuntime, startServer, type RunningServer } from "../src/exports/server.js";
import {
  createGroup,
  createIdentityResolver,
  createPrincipalSource,
  createUser,
  findExternalIdentity,
  grantGroupPermissions,
  linkExternalIdentity,
  revokeGroupPermissions,
  setUserActive,
} from "../src/exports/store.js";
import { userGroups, users } from "../src/store/schema.js";
import { createTestDatabase, type TestDatabase } from "../src/exports/testing.js";
import { bearer, eventually, expectError } from "./helpers/connect.js";
import { guardedRoutes } from "./helpers/guarded-service.js";
import { createStreamProbe, streamingRoutes } from "./helpers/stream-service.js";
import { deadUrl, idpKey, signToken, startJwksServer, type IdpKey, type JwksServer } from "./helpers/idp.js";

const KEYCLOAK = "https://sso.example.com/realms/shop";
const AUTH0 = "https://shop-tenant.eu.auth0.com/";
const AUTH0_SCOPES = "https://scopes-tenant.us.auth0.com/";
const TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad";
const ENTRA = `https://login.microsoftonline.com/${TENANT}/v2.0`;
const DOWN = "https://down.example.com/";
const PATHS = {
  keycloak: "/realms/shop/protocol/openid-connect/certs",
  auth0: "/auth0/.well-known/jwks.json",
  auth0Scopes: "/auth0-scopes/.well-known/jwks.json",
  entra: `/${TENANT}/discovery/v2.0/keys`,
};

const now = () => Math.floor(Date.now() / 1000);

/** A Keycloak 24 realm access token (the claims `kc` puts in one for a confidential client). */
function keycloakClaims(sub: string, roles: readonly string[], extra: Record<string, unknown> = {}) {
  const iat = now();
  return {
    exp: iat + 300,
    iat,
    auth_time: iat - 5,
    jti: randomUUID(),
    iss: KEYCLOAK,
    aud: ["shop-api", "account"],
    sub,
    typ: "Bearer",
    azp: "shop-web",
    session_state: randomUUID(),
    acr: "1",
    "allowed-origins": ["https://shop.example.com"],
    realm_access: { roles: ["offline_access", "uma_authorization", "default-roles-shop", ...roles] },
    resource_access: { account: { roles: ["manage-account", "manage-account-links", "view-profile"] } },
    scope: "openid email profile",
    sid: randomUUID(),
    email_verified: true,
    name: "Alice Liddell",
    preferred_username: "alice",
    given_name: "Alice",
    family_name: "Liddell",
    email: "alice@example.com",
    ...extra,
  };
}

/** An Auth0 API access token with a namespaced roles claim added by an Action. */
function auth0Claims(sub: string, roles: readonly string[], issuer = AUTH0, scope = "openid profile email") {
  const iat = now();
  return {
    "https://example.com/roles": roles,
    iss: issuer,
    sub,
    aud: ["https://api.shop.example.com", `${issuer}userinfo`],
    iat,
    exp: iat + 86_400,
    azp: "x5tW0Pz3kVq8mJ2rYb6cL1nA9dE4fG7h",
    scope,
  };
}

/** An Entra ID v2.0 access token for an API exposing app roles. */
function entraClaims(oid: string, roles: readonly string[]) {
  const iat = now();
  return {
    aud: "api://shop-api",
    iss: ENTRA,
    iat,
    nbf: iat,
    exp: iat + 3600,
    aio: "AWQAm/8TAAAA",
    azp: "6e74172b-be56-4843-9ff4-e66a39bb12e3",
    azpacr: "0",
    name: "Megan Bowen",
    oid,
    preferred_username: "meganb@contoso.example",
    rh: "0.AX0AjQ",
    roles,
    scp: "access_as_user",
    sub: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
    tid: TENANT,
    uti: "fqiBqXLPj0eQa82S-IYFAA",
    ver: "2.0",
  };
}

describe("trusted issuers: Keycloak, Auth0 and Entra ID tokens over HTTP/2", () => {
  let database: TestDatabase;
  let jwks: JwksServer;
  let keyring: Keyring;
  let server: RunningServer;
  let client: Client<typeof GuardedService>;
  let streamServer: RunningServer;
  let streamClient: Client<typeof GuardedService>;
  const keys: Record<"local" | "keycloak" | "keycloakNext" | "auth0" | "auth0Scopes" | "entra" | "down", IdpKey> =
    {} as never;
  let issuers: TrustedIssuerInit[];

  before(async () => {
    database = await createTestDatabase();
    jwks = await startJwksServer();
    keys.local = await idpKey("local-1");
    keys.keycloak = await idpKey("kc-2026-01");
    keys.keycloakNext = await idpKey("kc-2026-07");
    keys.auth0 = await idpKey("auth0-key-1");
    keys.auth0Scopes = await idpKey("auth0-scopes-1", "ES256");
    keys.entra = await idpKey("entra-nbmyq");
    keys.down = await idpKey("down-1");
    jwks.publish(PATHS.keycloak, [keys.keycloak]);
    jwks.publish(PATHS.auth0, [keys.auth0]);
    jwks.publish(PATHS.auth0Scopes, [keys.auth0Scopes]);
    jwks.publish(PATHS.entra, [keys.entra]);
    issuers = [
      {
        issuer: KEYCLOAK,
        jwks_url: jwks.origin + PATHS.keycloak,
        audience: "shop-api",
        subject_claim: "sub",
        groups_claim: "realm_access.roles",
        provision: true,
        // Rotation is exercised here: an unknown kid may re-fetch at once.
        jwks_cooldown_ms: 0,
      },
      {
        issuer: AUTH0,
        jwks_url: jwks.origin + PATHS.auth0,
        audience: "https://api.shop.example.com",
        subject_claim: "sub",
        groups_claim: ["https://example.com/roles"],
        provision: true,
      },
      {
        issuer: AUTH0_SCOPES,
        jwks_url: jwks.origin + PATHS.auth0Scopes,
        audience: "https://api.shop.example.com",
        groups_claim: "scope",
        group_map: { "read:orders": "order-viewer" },
        algorithms: ["ES256"],
        provision: true,
      },
      {
        issuer: ENTRA,
        jwks_url: jwks.origin + PATHS.entra,
        audience: "api://shop-api",
        subject_claim: "oid",
        groups_claim: "roles",
        group_map: { "Orders.Read": ["order-viewer"] },
        provision: false,
      },
      { issuer: DOWN, jwks_url: await deadUrl("/jwks"), audience: "x", provision: true },
    ];
    keyring = await createKeyring([{ alg: "RS256", privateKey: keys.local.privateKey, kid: "local-1" }]);
    const db = database.db;
    await createGroup(db, "order-viewer");
    await grantGroupPermissions(db, "order-viewer", ["shop.view_order"]);
    // A local account named like the IdP user: provisioning must not take it over.
    await createUser(db, { username: "alice", email: "local-alice@example.com" });
    server = await startServer({
      runtime: { database, keyring, verifier: createTokenVerifier({ keyring }), trustedIssuers: issuers },
      routes: guardedRoutes,
      port: 0,
      logger: pino({ level: "silent" }),
      graceMs: 500,
    });
    client = createClient(GuardedService, createConnectTransport({ baseUrl: server.url, httpVersion: "2" }));
    // Handlers that never end on their own: only the auth layer ends their calls.
    streamServer = await startServer({
      runtime: { database, keyring, verifier: createTokenVerifier({ keyring }), trustedIssuers: issuers },
      routes: streamingRoutes(createStreamProbe()),
      port: 0,
      logger: pino({ level: "silent" }),
      graceMs: 500,
    });
    streamClient = createClient(
      GuardedService,
      createConnectTransport({ baseUrl: streamServer.url, httpVersion: "2" }),
    );
  });

  after(async () => {
    await streamServer?.close();
    await server?.close();
    await jwks?.close();
    await database?.close();
  });

  it("Keycloak: provisions a user on first sight, maps realm roles onto groups, writes no membership", async () => {
    const sub = randomUUID();
    const token = await signToken(keys.keycloak, keycloakClaims(sub, ["order-viewer"]));
    const reply = await client.permissionUnary({ text: "hi" }, bearer(token));
    const userId = await findExternalIdentity(database.db, KEYCLOAK, sub);
    assert.ok(userId !== undefined, "the subject is linked");
    const [row] = await database.db.select().from(users).where(eq(users.id, userId));
    assert.notEqual(row!.username, "alice", "the local alice is not taken over");
    assert.match(row!.username, /^alice_[0-9a-f]{10}$/);
    assert.equal(reply.username, row!.username);
    assert.equal(row!.email, "alice@example.com");
    assert.equal(row!.password, "", "no password login for an IdP user");
    assert.deepEqual(await database.db.select().from(userGroups).where(eq(userGroups.userId, userId)), []);

    // A second token of the same subject is the same user, without a second row.
    const again = await signToken(keys.keycloak, keycloakClaims(sub, ["order-viewer"]));
    assert.equal((await client.permissionUnary({ text: "again" }, bearer(again))).username, row!.username);
    assert.equal((await database.db.select().from(users).where(eq(users.username, row!.username))).length, 1);
  });

  it("Keycloak: without the mapped role the guarded method is PERMISSION_DENIED, an authenticated one works", async () => {
    const token = await signToken(keys.keycloak, keycloakClaims(randomUUID(), [], { preferred_username: "bob" }));
    assert.equal((await client.authenticatedUnary({ text: "x" }, bearer(token))).username, "bob");
    await expectError(
      client.permissionUnary({ text: "x" }, bearer(token)),
      Code.PermissionDenied,
      "PERMISSION_MISSING",
    );
  });

  it("Auth0: a namespaced roles claim, an aud array and an auth0| subject", async () => {
    const sub = "auth0|64b7f9c2e4a1d2f3a4b5c6d7";
    const token = await signToken(keys.auth0, auth0Claims(sub, ["order-viewer"]));
    const reply = await client.permissionUnary({ text: "x" }, bearer(token));
    assert.equal(reply.username, "auth0_64b7f9c2e4a1d2f3a4b5c6d7");
    assert.ok((await findExternalIdentity(database.db, AUTH0, sub)) !== undefined);
    const noRole = await signToken(keys.auth0, auth0Claims("auth0|other", []));
    await expectError(
      client.permissionUnary({ text: "x" }, bearer(noRole)),
      Code.PermissionDenied,
      "PERMISSION_MISSING",
    );
  });

  it("Auth0: a space-separated scope string through a group map (ES256 keys)", async () => {
    const reader = await signToken(
      keys.auth0Scopes,
      auth0Claims("google-oauth2|1099", [], AUTH0_SCOPES, "openid read:orders write:orders"),
    );
    assert.equal((await client.permissionUnary({ text: "x" }, bearer(reader))).username, "google-oauth2_1099");
    // An IdP scope named like a group counts only through the map.
    const unmapped = await signToken(
      keys.auth0Scopes,
      auth0Claims("google-oauth2|2", [], AUTH0_SCOPES, "order-viewer"),
    );
    await expectError(
      client.permissionUnary({ text: "x" }, bearer(unmapped)),
      Code.PermissionDenied,
      "PERMISSION_MISSING",
    );
  });

  it("Entra ID: no provisioning refuses an unlinked oid; once linked, app roles map through the group map", async () => {
    const oid = randomUUID();
    const token = await signToken(keys.entra, entraClaims(oid, ["Orders.Read"]));
    await expectError(
      client.authenticatedUnary({ text: "x" }, bearer(token)),
      Code.Unauthenticated,
      "IDENTITY_NOT_LINKED",
      "external identity not linked to a user",
    );
    assert.equal(await findExternalIdentity(database.db, ENTRA, oid), undefined, "nothing was created");
    await createUser(database.db, { username: "megan" });
    await linkExternalIdentity(database.db, ENTRA, oid, "megan");
    // A token issued before the local account existed predates its credentials: refused as
    // revoked, like protoguard's own tokens from before a credentials change.
    await expectError(client.authenticatedUnary({ text: "x" }, bearer(token)), Code.Unauthenticated, "TOKEN_REVOKED");
    // The next token (iat a second on: the account's creation time has milliseconds, iat none).
    const iat = now() + 1;
    const next = await signToken(keys.entra, { ...entraClaims(oid, ["Orders.Read"]), iat, nbf: iat });
    assert.equal((await client.permissionUnary({ text: "x" }, bearer(next))).username, "megan");
  });

  it("refuses an unknown issuer before any key is fetched", async () => {
    const before = jwks.fetches(PATHS.keycloak);
    const token = await signToken(keys.keycloak, {
      ...keycloakClaims(randomUUID(), []),
      iss: "https://evil.example.com/",
    });
    await expectError(client.authenticatedUnary({ text: "x" }, bearer(token)), Code.Unauthenticated, "UNKNOWN_ISSUER");
    assert.equal(jwks.fetches(PATHS.keycloak), before);
  });

  it("refuses a wrong audience (an ID token for the SPA), and an expired token without fetching keys", async () => {
    const idToken = await signToken(keys.keycloak, {
      ...keycloakClaims(randomUUID(), ["order-viewer"]),
      aud: "shop-web",
    });
    await expectError(client.authenticatedUnary({ text: "x" }, bearer(idToken)), Code.Unauthenticated, "TOKEN_INVALID");
    const before = jwks.fetches(PATHS.auth0);
    const expired = await signToken(keys.auth0, {
      ...auth0Claims("auth0|late", []),
      iat: now() - 7200,
      exp: now() - 3600,
    });
    await expectError(
      client.authenticatedUnary({ text: "x" }, bearer(expired)),
      Code.Unauthenticated,
      "TOKEN_EXPIRED",
      "token expired",
    );
    assert.equal(jwks.fetches(PATHS.auth0), before, "no JWKS I/O for an expired token");
  });

  it("refuses algorithm and key confusion both ways", async () => {
    // Claims Keycloak, signed with protoguard's own key: routed to Keycloak's JWKS, no key matches.
    const ours = await signToken(keys.local, keycloakClaims(randomUUID(), ["order-viewer"]));
    await expectError(client.authenticatedUnary({ text: "x" }, bearer(ours)), Code.Unauthenticated, "TOKEN_INVALID");
    // Signed with Keycloak's key, claiming protoguard (no iss): the local keyring has no such kid.
    const { iss: _iss, ...noIss } = keycloakClaims(randomUUID(), []);
    const theirs = await signToken(keys.keycloak, { ...noIss, token_type: "access", user_id: 1 });
    await expectError(client.authenticatedUnary({ text: "x" }, bearer(theirs)), Code.Unauthenticated, "TOKEN_INVALID");
    // HS256 with the JWKS's public key as the secret: not an allowed algorithm for the issuer.
    const { SignJWT } = await import("jose");
    const hs = await new SignJWT(keycloakClaims(randomUUID(), ["order-viewer"]))
      .setProtectedHeader({ alg: "HS256", kid: keys.keycloak.kid })
      .sign(new TextEncoder().encode(JSON.stringify(keys.keycloak.jwk)));
    await expectError(client.authenticatedUnary({ text: "x" }, bearer(hs)), Code.Unauthenticated, "TOKEN_INVALID");
    // ES256 under Auth0's kid: Auth0 is configured for RS256 only.
    const wrongKey = await signToken(keys.auth0Scopes, auth0Claims("auth0|x", []), { kid: keys.auth0.kid });
    await expectError(
      client.authenticatedUnary({ text: "x" }, bearer(wrongKey)),
      Code.Unauthenticated,
      "TOKEN_INVALID",
    );
  });

  it("picks up a rotated key by kid; an unknown kid within the cool-down fetches nothing", async () => {
    const sub = randomUUID();
    const rotated = await signToken(keys.keycloakNext, keycloakClaims(sub, ["order-viewer"]));
    await expectError(client.authenticatedUnary({ text: "x" }, bearer(rotated)), Code.Unauthenticated, "TOKEN_INVALID");
    jwks.publish(PATHS.keycloak, [keys.keycloakNext, keys.keycloak]);
    const fetched = jwks.fetches(PATHS.keycloak);
    const fresh = await signToken(keys.keycloakNext, keycloakClaims(sub, ["order-viewer"]));
    assert.ok((await client.permissionUnary({ text: "x" }, bearer(fresh))).username.startsWith("alice_"));
    assert.equal(jwks.fetches(PATHS.keycloak), fetched + 1, "one fetch for the new kid");

    // Auth0 keeps the default 30 s cool-down: made-up kids cannot make us hammer its JWKS.
    const auth0Fetches = jwks.fetches(PATHS.auth0);
    assert.ok(auth0Fetches >= 1);
    for (const kid of ["made-up-1", "made-up-2"]) {
      const forged = await signToken(keys.auth0, auth0Claims("auth0|x", []), { kid });
      await expectError(
        client.authenticatedUnary({ text: "x" }, bearer(forged)),
        Code.Unauthenticated,
        "TOKEN_INVALID",
      );
    }
    assert.equal(jwks.fetches(PATHS.auth0), auth0Fetches);
  });

  it("fails closed when an issuer's JWKS is unreachable: UNAVAILABLE, and public methods stay anonymous", async () => {
    const iat = now();
    const token = await signToken(keys.down, { iss: DOWN, aud: "x", sub: "s-1", iat, exp: iat + 300 });
    await expectError(
      client.authenticatedUnary({ text: "x" }, bearer(token)),
      Code.Unavailable,
      "AUTH_BACKEND_UNAVAILABLE",
    );
    assert.equal((await client.publicUnary({ text: "x" }, bearer(token))).username, "");
  });

  it("deactivating the local user locks the external identity out", async () => {
    const sub = randomUUID();
    const first = await signToken(keys.keycloak, keycloakClaims(sub, [], { preferred_username: "carol" }));
    assert.equal((await client.authenticatedUnary({ text: "x" }, bearer(first))).username, "carol");
    await setUserActive(database.db, "carol", false);
    await eventually(
      () => expectError(client.authenticatedUnary({ text: "x" }, bearer(first)), Code.Unauthenticated, "USER_INACTIVE"),
      5000,
    );
    const later = await signToken(keys.keycloak, keycloakClaims(sub, [], { preferred_username: "carol" }));
    await expectError(client.authenticatedUnary({ text: "x" }, bearer(later)), Code.Unauthenticated, "USER_INACTIVE");
  });

  it("a change to a group's grants reaches callers whose token maps onto it (cache invalidated by `all`)", async () => {
    const token = await signToken(
      keys.keycloak,
      keycloakClaims(randomUUID(), ["auditor"], { preferred_username: "gina" }),
    );
    await createGroup(database.db, "auditor");
    await grantGroupPermissions(database.db, "auditor", ["shop.view_order"]);
    await eventually(() => client.permissionUnary({ text: "x" }, bearer(token)), 5000);
    await revokeGroupPermissions(database.db, "auditor", ["shop.view_order"]);
    await eventually(
      () =>
        expectError(client.permissionUnary({ text: "x" }, bearer(token)), Code.PermissionDenied, "PERMISSION_MISSING"),
      5000,
    );
  });

  it("an IdP caller's open stream ends when its group loses the grant, or its local user is deactivated", async () => {
    /** Opens a server stream and waits for its first message; `ended` is the error that ends it. */
    async function open(token: string): Promise<{ ended: Promise<ConnectError | undefined> }> {
      const messages = streamClient.permissionServerStream({ text: "tick" }, bearer(token))[Symbol.asyncIterator]();
      assert.equal((await messages.next()).done, false);
      const ended = (async () => {
        try {
          while (!(await messages.next()).done);
          return undefined;
        } catch (error) {
          return ConnectError.from(error);
        }
      })();
      return { ended };
    }
    await createGroup(database.db, "streamers");
    await grantGroupPermissions(database.db, "streamers", ["shop.view_order"]);
    const viewer = await signToken(
      keys.keycloak,
      keycloakClaims(randomUUID(), ["streamers"], { preferred_username: "hank" }),
    );
    const viewerStream = await open(viewer);
    await revokeGroupPermissions(database.db, "streamers", ["shop.view_order"]);
    const lostGrant = await viewerStream.ended;
    assert.equal(lostGrant?.code, Code.PermissionDenied, String(lostGrant));

    const sub = randomUUID();
    const ivy = await signToken(keys.keycloak, keycloakClaims(sub, ["order-viewer"], { preferred_username: "ivy" }));
    const running = await open(ivy);
    await setUserActive(database.db, `ivy`, false);
    const inactive = await running.ended;
    assert.equal(inactive?.code, Code.Unauthenticated, String(inactive));
    assert.match(String(inactive?.rawMessage), /user not found or inactive/);
  });

  it("createAuth's trustedIssuers add to a verifier's own: its issuer and its trusted issuers keep routing to it", async () => {
    const own = "https://api.shop.example.com";
    const verifier = withTrustedIssuers(createTokenVerifier({ keyring, issuer: own }), [issuers[0]!]);
    const principals = await createPrincipalSource({ database });
    const identities = await createIdentityResolver({ database, invalidations: principals });
    try {
      const auth = createAuth({
        verifier,
        principals,
        identities,
        trustedIssuers: [issuers[1]!],
        services: [GuardedService],
      });
      const decide = async (token: string) => {
        const verdict = await auth.decide(
          GuardedService.method.authenticatedUnary,
          new Headers({ authorization: `Bearer ${token}` }),
        );
        return verdict.outcome === "allow" ? verdict.principal?.username : verdict.reason;
      };
      const [frank] = await database.db.insert(users).values({ username: "frank" }).returning();
      const ownToken = (await createTokenIssuer({ keyring, issuer: own }).issueAccess(frank!.id)).token;
      assert.equal(await decide(ownToken), "frank");
      assert.equal(
        await decide(await signToken(keys.keycloak, keycloakClaims(randomUUID(), [], { preferred_username: "kc" }))),
        "kc",
      );
      assert.equal(await decide(await signToken(keys.auth0, auth0Claims("auth0|both", []))), "auth0_both");
      const stranger = await signToken(keys.keycloak, {
        ...keycloakClaims(randomUUID(), []),
        iss: "https://stranger/",
      });
      assert.equal(await decide(stranger), "UNKNOWN_ISSUER");
      assert.throws(
        () => createAuth({ verifier, principals, identities, trustedIssuers: [issuers[0]!] }),
        /trusted twice/,
      );
      assert.throws(() => createAuth({ verifier, principals, trustedIssuers: [issuers[1]!] }), /identities/);
    } finally {
      await identities.close();
      await principals.close();
    }
  });

  it("protoguard's own tokens keep working beside the trusted issuers", async () => {
    const issuer = createTokenIssuer({ keyring });
    const [dave] = await database.db.insert(users).values({ username: "dave" }).returning();
    const { token } = await issuer.issueAccess(dave!.id);
    assert.equal((await client.authenticatedUnary({ text: "x" }, bearer(token))).username, "dave");
  });
});

describe("trusted issuers configuration", () => {
  const valid = { issuer: KEYCLOAK, jwks_url: "https://sso.example.com/certs", audience: "shop-api" };

  it("refuses mistakes with messages naming the entry and the field", () => {
    const cases: [unknown, RegExp][] = [
      [{}, /JSON array/],
      [
        [{ ...valid, grups_claim: "groups" }],
        /#1 \(https:\/\/sso\.example\.com\/realms\/shop\): unknown field "grups_claim"/,
      ],
      [[{ ...valid, jwks_url: "http://sso.example.com/certs" }], /"jwks_url" must be https/],
      [[{ issuer: KEYCLOAK, jwks_url: valid.jwks_url }], /"audience" must be/],
      [[valid, valid], /listed twice/],
      [[{ ...valid, algorithms: ["HS256"] }], /"algorithms"/],
      [[{ ...valid, groups_claim: "realm_access..roles" }], /"groups_claim": every key must be a non-empty string/],
      [[{ ...valid, leeway: 600 }], /"leeway" must be an integer from 0 to 60/],
      [[{ ...valid, provision: "yes" }], /"provision" must be true or false/],
    ];
    for (const [input, message] of cases) assert.throws(() => parseTrustedIssuers(input), message);
    assert.throws(
      () =>
        withTrustedIssuers(
          createTokenVerifier({ keyring: undefined, jwksUrl: "https://x.example/jwks", issuer: KEYCLOAK }),
          [valid],
        ),
      /is protoguard's own issuer/,
    );
    assert.equal(parseTrustedIssuers([valid])[0]!.provision, false, "provisioning is opt-in");
  });

  it("PROTOGUARD_TRUSTED_ISSUERS: a bad file stops start-up; a good one is what the runtime trusts", async () => {
    const dir = await mkdtemp(join(tmpdir(), "protoguard-issuers-"));
    try {
      const file = join(dir, "issuers.json");
      const env = { PROTOGUARD_TRUSTED_ISSUERS: file, PROTOGUARD_DATA_DIR: join(dir, "data") };
      await writeFile(file, JSON.stringify([{ ...valid, subject_claim: "sub", groups_claim: 3 }]));
      await assert.rejects(openRuntime(loadConfig(env), { migrate: false }), (error: Error) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /^PROTOGUARD_TRUSTED_ISSUERS: .*issuers\.json: trusted issuer #1 .*"groups_claim"/);
        return true;
      });
      await writeFile(file, "[{");
      await assert.rejects(openRuntime(loadConfig(env), { migrate: false }), /not valid JSON/);
      await writeFile(file, JSON.stringify([valid, { ...valid, issuer: AUTH0 }]));
      const runtime = await openRuntime(loadConfig(env), { migrate: false });
      try {
        assert.deepEqual(
          runtime.trustedIssuers?.map((trusted) => trusted.issuer),
          [KEYCLOAK, AUTH0],
        );
      } finally {
        await runtime.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
