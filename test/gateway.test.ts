// Gateway mode over real HTTP/2 servers: claims an Envoy-style gateway verified already arrive
// in a header (base64url of the payload JSON, or the JSON), and count only when the socket's
// peer is a trusted gateway. The loopback client plays the gateway.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Code, createClient, type CallOptions } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { GuardedService } from "../gen/guardtest/v1/guarded_pb.js";
import {
  createKeyring,
  createTokenIssuer,
  createTokenVerifier,
  type Keyring,
  type TokenIssuer,
  type TrustedIssuerInit,
} from "../src/exports/protoguard.js";
import { ConfigError, loadConfig, startServer, type RunningServer } from "../src/exports/server.js";
import { createGroup, createUser, findExternalIdentity, grantGroupPermissions } from "../src/exports/store.js";
import { createTestDatabase, type TestDatabase } from "../src/exports/testing.js";
import { bearer, collect, expectError } from "./helpers/connect.js";
import { guardedRoutes } from "./helpers/guarded-service.js";
import { TEST_SECRET as SECRET } from "./helpers/secrets.js";

const HEADER = "x-jwt-payload";
const KEYCLOAK = "https://sso.example.com/realms/shop";
const now = () => Math.floor(Date.now() / 1000);

/** What Envoy's jwt_authn writes with `forward_payload_header`: base64url of the payload JSON, no padding. */
const envoy = (payload: object) => Buffer.from(JSON.stringify(payload)).toString("base64url");
const gatewayHeaders = (value: string, extra: Record<string, string> = {}): CallOptions => ({
  headers: { [HEADER]: value, ...extra },
});

function keycloakPayload(sub: string, roles: string[], username: string) {
  const iat = now();
  return {
    exp: iat + 300,
    iat,
    jti: randomUUID(),
    iss: KEYCLOAK,
    aud: ["shop-api", "account"],
    sub,
    typ: "Bearer",
    azp: "shop-web",
    realm_access: { roles: ["default-roles-shop", ...roles] },
    scope: "openid email profile",
    preferred_username: username,
  };
}

describe("gateway mode over HTTP/2", () => {
  let database: TestDatabase;
  let keyring: Keyring;
  let issuer: TokenIssuer;
  let trusting: RunningServer;
  let trustingNoPrefilter: RunningServer;
  let distrusting: RunningServer;
  const issuers: TrustedIssuerInit[] = [
    {
      issuer: KEYCLOAK,
      // Never fetched: the gateway verified the signature.
      jwks_url: "http://127.0.0.1:9/certs",
      audience: "shop-api",
      groups_claim: "realm_access.roles",
      provision: true,
    },
  ];
  let alice: { id: number };
  let bob: { id: number };
  const clientOf = (server: RunningServer) =>
    createClient(GuardedService, createConnectTransport({ baseUrl: server.url, httpVersion: "2" }));

  /**
   * protoguard's own access-token claims, as a gateway verifying protoguard's JWKS forwards them:
   * `iat` with milliseconds, as the issuer writes it. A whole-second `iat` in the second the user
   * was created precedes its credentials change and is refused as revoked (the safe side).
   */
  const ownPayload = (userId: number, extra: object = {}) => {
    const iat = Date.now() / 1000;
    return {
      token_type: "access",
      exp: Math.floor(iat) + 300,
      iat,
      jti: randomUUID().replaceAll("-", ""),
      user_id: userId,
      ...extra,
    };
  };

  before(async () => {
    database = await createTestDatabase();
    keyring = await createKeyring([{ alg: "HS256", secret: SECRET }]);
    issuer = createTokenIssuer({ keyring });
    const db = database.db;
    await createGroup(db, "order-viewer");
    await grantGroupPermissions(db, "order-viewer", ["shop.view_order"]);
    alice = await createUser(db, { username: "alice" });
    bob = await createUser(db, { username: "bob" });
    const start = (trustedPeers: string[], prefilter = true) =>
      startServer({
        runtime: { database, keyring, verifier: createTokenVerifier({ keyring }) },
        routes: guardedRoutes,
        port: 0,
        logger: pino({ level: "silent" }),
        graceMs: 500,
        prefilter,
        trustedIssuers: issuers,
        gateway: { header: HEADER, trustedPeers },
      });
    trusting = await start(["127.0.0.1", "::1"]);
    trustingNoPrefilter = await start(["127.0.0.0/8", "::1/128"], false);
    // A gateway range that excludes loopback: this test's client is not a gateway there.
    distrusting = await start(["10.0.0.0/8", "fd00::/8"]);
  });

  after(async () => {
    await trusting?.close();
    await trustingNoPrefilter?.close();
    await distrusting?.close();
    await database?.close();
  });

  it("a trusted peer's Envoy header (base64url) is the caller: provisioned, roles mapped onto groups", async () => {
    for (const server of [trusting, trustingNoPrefilter]) {
      const sub = randomUUID();
      const header = envoy(keycloakPayload(sub, ["order-viewer"], "erin"));
      const reply = await clientOf(server).permissionUnary({ text: "x" }, gatewayHeaders(header));
      assert.match(reply.username, /^erin/);
      assert.ok((await findExternalIdentity(database.db, KEYCLOAK, sub)) !== undefined);
      const noRole = envoy(keycloakPayload(randomUUID(), [], "frank"));
      await expectError(
        clientOf(server).permissionUnary({ text: "x" }, gatewayHeaders(noRole)),
        Code.PermissionDenied,
        "PERMISSION_MISSING",
      );
    }
  });

  it("plain JSON with protoguard's own claims names a local user; streams work; gRPC too", async () => {
    const json = JSON.stringify(ownPayload(alice.id));
    assert.equal((await clientOf(trusting).authenticatedUnary({ text: "x" }, gatewayHeaders(json))).username, "alice");
    const grpc = createClient(GuardedService, createGrpcTransport({ baseUrl: trusting.url }));
    const replies = await collect(grpc.publicServerStream({ text: "s" }, gatewayHeaders(envoy(ownPayload(alice.id)))));
    assert.deepEqual(
      replies.map((r) => r.username),
      ["alice", "alice"],
    );
  });

  it("refuses a header naming an unknown user, an expired payload and a garbage header", async () => {
    const client = clientOf(trusting);
    await expectError(
      client.authenticatedUnary({ text: "x" }, gatewayHeaders(envoy(ownPayload(2_000_000_000)))),
      Code.Unauthenticated,
      "USER_INACTIVE",
    );
    const expired = envoy(ownPayload(alice.id, { iat: now() - 7200, exp: now() - 3600 }));
    await expectError(
      client.authenticatedUnary({ text: "x" }, gatewayHeaders(expired)),
      Code.Unauthenticated,
      "TOKEN_EXPIRED",
    );
    await expectError(
      client.authenticatedUnary({ text: "x" }, gatewayHeaders("not base64url!")),
      Code.Unauthenticated,
      "TOKEN_MALFORMED",
    );
    // A payload of neither shape (no trusted iss, no user id) is invalid, not anonymous.
    await expectError(
      client.publicUnary({ text: "x" }, gatewayHeaders(envoy({ sub: "x", exp: now() + 60, iat: now() }))),
      Code.Unauthenticated,
      "TOKEN_INVALID",
    );
  });

  it("the same header from a peer outside the gateway ranges is refused, even beside a valid bearer token", async () => {
    const client = clientOf(distrusting);
    const header = envoy(ownPayload(alice.id));
    for (const method of ["authenticatedUnary", "publicUnary"] as const) {
      await expectError(
        client[method]({ text: "x" }, gatewayHeaders(header)),
        Code.Unauthenticated,
        "GATEWAY_UNTRUSTED",
        "gateway claims header not accepted from this peer",
      );
    }
    const bobToken = (await issuer.issueAccess(bob.id)).token;
    await expectError(
      client.authenticatedUnary(
        { text: "x" },
        gatewayHeaders(header, bearer(bobToken).headers as Record<string, string>),
      ),
      Code.Unauthenticated,
      "GATEWAY_UNTRUSTED",
    );
    // Without the header, the bearer token is judged as usual.
    assert.equal((await client.authenticatedUnary({ text: "x" }, bearer(bobToken))).username, "bob");
  });

  it("from a trusted gateway, its header takes precedence over a bearer token", async () => {
    const bobToken = (await issuer.issueAccess(bob.id)).token;
    const both = gatewayHeaders(envoy(ownPayload(alice.id)), { authorization: `Bearer ${bobToken}` });
    assert.equal((await clientOf(trusting).authenticatedUnary({ text: "x" }, both)).username, "alice");
    // A trusted gateway that forwarded no header: the bearer token decides.
    assert.equal((await clientOf(trusting).authenticatedUnary({ text: "x" }, bearer(bobToken))).username, "bob");
  });
});

describe("gateway configuration", () => {
  it("PROTOGUARD_GATEWAY_* variables are validated", () => {
    assert.throws(
      () => loadConfig({ PROTOGUARD_GATEWAY_HEADER: "x-jwt-payload" }),
      (error: Error) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /needs PROTOGUARD_GATEWAY_TRUSTED_PEERS/);
        return true;
      },
    );
    assert.throws(
      () => loadConfig({ PROTOGUARD_GATEWAY_HEADER: "x-jwt-payload", PROTOGUARD_GATEWAY_TRUSTED_PEERS: "10.0.0.0/33" }),
      /PROTOGUARD_GATEWAY_TRUSTED_PEERS: invalid trusted proxy/,
    );
    assert.throws(
      () => loadConfig({ PROTOGUARD_GATEWAY_TRUSTED_PEERS: "10.0.0.1" }),
      /without PROTOGUARD_GATEWAY_HEADER/,
    );
    assert.throws(
      () => loadConfig({ PROTOGUARD_GATEWAY_HEADER: "authorization", PROTOGUARD_GATEWAY_TRUSTED_PEERS: "10.0.0.1" }),
      /other than authorization/,
    );
    const config = loadConfig({
      PROTOGUARD_GATEWAY_HEADER: "X-JWT-Payload",
      PROTOGUARD_GATEWAY_TRUSTED_PEERS: "10.0.0.0/8, ::1",
    });
    assert.equal(config.gatewayHeader, "x-jwt-payload");
    assert.deepEqual(config.gatewayTrustedPeers, ["10.0.0.0/8", "::1"]);
  });
});
