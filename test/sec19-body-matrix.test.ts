// Issue 19 items 3 and 8: every body shape on every transport is answered. Connect (proto and JSON), gRPC
// and gRPC-Web, each over HTTP/1.1, plaintext HTTP/2 (h2c) and TLS (gRPC has no HTTP/1.1), with an
// empty request body (a message of defaults) and a non-empty one, and a token seen for the first
// time (its checks go asynchronous) or already cached. Real connect-node clients, a real listener;
// each call has its own deadline on the client side only (an abort, no header), so a hang fails
// the case instead of stalling the run. Tokens: protoguard's own (first seen for a user not looked up
// yet, then cached) and an identity provider's (first seen: RS256 through WebCrypto and provisioning,
// so the verdict waits for I/O even on PGlite). And a refused HTTP/1.1 call leaves its kept-alive socket
// usable for the next call (item 8). PostgreSQL when DATABASE_URL is set (the h2c hang showed there:
// its lookups take long enough for END_STREAM to arrive first), else PGlite.
import assert from "node:assert/strict";
import * as http from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { pino } from "pino";
import { GuardedService } from "../gen/guardtest/v1/guarded_pb.js";
import { createKeyring, createTokenIssuer, createTokenVerifier, type TokenIssuer } from "../src/exports/protoguard.js";
import { startServer, type RunningServer } from "../src/exports/server.js";
import { createUser } from "../src/exports/store.js";
import { createTestDatabase, type TestDatabase } from "../src/exports/testing.js";
import { describeOr, postgresUrl, skipWithoutOpenssl } from "./helpers/env.js";
import { guardedRoutes } from "./helpers/guarded-service.js";
import { TEST_SECRET } from "./helpers/secrets.js";
import { idpKey, signToken, startJwksServer, type IdpKey, type JwksServer } from "./helpers/idp.js";
import { selfSignedCertificate } from "./helpers/tls.js";

const CALL_MS = 5_000;
const IDP = "https://idp.example.com/matrix";
type Protocol = "connect-proto" | "connect-json" | "grpc" | "grpc-web";
type Wire = "h1" | "h2c" | "tls";

describeOr(skipWithoutOpenssl, "every body shape on every transport is answered", { timeout: 300_000 }, () => {
  let dir: string;
  let database: TestDatabase;
  let issuer: TokenIssuer;
  let plain: RunningServer;
  let secure: RunningServer;
  let ca: string;
  let userId: number;
  let users = 0;
  let jwks: JwksServer;
  let idp: IdpKey;
  const sessions: Http2SessionManager[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoguard-matrix-"));
    const { cert, key } = await selfSignedCertificate(dir);
    ca = cert;
    database = postgresUrl ? await createTestDatabase({ url: postgresUrl }) : await createTestDatabase();
    userId = (await createUser(database.db, { username: "matrix" })).id;
    const keyring = await createKeyring([{ alg: "HS256", secret: TEST_SECRET }]);
    issuer = createTokenIssuer({ keyring });
    jwks = await startJwksServer();
    idp = await idpKey("matrix-idp");
    jwks.publish("/certs", [idp]);
    const trustedIssuers = [{ issuer: IDP, jwks_url: `${jwks.origin}/certs`, audience: "api", provision: true }];
    const runtime = { database, keyring, verifier: createTokenVerifier({ keyring }), trustedIssuers };
    const common = { routes: guardedRoutes, port: 0, logger: pino({ level: "silent" }), graceMs: 200 };
    plain = await startServer({ runtime, ...common });
    secure = await startServer({ runtime, ...common, tls: { cert, key } });
  });
  after(async () => {
    for (const session of sessions) session.abort();
    await plain?.close();
    await secure?.close();
    await database?.close();
    await jwks?.close();
    await rm(dir, { recursive: true, force: true });
  });

  function transport(protocol: Protocol, wire: Wire): Transport {
    const baseUrl = wire === "tls" ? secure.url.replace("127.0.0.1", "localhost") : plain.url;
    const nodeOptions = wire === "tls" ? { ca } : {};
    const httpVersion = wire === "h1" ? ("1.1" as const) : ("2" as const);
    let sessionManager: Http2SessionManager | undefined;
    if (httpVersion === "2") {
      sessionManager = new Http2SessionManager(baseUrl, {}, nodeOptions);
      sessions.push(sessionManager);
    }
    const base = { baseUrl, httpVersion, nodeOptions, ...(sessionManager !== undefined && { sessionManager }) };
    switch (protocol) {
      case "connect-proto":
        return createConnectTransport({ ...base, useBinaryFormat: true });
      case "connect-json":
        return createConnectTransport(base);
      case "grpc":
        return createGrpcTransport({ baseUrl, nodeOptions, ...(sessionManager !== undefined && { sessionManager }) });
      case "grpc-web":
        return createGrpcWebTransport({ ...base, useBinaryFormat: true });
    }
  }

  // Item 8: a refused HTTP/1.1 call must not poison its kept-alive socket for the next call.
  for (const protocol of ["connect-proto", "connect-json", "grpc-web"] as const) {
    it(`${protocol} over HTTP/1.1: a refused call, then a good one on the same agent, 20 times`, async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const base = { baseUrl: plain.url, httpVersion: "1.1" as const, nodeOptions: { agent } };
        const client = createClient(
          GuardedService,
          protocol === "grpc-web"
            ? createGrpcWebTransport({ ...base, useBinaryFormat: true })
            : createConnectTransport({ ...base, useBinaryFormat: protocol === "connect-proto" }),
        );
        const { token } = await issuer.issueAccess(userId);
        const failures: string[] = [];
        for (let i = 0; i < 20; i++) {
          const text = i % 2 === 0 ? "" : "some text";
          try {
            await client.authenticatedUnary({ text }, { signal: AbortSignal.timeout(CALL_MS) });
            failures.push(`${i}: refused call answered OK`);
          } catch (error) {
            const e = ConnectError.from(error);
            if (e.code !== Code.Unauthenticated) failures.push(`${i}: refused call: ${e.message}`);
          }
          try {
            const reply = await client.authenticatedUnary(
              { text },
              { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(CALL_MS) },
            );
            assert.equal(reply.username, "matrix");
          } catch (error) {
            failures.push(`${i}: good call after a refusal: ${ConnectError.from(error).message}`);
          }
        }
        assert.deepEqual(failures, []);
      } finally {
        agent.destroy();
      }
    });
  }

  const protocols: Protocol[] = ["connect-proto", "connect-json", "grpc", "grpc-web"];
  const wires: Wire[] = ["h1", "h2c", "tls"];
  for (const protocol of protocols) {
    for (const wire of wires) {
      if (protocol === "grpc" && wire === "h1") continue; // gRPC needs HTTP/2
      it(`${protocol} over ${wire}: empty and non-empty bodies, first-seen and cached tokens`, async () => {
        const client = createClient(GuardedService, transport(protocol, wire));
        const unanswered: string[] = [];
        for (const text of ["", "x"]) {
          // A token seen for the first time, of a user not looked up yet (its signature,
          // revocation and user lookups are asynchronous), then the same token again (answered
          // from the caches).
          const fresh = await createUser(database.db, { username: `matrix-${++users}` });
          const { token } = await issuer.issueAccess(fresh.id);
          // And an identity provider's token, first seen (an RS256 signature checked through
          // WebCrypto, and a user provisioned: the verdict waits for I/O on any database).
          const idpName = `idp-${++users}`;
          const now = Math.floor(Date.now() / 1000);
          const idpToken = await signToken(idp, {
            iss: IDP,
            aud: "api",
            sub: idpName,
            preferred_username: idpName,
            iat: now,
            exp: now + 300,
          });
          try {
            const reply = await client.authenticatedUnary(
              { text },
              { headers: { authorization: `Bearer ${idpToken}` }, signal: AbortSignal.timeout(CALL_MS) },
            );
            assert.equal(reply.username, idpName);
          } catch (error) {
            unanswered.push(
              `${text === "" ? "empty" : "non-empty"} body, first-seen IdP token: ${ConnectError.from(error).message}`,
            );
          }
          for (const seen of ["first-seen", "cached"]) {
            const label = `${text === "" ? "empty" : "non-empty"} body, ${seen} token`;
            try {
              const reply = await client.authenticatedUnary(
                { text },
                { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(CALL_MS) },
              );
              assert.equal(reply.username, fresh.username, label);
              assert.equal(reply.text, text, label);
            } catch (error) {
              unanswered.push(`${label}: ${ConnectError.from(error).message}`);
            }
          }
          // And a refusal, first seen, with the same body: answered too.
          try {
            await client.authenticatedUnary(
              { text },
              { headers: { authorization: `Bearer ${token}x` }, signal: AbortSignal.timeout(CALL_MS) },
            );
            unanswered.push(`${text === "" ? "empty" : "non-empty"} body, bad token: answered OK`);
          } catch (error) {
            const e = ConnectError.from(error);
            if (!/unauthenticated|invalid|malformed/i.test(`${e.code} ${e.message}`) && e.code !== 16) {
              unanswered.push(`${text === "" ? "empty" : "non-empty"} body, bad token: ${e.message}`);
            }
          }
        }
        assert.deepEqual(unanswered, []);
      });
    }
  }
});
