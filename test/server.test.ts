// The transport layer against real clients: Node's http/http2, buf curl (Go),
// grpc-js, and raw sockets for the protocol sniffing. No auth rules here.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { EventEmitter, once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as https from "node:https";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { file_guardtest_v1_guarded, GuardedService, PingSchema, PongSchema } from "../gen/guardtest/v1/guarded_pb.js";
import type { Ping } from "../gen/guardtest/v1/guarded_pb.js";
import {
  file_grpc_health_v1_health,
  Health,
  HealthCheckResponse_ServingStatus,
} from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ServerReflectionAlpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { withCors } from "../src/server/cors.js";
import { createHealth } from "../src/server/services/health.js";
import type { HealthService } from "../src/server/services/health.js";
import { listen } from "../src/server/transport/listen.js";
import { onShutdownSignals } from "../src/server/shutdown.js";
import type { NodeHandler as RequestHandler } from "../src/server/http.js";
import type { Listening } from "../src/server/transport/listen.js";
import { fileRegistryOf, reflectionFiles, registerReflection } from "../src/server/services/reflection.js";
import { describeOr, skipWithoutOpenssl } from "./helpers/env.js";
import { selfSignedCertificate } from "./helpers/tls.js";

const run = promisify(execFile);
const bufBin = join(import.meta.dirname, "..", "node_modules", ".bin", "buf");
const allowedOrigin = "https://app.example";

/** Emits "start" each time a slow call reaches its handler. */
const slowCalls = new EventEmitter();
let slowCallsStarted = 0;

/** `text` "slow:N" makes PublicUnary take N ms: enough to close a server under it. */
async function pong(request: Ping) {
  const slow = /^slow:(\d+)$/.exec(request.text);
  if (slow) {
    slowCallsStarted++;
    slowCalls.emit("start");
    await sleep(Number(slow[1]));
  }
  return create(PongSchema, { text: `pong ${request.text}` });
}

/**
 * Resolves once `count` more slow calls are in their handler: "in flight"
 * as an event rather than a guessed delay, which a loaded machine (a TLS
 * handshake taking longer than the guess) turns into a connection reset.
 * Call it before sending the calls.
 */
function slowCallsInFlight(count: number): Promise<void> {
  const target = slowCallsStarted + count;
  return new Promise((resolve) => {
    const check = () => {
      if (slowCallsStarted < target) return;
      slowCalls.off("start", check);
      resolve();
    };
    slowCalls.on("start", check);
  });
}

function routes(health: HealthService) {
  return (router: ConnectRouter) => {
    router.service(GuardedService, {
      publicUnary: pong,
      defaultUnary: pong,
      async *publicServerStream(request) {
        for (let i = 0; i < 3; i++) yield create(PongSchema, { text: `${request.text} ${i}` });
      },
    });
    health.register(router);
    registerReflection(router, {
      registry: fileRegistryOf(file_guardtest_v1_guarded, file_grpc_health_v1_health, ...reflectionFiles),
      services: [GuardedService.typeName, Health.typeName, ServerReflection.typeName],
    });
  };
}

function appHandler(health: HealthService): RequestHandler {
  return withCors(connectNodeAdapter({ routes: routes(health) }), { origins: [allowedOrigin] });
}

/** Connect JSON unary over HTTP/1.1 with Node's http module (or https with `ca`). */
function connectJson(
  url: string,
  text: string,
  ca?: string,
): Promise<{ status: number; body: unknown; httpVersion: string }> {
  return new Promise((resolve, reject) => {
    const target = new URL("/guardtest.v1.GuardedService/PublicUnary", url);
    const request = (target.protocol === "https:" ? https : http).request(
      target,
      { method: "POST", headers: { "content-type": "application/json" }, agent: false, ...(ca ? { ca } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            body: JSON.parse(Buffer.concat(chunks).toString("utf8")),
            httpVersion: res.httpVersion,
          }),
        );
      },
    );
    request.on("error", reject);
    request.end(JSON.stringify({ text }));
  });
}

/** A gRPC unary call spelled out on a raw HTTP/2 stream: no Connect client involved. */
async function rawGrpc(url: string, text: string, options: http2.SecureClientSessionOptions = {}) {
  const session = http2.connect(url, options);
  session.on("error", () => {});
  try {
    const message = toBinary(PingSchema, create(PingSchema, { text }));
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    frame.set(message, 5);
    const stream = session.request({
      ":method": "POST",
      ":path": "/guardtest.v1.GuardedService/PublicUnary",
      "content-type": "application/grpc+proto",
      te: "trailers",
    });
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      let received: http2.IncomingHttpHeaders | undefined;
      stream.on("trailers", (t) => (received = t));
      stream.on("error", reject);
      // A stream cut by the server ends with "close" and no error event.
      stream.on("close", () =>
        received ? resolve(received) : reject(new Error(`stream closed, rst ${stream.rstCode}`)),
      );
      stream.resume();
      stream.end(frame);
    });
    const body = Buffer.concat(chunks);
    return {
      grpcStatus: trailers["grpc-status"],
      pong: fromBinary(PongSchema, body.subarray(5, 5 + body.readUInt32BE(1))),
      alpn: session.alpnProtocol,
    };
  } finally {
    session.close();
  }
}

async function buf(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(bufBin, args, { timeout: 30_000 });
}

describe("one plaintext port", () => {
  let health: HealthService;
  let server: Listening;
  let url: string;

  before(async () => {
    health = createHealth();
    server = await listen({ handler: appHandler(health), port: 0 });
    url = server.url;
  });
  after(() => server.close(1000));

  it("binds 127.0.0.1 and reports the port it got for port 0", () => {
    assert.equal(server.host, "127.0.0.1");
    assert.ok(server.port > 0);
    assert.equal(url, `http://127.0.0.1:${server.port}`);
  });

  it("serves Connect JSON unary over HTTP/1.1", async () => {
    const res = await connectJson(url, "h1");
    assert.equal(res.httpVersion, "1.1");
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { text: "pong h1" });
  });

  it("serves Connect unary through fetch (undici, HTTP/1.1)", async () => {
    const res = await fetch(`${url}/guardtest.v1.GuardedService/PublicUnary`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text: "fetch" }),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { text: "pong fetch" });
  });

  it("serves gRPC over h2c prior knowledge to a raw http2 client", async () => {
    const res = await rawGrpc(url, "h2");
    assert.equal(res.grpcStatus, "0");
    assert.equal(res.pong.text, "pong h2");
  });

  it("serves server streaming to a Connect gRPC client", async () => {
    const sessionManager = new Http2SessionManager(url);
    try {
      const client = createClient(GuardedService, createGrpcTransport({ baseUrl: url, sessionManager }));
      const texts: string[] = [];
      for await (const p of client.publicServerStream({ text: "s" })) texts.push(p.text);
      assert.deepEqual(texts, ["s 0", "s 1", "s 2"]);
    } finally {
      sessionManager.abort();
    }
  });

  it("tells h2 from h1 when the first bytes arrive in separate packets", async () => {
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
    const emptySettings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    const h2 = net.connect(server.port, "127.0.0.1");
    h2.setNoDelay(true);
    await once(h2, "connect");
    h2.write(preface.subarray(0, 3));
    await sleep(30);
    h2.write(preface.subarray(3, 20));
    await sleep(30);
    h2.write(Buffer.concat([preface.subarray(20), emptySettings]));
    const [frame] = (await once(h2, "data")) as [Buffer];
    assert.equal(frame[3], 4, "the server's first frame is SETTINGS");
    h2.destroy();

    // "P" is also the preface's first byte: the decision must wait for the second.
    const h1 = net.connect(server.port, "127.0.0.1");
    h1.setNoDelay(true);
    await once(h1, "connect");
    h1.write("P");
    await sleep(30);
    const body = JSON.stringify({ text: "split" });
    h1.write(
      `OST /guardtest.v1.GuardedService/PublicUnary HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n` +
        `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
    );
    const chunks: Buffer[] = [];
    h1.on("data", (c: Buffer) => chunks.push(c));
    await once(h1, "end");
    const response = Buffer.concat(chunks).toString("latin1");
    assert.match(response, /^HTTP\/1\.1 200/);
    assert.match(response, /"pong split"/);
  });

  it("lists services through reflection for buf curl", async () => {
    const { stdout } = await buf(["curl", "--list-services", "--protocol", "grpc", "--http2-prior-knowledge", url]);
    const listed = stdout.trim().split("\n");
    assert.ok(listed.includes("guardtest.v1.GuardedService"), stdout);
    assert.ok(listed.includes("grpc.health.v1.Health"), stdout);
  });

  for (const [protocol, h2c] of [
    ["grpc", true],
    ["grpcweb", true],
    ["connect", true],
    ["grpcweb", false],
    ["connect", false],
  ] as const) {
    it(`buf curl calls PublicUnary without --schema over ${protocol} (${h2c ? "h2c prior knowledge" : "HTTP/1.1"})`, async () => {
      const args = ["curl", "--protocol", protocol, "-d", JSON.stringify({ text: protocol })];
      if (h2c) args.push("--http2-prior-knowledge");
      const { stdout } = await buf([...args, `${url}/guardtest.v1.GuardedService/PublicUnary`]);
      assert.deepEqual(JSON.parse(stdout), { text: `pong ${protocol}` });
    });
  }

  it("answers grpc-js health Check with SERVING for the server and NOT_FOUND for unknown services", async () => {
    const definition = protoLoader.loadSync("grpc/health/v1/health.proto", {
      enums: String,
      includeDirs: [join(import.meta.dirname, "..", "proto")],
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    const client = new loaded.grpc.health.v1.Health(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    type Check = (
      req: { service: string },
      cb: (err: grpc.ServiceError | null, res?: { status: string }) => void,
    ) => void;
    const check = (service: string) =>
      new Promise<{ status: string }>((resolve, reject) =>
        (client["Check"] as Check).call(client, { service }, (err, res) => (err ? reject(err) : resolve(res!))),
      );
    try {
      assert.deepEqual(await check(""), { status: "SERVING" });
      await assert.rejects(check("nope.v1.Nothing"), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
      health.setStatus("guardtest.v1.GuardedService", "NOT_SERVING");
      assert.deepEqual(await check("guardtest.v1.GuardedService"), { status: "NOT_SERVING" });
      type List = (req: object, cb: (err: grpc.ServiceError | null, res?: { statuses: object }) => void) => void;
      const list = await new Promise<{ statuses: object }>((resolve, reject) =>
        (client["List"] as List).call(client, {}, (err, res) => (err ? reject(err) : resolve(res!))),
      );
      assert.deepEqual(list.statuses, {
        "": { status: "SERVING" },
        "guardtest.v1.GuardedService": { status: "NOT_SERVING" },
      });
    } finally {
      client.close();
    }
  });

  it("streams health changes to Watch until the client cancels", async () => {
    const sessionManager = new Http2SessionManager(url);
    const client = createClient(Health, createGrpcTransport({ baseUrl: url, sessionManager }));
    const abort = new AbortController();
    const seen: HealthCheckResponse_ServingStatus[] = [];
    try {
      const stream = client.watch({ service: "watched.v1.Service" }, { signal: abort.signal });
      for await (const response of stream) {
        seen.push(response.status);
        if (seen.length === 1) health.setStatus("watched.v1.Service", "SERVING");
        if (seen.length === 2) {
          health.setStatus("watched.v1.Service", "SERVING"); // unchanged: no message
          health.setStatus("watched.v1.Service", "NOT_SERVING");
        }
        if (seen.length === 3) abort.abort();
      }
    } catch (err) {
      if (!abort.signal.aborted) throw err;
    } finally {
      sessionManager.abort();
    }
    assert.deepEqual(seen, [
      HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN,
      HealthCheckResponse_ServingStatus.SERVING,
      HealthCheckResponse_ServingStatus.NOT_SERVING,
    ]);
  });

  it("ends Watch streams after health shutdown so that close need not wait", async () => {
    const ownHealth = createHealth({ services: { "a.v1.A": "SERVING" } });
    const own = await listen({ handler: appHandler(ownHealth), port: 0 });
    const sessionManager = new Http2SessionManager(own.url);
    try {
      const client = createClient(Health, createGrpcTransport({ baseUrl: own.url, sessionManager }));
      const seen: HealthCheckResponse_ServingStatus[] = [];
      for await (const response of client.watch({ service: "a.v1.A" })) {
        seen.push(response.status);
        if (seen.length === 1) ownHealth.shutdown();
      }
      assert.deepEqual(seen, [
        HealthCheckResponse_ServingStatus.SERVING,
        HealthCheckResponse_ServingStatus.NOT_SERVING,
      ]);
      ownHealth.setStatus("a.v1.A", "SERVING");
      assert.equal(ownHealth.getStatus("a.v1.A"), "NOT_SERVING", "updates after shutdown are ignored");
      assert.equal(ownHealth.getStatus(""), "NOT_SERVING");
    } finally {
      sessionManager.abort();
      await own.close(1000);
    }
  });

  it("answers reflection v1alpha, symbols, extensions and NOT_FOUND on one stream", async () => {
    const sessionManager = new Http2SessionManager(url);
    const client = createClient(ServerReflectionAlpha, createGrpcTransport({ baseUrl: url, sessionManager }));
    async function* requests() {
      yield { messageRequest: { case: "listServices" as const, value: "" } };
      yield {
        messageRequest: { case: "fileContainingSymbol" as const, value: "guardtest.v1.GuardedService.PublicUnary" },
      };
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: "guardtest.v1.Pong.username" } };
      yield { messageRequest: { case: "fileByFilename" as const, value: "missing.proto" } };
      yield { messageRequest: { case: "allExtensionNumbersOfType" as const, value: "google.protobuf.MethodOptions" } };
      yield {
        messageRequest: {
          case: "fileContainingExtension" as const,
          value: { containingType: "google.protobuf.MethodOptions", extensionNumber: 1 },
        },
      };
    }
    try {
      const responses = [];
      for await (const response of client.serverReflectionInfo(requests())) responses.push(response);
      assert.equal(responses.length, 6);
      const [list, method, field, missing, numbers, unknownExtension] = responses.map((r) => r.messageResponse);

      assert.equal(list?.case, "listServicesResponse");
      assert.deepEqual(
        list.value.service.map((s) => s.name),
        ["guardtest.v1.GuardedService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"],
      );

      assert.equal(method?.case, "fileDescriptorResponse");
      const names = method.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name);
      assert.equal(names[0], "guardtest/v1/guarded.proto", "the requested file comes first");
      assert.ok(names.includes("protoguard/v1/options.proto"));
      assert.ok(names.includes("google/protobuf/descriptor.proto"), "transitive imports are included");
      assert.equal(new Set(names).size, names.length, "each file once");

      assert.equal(field?.case, "fileDescriptorResponse");

      assert.equal(missing?.case, "errorResponse");
      assert.equal(missing.value.errorCode, 5);

      assert.equal(numbers?.case, "allExtensionNumbersResponse");
      assert.equal(numbers.value.baseTypeName, "google.protobuf.MethodOptions");
      assert.ok(numbers.value.extensionNumber.length > 0, "protoguard's method_rule extends MethodOptions");

      assert.equal(unknownExtension?.case, "errorResponse");
      assert.equal(unknownExtension.value.errorCode, 5);
    } finally {
      sessionManager.abort();
    }
  });

  it("rejects a second server on the same port with a readable error", async () => {
    await assert.rejects(listen({ handler: appHandler(health), port: server.port }), {
      message: new RegExp(`port ${server.port} is already in use`),
    });
  });

  it("answers CORS preflights for allowed origins only", async () => {
    const preflight = (origin: string) =>
      fetch(`${url}/guardtest.v1.GuardedService/PublicUnary`, {
        method: "OPTIONS",
        headers: {
          origin,
          "access-control-request-method": "POST",
          "access-control-request-headers": "content-type,authorization,connect-protocol-version",
        },
      });
    const allowed = await preflight(allowedOrigin);
    assert.equal(allowed.status, 204);
    assert.equal(allowed.headers.get("access-control-allow-origin"), allowedOrigin);
    assert.match(allowed.headers.get("access-control-allow-methods") ?? "", /POST/);
    const allowHeaders = (allowed.headers.get("access-control-allow-headers") ?? "").toLowerCase();
    for (const header of ["authorization", "content-type", "connect-protocol-version", "x-grpc-web", "grpc-timeout"]) {
      assert.ok(allowHeaders.includes(header), `${header} in ${allowHeaders}`);
    }
    assert.match(allowed.headers.get("vary") ?? "", /Origin/);

    const denied = await preflight("https://evil.example");
    assert.equal(denied.headers.get("access-control-allow-origin"), null);
    assert.equal(denied.headers.get("access-control-allow-methods"), null);

    const actual = await fetch(`${url}/guardtest.v1.GuardedService/PublicUnary`, {
      method: "POST",
      headers: { origin: allowedOrigin, "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(actual.status, 200);
    assert.equal(actual.headers.get("access-control-allow-origin"), allowedOrigin);
    const exposed = (actual.headers.get("access-control-expose-headers") ?? "").toLowerCase();
    for (const header of ["grpc-status", "grpc-message", "grpc-status-details-bin"]) {
      assert.ok(exposed.includes(header), `${header} in ${exposed}`);
    }
  });
});

describe("connection hygiene", () => {
  it("closes connections that never send a byte", async () => {
    const server = await listen({ handler: appHandler(createHealth()), port: 0, prefaceTimeoutMs: 100 });
    try {
      const socket = net.connect(server.port, "127.0.0.1");
      socket.on("error", () => {});
      const started = Date.now();
      await once(socket, "close");
      assert.ok(Date.now() - started < 2000);
    } finally {
      await server.close(100);
    }
  });

  it("survives a peer that resets mid-preface", async () => {
    const server = await listen({ handler: appHandler(createHealth()), port: 0 });
    try {
      const socket = net.connect(server.port, "127.0.0.1");
      await once(socket, "connect");
      socket.write("PRI * HTTP");
      await sleep(20);
      socket.resetAndDestroy();
      await sleep(20);
      assert.deepEqual((await connectJson(server.url, "still up")).body, { text: "pong still up" });
    } finally {
      await server.close(100);
    }
  });
});

describe("graceful close", () => {
  it("lets an in-flight HTTP/1.1 call and an in-flight HTTP/2 call finish, then refuses new ones", async () => {
    const server = await listen({ handler: appHandler(createHealth()), port: 0 });
    const inFlight = slowCallsInFlight(2);
    const h1 = connectJson(server.url, "slow:400");
    const h2 = rawGrpc(server.url, "slow:400");
    // An idle keep-alive connection must not hold the close up.
    const idle = new http.Agent({ keepAlive: true });
    await new Promise<void>((resolve, reject) =>
      http.get(server.url, { agent: idle }, (res) => res.resume().on("end", resolve)).on("error", reject),
    );
    await inFlight;
    const started = Date.now();
    await server.close(5000);
    const took = Date.now() - started;
    assert.deepEqual((await h1).body, { text: "pong slow:400" });
    const grpcResult = await h2;
    assert.equal(grpcResult.grpcStatus, "0");
    assert.equal(grpcResult.pong.text, "pong slow:400");
    assert.ok(took < 2000, `close took ${took} ms: it waited for idle connections`);
    await assert.rejects(connectJson(server.url, "late"), { code: "ECONNREFUSED" });
    idle.destroy();
  });

  it("cuts calls that outlive the grace period", async () => {
    const server = await listen({ handler: appHandler(createHealth()), port: 0 });
    const inFlight = slowCallsInFlight(1);
    const slow = rawGrpc(server.url, "slow:5000");
    slow.catch(() => {});
    await inFlight;
    const started = Date.now();
    await server.close(200);
    const took = Date.now() - started;
    assert.ok(took >= 150 && took < 2000, `close took ${took} ms`);
    await assert.rejects(slow);
  });
});

describe("shutdown signals", () => {
  it("runs the shutdown function once for SIGTERM and SIGINT together, and unsubscribes", async () => {
    const before = { term: process.listenerCount("SIGTERM"), int: process.listenerCount("SIGINT") };
    const calls: NodeJS.Signals[] = [];
    const dispose = onShutdownSignals((signal) => void calls.push(signal), { forceOnRepeat: false });
    assert.equal(process.listenerCount("SIGTERM"), before.term + 1);
    process.emit("SIGTERM", "SIGTERM");
    process.emit("SIGINT", "SIGINT");
    await sleep(10);
    assert.deepEqual(calls, ["SIGTERM"]);
    dispose();
    assert.equal(process.listenerCount("SIGTERM"), before.term);
    assert.equal(process.listenerCount("SIGINT"), before.int);
  });
});

// Node cannot issue X.509 certificates; without openssl the TLS suite has no certificate to serve.
describeOr(skipWithoutOpenssl, "TLS", {}, () => {
  let dir: string;
  let cert: string;
  let key: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoguard-tls-"));
    ({ cert, key } = await selfSignedCertificate(dir));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("serves h2 and http/1.1 on one port via ALPN", async () => {
    const server = await listen({ handler: appHandler(createHealth()), port: 0, tls: { cert, key } });
    try {
      assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      const h1 = await connectJson(server.url, "tls h1", cert);
      assert.equal(h1.httpVersion, "1.1");
      assert.deepEqual(h1.body, { text: "pong tls h1" });

      const h2 = await rawGrpc(server.url, "tls h2", { ca: cert });
      assert.equal(h2.alpn, "h2");
      assert.equal(h2.grpcStatus, "0");
      assert.equal(h2.pong.text, "pong tls h2");

      const { stdout } = await buf([
        "curl",
        "--cacert",
        join(dir, "cert.pem"),
        "--protocol",
        "grpc",
        "-d",
        '{"text":"buf tls"}',
        `${server.url}/guardtest.v1.GuardedService/PublicUnary`,
      ]);
      assert.deepEqual(JSON.parse(stdout), { text: "pong buf tls" });
    } finally {
      await server.close(1000);
    }
  });

  it("lets in-flight h1 and h2 calls over TLS finish on close", async () => {
    const server = await listen({ handler: appHandler(createHealth()), port: 0, tls: { cert, key } });
    const inFlight = slowCallsInFlight(2);
    const h1 = connectJson(server.url, "slow:400", cert);
    const h2 = rawGrpc(server.url, "slow:400", { ca: cert });
    await inFlight;
    const started = Date.now();
    await server.close(5000);
    assert.ok(Date.now() - started < 2000);
    assert.deepEqual((await h1).body, { text: "pong slow:400" });
    assert.equal((await h2).pong.text, "pong slow:400");
  });

  it("closes TLS connections promptly when idle", async () => {
    const server = await listen({ handler: appHandler(createHealth()), port: 0, tls: { cert, key } });
    const agent = new https.Agent({ keepAlive: true, ca: cert });
    await new Promise<void>((resolve, reject) =>
      https.get(server.url, { agent }, (res) => res.resume().on("end", resolve)).on("error", reject),
    );
    const pending = tlsHandshakeThatNeverFinishes(server.port);
    await sleep(50);
    const started = Date.now();
    await server.close(5000);
    assert.ok(Date.now() - started < 2000, "idle h1 and unfinished handshakes do not hold the close up");
    agent.destroy();
    (await pending).destroy();
  });

  it("names the bad part of a certificate or key", async () => {
    const handler = appHandler(createHealth());
    await assert.rejects(listen({ handler, port: 0, tls: { cert: "/etc/ssl/cert.pem", key } }), {
      message: /certificate is not PEM.*file path/,
    });
    await assert.rejects(listen({ handler, port: 0, tls: { cert, key: cert } }), { message: /private key/ });
    const other = await run("openssl", ["genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]);
    await assert.rejects(listen({ handler, port: 0, tls: { cert, key: other.stdout } }), {
      message: /private key does not match the certificate/,
    });
    await assert.rejects(
      listen({
        handler,
        port: 0,
        tls: { cert: "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n", key },
      }),
      { message: /TLS certificate is invalid/ },
    );
  });
});

/** A TCP connection to a TLS port that sends nothing: a handshake still pending at close. */
async function tlsHandshakeThatNeverFinishes(port: number): Promise<net.Socket> {
  const socket = net.connect(port, "127.0.0.1");
  socket.on("error", () => {});
  await once(socket, "connect");
  return socket;
}
