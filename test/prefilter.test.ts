/**
 * The HTTP pre-filter answers refusals itself; clients must not be able to
 * tell: same HTTP status, code, message and details as Connect sends for
 * the same call without it, in every protocol.
 */
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, createClient, type ConnectError, type Transport } from "@connectrpc/connect";
import {
  connectNodeAdapter,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { GuardedService, PingSchema } from "../gen/guardtest/v1/guarded_pb.js";
import { authErrorReason, createTokenIssuer, type DecisionEvent } from "../src/exports/protoguard.js";
import { createPrefilter, createStreamPrefilter, prefilterContextValues } from "../src/server/prefilter/prefilter.js";
import { listen, type Listening } from "../src/server/transport/listen.js";
import { createTestAuth, type TestAuth } from "../src/exports/testing.js";
import { guardedRoutes } from "./helpers/guarded-service.js";
import { collect as drain, failure } from "./helpers/connect.js";

type Make = (baseUrl: string) => Transport;
const transports: Record<string, Make> = {
  "grpc (h2)": (baseUrl) => createGrpcTransport({ baseUrl }),
  "grpc-web (h1)": (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
  "grpc-web (h2)": (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "2" }),
  "connect (h1)": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" }),
  "connect (h2)": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2" }),
};

function comparable(e: ConnectError) {
  return { code: e.code, message: e.rawMessage, reason: authErrorReason(e), details: e.details.length };
}

describe("HTTP pre-filter", { timeout: 120_000 }, () => {
  let t: TestAuth;
  // Both front-ends: raw HTTP/2 streams (h2c) plus the request handler (HTTP/1.1).
  let withFilter: Listening;
  // The request-handler front-end alone, as on TLS.
  let handlerOnly: Listening;
  let without: Listening;
  let passedOn = 0;
  const events: DecisionEvent[] = [];
  let user: { authorization: string };
  let staffUser: { authorization: string };
  let expired: { authorization: string };

  before(async () => {
    t = await createTestAuth({ routes: guardedRoutes, onDecision: (e) => events.push(e) });
    const connect = connectNodeAdapter({
      routes: guardedRoutes,
      interceptors: [t.auth.interceptor],
      requestGate: t.auth.requestGate,
      contextValues: prefilterContextValues,
    });
    const next: typeof connect = (req, res) => {
      passedOn++;
      connect(req, res);
    };
    const services = [GuardedService];
    withFilter = await listen({
      port: 0,
      handler: createPrefilter({ auth: t.auth, services, next }),
      streamPrefilter: createStreamPrefilter({ auth: t.auth, services }),
    });
    handlerOnly = await listen({ port: 0, handler: createPrefilter({ auth: t.auth, services, next }) });
    without = await listen({ port: 0, handler: connect });
    const plain = await t.createUser({ username: "plain" });
    user = await t.authHeaders(plain);
    staffUser = await t.authHeaders(await t.createUser({ username: "staffer", isStaff: true }));
    // Minted an hour ago with the server's own key: expired, not invalid.
    const oldIssuer = createTokenIssuer({ keyring: t.keyring, now: () => Date.now() - 3_600_000 });
    expired = { authorization: `Bearer ${(await oldIssuer.issueAccess(plain.id)).token}` };
  });
  after(async () => {
    await withFilter?.close(100);
    await handlerOnly?.close(100);
    await without?.close(100);
    await t?.close();
  });

  const cases: [string, () => Record<string, string>][] = [
    ["no token", () => ({})],
    ["malformed header", () => ({ authorization: "Basic Zm9vOmJhcg==" })],
    ["bad signature", () => ({ authorization: `${user.authorization.slice(0, -4)}AAAA` })],
    ["expired token", () => expired],
  ];

  for (const [front, filtered] of [
    ["stream+handler", () => withFilter],
    ["handler only", () => handlerOnly],
  ] as const)
    for (const [protocol, make] of Object.entries(transports)) {
      for (const [name, headers] of cases) {
        it(`${front}, ${protocol}: ${name} is refused exactly as Connect refuses it`, async () => {
          const a = createClient(GuardedService, make(filtered().url));
          const b = createClient(GuardedService, make(without.url));
          const before = passedOn;
          const mine = await failure(a.authenticatedUnary({ text: "x" }, { headers: headers() }));
          const theirs = await failure(b.authenticatedUnary({ text: "x" }, { headers: headers() }));
          assert.deepEqual(comparable(mine), comparable(theirs));
          assert.equal(mine.code, Code.Unauthenticated);
          assert.equal(passedOn, before, "the refusal was answered by the pre-filter");
        });
      }

      it(`${front}, ${protocol}: server-streaming refusal matches too`, async () => {
        const a = createClient(GuardedService, make(filtered().url));
        const b = createClient(GuardedService, make(without.url));
        const mine = await failure(drain(a.permissionServerStream({})));
        const theirs = await failure(drain(b.permissionServerStream({})));
        assert.deepEqual(comparable(mine), comparable(theirs));
      });

      it(`${front}, ${protocol}: accepted calls pass with the verdict, decided once`, async () => {
        const a = createClient(GuardedService, make(filtered().url));
        events.length = 0;
        const before = passedOn;
        assert.equal((await a.authenticatedUnary({}, { headers: user })).username, "plain");
        assert.equal(passedOn, before + 1);
        assert.deepEqual(
          events.map((e) => e.stage),
          ["prefilter"],
        );
      });

      it(`${front}, ${protocol}: PERMISSION_DENIED (needs the database) matches too`, async () => {
        const a = createClient(GuardedService, make(filtered().url));
        const b = createClient(GuardedService, make(without.url));
        const mine = await failure(a.staffUnary({}, { headers: user }));
        const theirs = await failure(b.staffUnary({}, { headers: user }));
        assert.deepEqual(comparable(mine), comparable(theirs));
        assert.equal(mine.code, Code.PermissionDenied);
        assert.equal((await a.staffUnary({}, { headers: staffUser })).username, "staffer");
      });
    }

  it("Connect unary refusals carry the same HTTP status and body as Connect's", async () => {
    for (const headers of [{}, { authorization: "Bearer a.b.c" }, user]) {
      const call = async (base: string) => {
        const res = await fetch(`${base}/guardtest.v1.GuardedService/StaffUnary`, {
          method: "POST",
          headers: { "content-type": "application/json", ...headers },
          body: "{}",
        });
        return { status: res.status, type: res.headers.get("content-type"), body: await res.json() };
      };
      assert.deepEqual(await call(withFilter.url), await call(without.url));
    }
  });

  it("requests it does not recognise pass through untouched", async () => {
    const before = passedOn;
    const unknown = await fetch(`${withFilter.url}/guardtest.v1.GuardedService/NoSuchMethod`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(unknown.status, 404);
    const get = await fetch(`${withFilter.url}/anything`);
    assert.equal(get.status, 404);
    assert.equal(passedOn, before + 2);
  });

  it("1 MiB bodies without a token are refused unread, and the HTTP/2 connection keeps flowing", async () => {
    // Node's client counts each queued 1 MiB write against its own 10 MB
    // session budget; raise it so only the server is under test.
    const session = http2.connect(withFilter.url, { maxSessionMemory: 1000 });
    try {
      const body = new Uint8Array(5 + (1 << 20));
      const payload = toBinary(PingSchema, create(PingSchema, { text: "x".repeat(1 << 20) }));
      body.set(payload.subarray(0, body.length - 5), 5);
      new DataView(body.buffer).setUint32(1, body.length - 5);
      const before = passedOn;
      // Far more than the 64 KiB connection window: a stall would hang here.
      for (let i = 0; i < 20; i++) {
        const req = session.request({
          ":method": "POST",
          ":path": "/guardtest.v1.GuardedService/AuthenticatedUnary",
          "content-type": "application/grpc",
          te: "trailers",
        });
        req.end(body);
        const [headers] = (await new Promise((resolve, reject) => {
          req.on("response", (h) => resolve([h]));
          req.on("error", reject);
        })) as [http2.IncomingHttpHeaders];
        assert.equal(headers["grpc-status"], "16");
        req.destroy();
      }
      assert.equal(passedOn, before);
      const client = createClient(GuardedService, createGrpcTransport({ baseUrl: withFilter.url }));
      assert.equal((await client.authenticatedUnary({}, { headers: user })).username, "plain");
    } finally {
      session.close();
    }
  });
});
