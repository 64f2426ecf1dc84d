// Issue 10, the listener side: slow and idle clients are timed out on every
// front-end, HTTP/2 streams and health Watch calls are bounded, connections
// are capped, a repeated `authorization` header is refused, and a refused
// large HTTP/1.1 upload still receives its 401. Real servers (startServer) on
// 127.0.0.1, real clients: Node's net/tls/http/http2, connect-node, curl.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import * as tls from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { GuardedService } from "../gen/guardtest/v1/guarded_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { authErrorReason } from "../src/exports/protoguard.js";
import { loadConfig } from "../src/runtime/config.js";
import { createPrefilter, prefilterContextValues } from "../src/server/prefilter/prefilter.js";
import { startServer, type RunningServer, type StartServerOptions } from "../src/server/serve.js";
import { createTestAuth, type TestAuth } from "../src/exports/testing.js";
import { guardedRoutes } from "./helpers/guarded-service.js";
import { selfSignedCertificate } from "./helpers/tls.js";

const run = promisify(execFile);
const haveOpenssl = spawnSync("openssl", ["version"]).status === 0;
const haveCurlHttp2 = /\bHTTP2\b/.test(spawnSync("curl", ["--version"], { encoding: "utf8" }).stdout ?? "");
const AUTHENTICATED = "/guardtest.v1.GuardedService/AuthenticatedUnary";
const MALFORMED_MESSAGE = "malformed authorization header";

let t: TestAuth;
let staffToken: string;
let aliceToken: string;
let cert: string;
let key: string;
let certDir: string | undefined;
const servers: RunningServer[] = [];

/** startServer over the shared test database, closed after the file. */
async function serve(options: Partial<StartServerOptions> = {}): Promise<RunningServer> {
  const server = await startServer({
    runtime: { database: t.database, keyring: t.keyring, verifier: t.verifier },
    routes: guardedRoutes,
    port: 0,
    logger: pino({ level: "silent" }),
    graceMs: 200,
    ...options,
  });
  servers.push(server);
  return server;
}

before(async () => {
  t = await createTestAuth({ routes: guardedRoutes });

  staffToken = await t.accessToken(await t.createUser({ username: "staff", isStaff: true }));
  aliceToken = await t.accessToken(await t.createUser({ username: "alice" }));
  if (haveOpenssl) {
    certDir = await mkdtemp(join(tmpdir(), "protoguard-hardening-"));
    ({ cert, key } = await selfSignedCertificate(certDir));
  }
});

after(async () => {
  for (const server of servers) await server.close();
  await t?.close();
  if (certDir !== undefined) await rm(certDir, { recursive: true, force: true });
});

/** Resolves with what the peer sent and how long the socket stayed open after `start`. */
function whenClosed(socket: net.Socket, start: number): Promise<{ ms: number; received: string }> {
  let received = "";
  socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")));
  socket.on("error", () => {});
  return new Promise((resolve) => socket.once("close", () => resolve({ ms: Date.now() - start, received })));
}

function connectPlain(port: number, localAddress = "127.0.0.1"): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress }, () => resolve(socket));
    socket.once("error", reject);
  });
}

/** A Connect JSON unary call over HTTP/1.1 from `localAddress`; resolves with the status. */
function h1Call(url: string, localAddress: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      new URL("/guardtest.v1.GuardedService/PublicUnary", url),
      { method: "POST", headers: { "content-type": "application/json", ...headers }, agent: false, localAddress },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    request.on("error", reject);
    request.end(JSON.stringify({ text: "hello" }));
  });
}

describe("slow and idle clients are timed out", { timeout: 60_000 }, () => {
  const limits = { headersTimeoutMs: 500, requestTimeoutMs: 1000, idleTimeoutMs: 500 };

  it("answers 408 to a slow plaintext HTTP/1.1 request head and closes a silent h2c connection", async () => {
    const server = await serve(limits);
    const start = Date.now();
    const slow = await connectPlain(server.port);
    const slowClosed = whenClosed(slow, start);
    slow.write("POST /guardtest.v1.GuardedService/PublicUnary HTTP/1.1\r\nHost: x\r\n");
    // Sends the preface and SETTINGS, then nothing: no stream is ever opened.
    const session = http2.connect(server.url);
    session.on("error", () => {});
    const sessionClosed = once(session, "close").then(() => Date.now() - start);

    const h1 = await slowClosed;
    assert.match(h1.received, /^HTTP\/1\.1 408 /);
    assert.ok(h1.ms < 2000, `slow HTTP/1.1 socket held for ${h1.ms} ms`);
    const h2ms = await sessionClosed;
    assert.ok(h2ms < 2000, `idle h2c session held for ${h2ms} ms`);
  });

  it("closes a plaintext connection that trickles the HTTP/2 preface", async () => {
    const server = await serve(limits);
    const start = Date.now();
    const socket = await connectPlain(server.port);
    const closed = whenClosed(socket, start);
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
    // One byte every 100 ms: never idle for long, never done.
    for (let i = 0; i < preface.length && !socket.destroyed; i++) {
      socket.write(preface.subarray(i, i + 1));
      await sleep(100);
    }
    const { ms } = await closed;
    assert.ok(ms < 1500, `trickling socket held for ${ms} ms`);
  });

  it("times out slow HTTP/1.1 and idle HTTP/2 over TLS too", {
    skip: haveOpenssl ? false : "openssl not installed",
  }, async () => {
    const server = await serve({ ...limits, tls: { cert, key } });
    const start = Date.now();
    const slow = tls.connect({ port: server.port, host: "127.0.0.1", ca: cert, ALPNProtocols: ["http/1.1"] });
    await once(slow, "secureConnect");
    const slowClosed = whenClosed(slow, start);
    slow.write("POST /guardtest.v1.GuardedService/PublicUnary HTTP/1.1\r\nHost: x\r\n");
    const session = http2.connect(server.url, { ca: cert });
    session.on("error", () => {});
    const sessionClosed = once(session, "close").then(() => Date.now() - start);

    const h1 = await slowClosed;
    assert.match(h1.received, /^HTTP\/1\.1 408 /);
    assert.ok(h1.ms < 2000, `slow TLS HTTP/1.1 socket held for ${h1.ms} ms`);
    const h2ms = await sessionClosed;
    assert.ok(h2ms < 2000, `idle TLS h2 session held for ${h2ms} ms`);
  });

  it("keeps an HTTP/2 connection with an open (quiet) call past the idle timeout", async () => {
    const server = await serve(limits);
    const transport = createGrpcTransport({ baseUrl: server.url });
    const health = createClient(Health, transport);
    const abort = new AbortController();
    const watch = health.watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]();
    await watch.next();
    await sleep(1200);
    // Still the same stream: a status change reaches it.
    server.health.setStatus("", "NOT_SERVING");
    const next = await watch.next();
    assert.equal(next.done, false);
    abort.abort();
  });
});

describe("connection caps", { timeout: 60_000 }, () => {
  it("refuses one address beyond its share while another is served at once; slow sockets go after the header timeout", async () => {
    const headersTimeoutMs = 1000;
    const server = await serve({ headersTimeoutMs, maxConnectionsPerPeer: 20, maxConnections: 100 });
    const start = Date.now();
    const flood = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const socket = await connectPlain(server.port);
        const closed = whenClosed(socket, start);
        socket.write("POST /guardtest.v1.GuardedService/PublicUnary HTTP/1.1\r\n");
        return closed;
      }),
    );
    const beforeLegit = Date.now();
    assert.equal(await h1Call(server.url, "127.0.0.2"), 200);
    assert.ok(Date.now() - beforeLegit < 1000, "another address was served at once");
    const results = await Promise.all(flood);
    const refusedAtOnce = results.filter((r) => r.received === "").length;
    assert.equal(refusedAtOnce, 20, "the 20 sockets beyond the per-address share were closed unanswered");
    for (const r of results.filter((r) => r.received !== "")) {
      assert.match(r.received, /^HTTP\/1\.1 408 /);
      assert.ok(r.ms < headersTimeoutMs + 1500, `slow socket held for ${r.ms} ms`);
    }
    assert.equal(await h1Call(server.url, "127.0.0.1"), 200);
  });

  it("serves legitimate calls again within the header timeout after a flood fills every connection", async () => {
    const headersTimeoutMs = 1000;
    const server = await serve({ headersTimeoutMs, maxConnections: 30, maxConnectionsPerPeer: 0 });
    const floodStart = Date.now();
    const flood: Promise<unknown>[] = [];
    for (let i = 0; i < 40; i++) {
      const socket = await connectPlain(server.port).catch(() => undefined);
      if (socket === undefined) continue;
      flood.push(whenClosed(socket, floodStart));
      socket.write("GET / HTTP/1.1\r\nHost: x\r\n");
    }
    let served = false;
    let attempts = 0;
    while (Date.now() - floodStart < headersTimeoutMs + 3000) {
      attempts++;
      const status = await h1Call(server.url, "127.0.0.1").catch(() => 0);
      if (status === 200) {
        served = true;
        break;
      }
      await sleep(50);
    }
    const servedAfter = Date.now() - floodStart;
    assert.ok(served, "a legitimate call was served");
    assert.ok(attempts > 1, "the flood did fill the server first");
    assert.ok(servedAfter < headersTimeoutMs + 1500, `served ${servedAfter} ms after the flood began`);
    await Promise.all(flood);
  });
});

describe("HTTP/2 streams and health Watch are bounded", { timeout: 120_000 }, () => {
  async function remoteSettings(url: string, options: http2.SecureClientSessionOptions = {}) {
    const session = http2.connect(url, options);
    session.on("error", () => {});
    const [settings] = (await once(session, "remoteSettings")) as [http2.Settings];
    session.close();
    return settings;
  }

  it("advertises 100 concurrent streams by default on h2c and TLS", async () => {
    const plain = await serve();
    assert.equal((await remoteSettings(plain.url)).maxConcurrentStreams, 100);
    if (haveOpenssl) {
      const secure = await serve({ tls: { cert, key } });
      assert.equal((await remoteSettings(secure.url, { ca: cert })).maxConcurrentStreams, 100);
    }
    const configured = await serve({ maxConcurrentStreams: 7 });
    assert.equal((await remoteSettings(configured.url)).maxConcurrentStreams, 7);
  });

  /**
   * Start-up memory (PGlite's heap among it) settles over the first second
   * or two; the baseline is taken once two readings a quarter second apart agree.
   */
  async function settledRss(read: () => Promise<number>): Promise<number> {
    let rss = await read();
    for (let i = 0; i < 20; i++) {
      await sleep(250);
      const now = await read();
      const settled = Math.abs(now - rss) < 2 * 2 ** 20;
      rss = now;
      if (settled) break;
    }
    return rss;
  }

  /**
   * Starts a server in a child process (so that its RSS is the server's
   * alone) and returns its URL and a way to read its RSS after a full GC.
   */
  async function childServer(options: Partial<StartServerOptions>) {
    const root = join(import.meta.dirname, "..");
    const code = `
      import { pino } from "pino";
      import { startServer } from ${JSON.stringify(join(root, "src/server/serve.ts"))};
      import { createTestAuth } from ${JSON.stringify(join(root, "src/exports/testing.ts"))};
      import { guardedRoutes } from ${JSON.stringify(join(root, "test/helpers/guarded-service.ts"))};
      const t = await createTestAuth({ routes: guardedRoutes });
      const server = await startServer({
        runtime: { database: t.database, keyring: t.keyring, verifier: t.verifier },
        routes: guardedRoutes, port: 0, logger: pino({ level: "silent" }), graceMs: 100,
        ...${JSON.stringify(options)},
      });
      const report = () => { gc(); process.stdout.write(JSON.stringify({ url: server.url, rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed }) + "\\n"); };
      process.stdin.on("data", report);
      process.stdin.on("end", async () => { await server.close(); await t.close(); });
      report();
    `;
    const child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", "--input-type=module", "-e", code], {
      cwd: root,
      stdio: ["pipe", "pipe", "inherit"],
    });
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const read = async (): Promise<{ url: string; rss: number; heap: number }> => {
      const line = await lines.next();
      if (line.done) throw new Error("the server process ended");
      return JSON.parse(line.value) as { url: string; rss: number; heap: number };
    };
    const { url } = await read();
    return {
      url,
      rss: async () => {
        child.stdin!.write("\n");
        return (await read()).rss;
      },
      /** V8 heap in use after a full GC: what the open calls retain. */
      heap: async () => {
        child.stdin!.write("\n");
        return (await read()).heap;
      },
      stop: async () => {
        child.stdin!.end();
        await once(child, "exit");
      },
    };
  }

  it("refuses Watch calls beyond the per-connection and global caps with RESOURCE_EXHAUSTED; memory stays bounded", async () => {
    const maxWatchStreams = 100;
    const server = await childServer({ maxWatchStreams });
    const abort = new AbortController();
    try {
      /** Opens a Watch; resolves "open" once its first message arrives, else the error code. */
      const attempt = async (health: ReturnType<typeof createClient<typeof Health>>): Promise<"open" | Code> => {
        const stream = health.watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]();
        try {
          await stream.next();
          return "open";
        } catch (e) {
          return ConnectError.from(e).code;
        }
      };
      const connections = 20;
      const perConnection = 100;
      const rssBefore = await settledRss(server.rss);
      const heapBefore = await server.heap();
      const outcomes = await Promise.all(
        Array.from({ length: connections }, async () => {
          const health = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
          return Promise.all(Array.from({ length: perConnection }, () => attempt(health)));
        }),
      );
      // Read while the admitted watches are still open.
      const rssGrowth = (await server.rss()) - rssBefore;
      const heapGrowth = (await server.heap()) - heapBefore;
      const all = outcomes.flat();
      const open = all.filter((o) => o === "open").length;
      const exhausted = all.filter((o) => o === Code.ResourceExhausted).length;
      // At most 10 per connection (the default), at most 100 in all.
      for (const perConn of outcomes) assert.ok(perConn.filter((o) => o === "open").length <= 10);
      assert.equal(open, maxWatchStreams);
      assert.equal(exhausted, all.length - open);
      // A figure for the README (the issue saw 375 MB for 8,000 unbounded streams).
      const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
      console.log(
        `${all.length} Watch attempts on ${connections} connections, ${open} admitted: ` +
          `server RSS grew ${mib(rssGrowth)} MiB, heap in use ${mib(heapGrowth)} MiB`,
      );
      assert.ok(rssGrowth < 128 * 2 ** 20, `server RSS grew ${rssGrowth} bytes`);

      // Cancelled watches give their places back.
      abort.abort();
      await sleep(300);
      const again = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
      const later = new AbortController();
      const stream = again.watch({ service: "" }, { signal: later.signal })[Symbol.asyncIterator]();
      assert.equal((await stream.next()).done, false);
      later.abort();
    } finally {
      abort.abort();
      await server.stop();
    }
  });
});

/** Two `authorization` headers, as a proxy that appends its own would send them. */
function twoCredentials(): string[] {
  return ["-H", `authorization: Bearer ${staffToken}`, "-H", `authorization: Bearer ${aliceToken}`];
}

async function curl(args: string[]): Promise<string> {
  const { stdout } = await run("curl", ["-sS", "--max-time", "10", ...args], { timeout: 15_000 });
  return stdout;
}

describe("a repeated authorization header is TOKEN_MALFORMED on every front-end", { timeout: 120_000 }, () => {
  for (const prefilter of [true, false]) {
    describe(`pre-filter ${prefilter ? "on" : "off"}`, () => {
      let plain: RunningServer;
      let secure: RunningServer | undefined;
      before(async () => {
        plain = await serve({ prefilter });
        if (haveOpenssl) secure = await serve({ prefilter, tls: { cert, key } });
      });

      it("raw HTTP/1.1 socket: 401, never the first credential's answer", async () => {
        const socket = await connectPlain(plain.port);
        const closed = whenClosed(socket, Date.now());
        const body = JSON.stringify({ text: "x" });
        socket.end(
          `POST ${AUTHENTICATED} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
            `Authorization: Bearer ${staffToken}\r\nAuthorization: Bearer ${aliceToken}\r\n` +
            `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
        );
        const { received } = await closed;
        assert.match(received, /^HTTP\/1\.1 401 /);
        assert.ok(received.includes(MALFORMED_MESSAGE), received);
      });

      const cacert = () => ["--cacert", join(certDir ?? "", "cert.pem")];
      const fronts: [string, () => string | undefined, () => string[]][] = [
        ["h1 (curl)", () => plain.url, () => ["--http1.1"]],
        ["h2c (curl)", () => plain.url, () => ["--http2-prior-knowledge"]],
        ["TLS h1 (curl)", () => secure?.url, () => ["--http1.1", ...cacert()]],
        ["TLS h2 (curl)", () => secure?.url, () => ["--http2", ...cacert()]],
      ];
      for (const [name, url, flagsOf] of fronts) {
        it(`${name}: Connect unary is refused with 401 TOKEN_MALFORMED`, {
          skip: haveCurlHttp2 ? false : "curl without HTTP/2",
        }, async (ctx) => {
          const base = url();
          if (base === undefined) return ctx.skip("openssl not installed");
          const flags = flagsOf();
          // No body (an empty proto message): a stream the client has
          // finished needs no reset after the answer, which curl 7.88
          // sometimes reports as a framing error instead of the answer.
          const out = await curl([
            ...flags,
            "-X",
            "POST",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{http_version}",
            "-H",
            "content-type: application/proto",
            ...twoCredentials(),
            `${base}${AUTHENTICATED}`,
          ]);
          const [body, status] = out.split("\n");
          assert.equal(status?.split(" ")[0], "401", out);
          assert.equal(status?.split(" ")[1], name.includes("h1") ? "1.1" : "2", out);
          const error = JSON.parse(body!) as { code: string; message: string };
          assert.deepEqual(
            { code: error.code, message: error.message },
            { code: "unauthenticated", message: MALFORMED_MESSAGE },
          );
          // Control: one header is served.
          const one = await curl([
            ...flags,
            "-X",
            "POST",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "content-type: application/proto",
            "-H",
            `authorization: Bearer ${staffToken}`,
            `${base}${AUTHENTICATED}`,
          ]);
          assert.equal(one, "200");
        });
      }

      it("h2c gRPC (curl): grpc-status 16 in the caller's protocol", {
        skip: haveCurlHttp2 ? false : "curl without HTTP/2",
      }, async () => {
        const out = await curl([
          "--http2-prior-knowledge",
          "-X",
          "POST",
          "-o",
          "/dev/null",
          "-D",
          "-",
          "-H",
          "content-type: application/grpc",
          "-H",
          "te: trailers",
          ...twoCredentials(),
          `${plain.url}${AUTHENTICATED}`,
        ]);
        assert.match(out, /grpc-status: 16/i, out);
        assert.match(out, /grpc-message: malformed%20authorization%20header/i, out);
      });
    });
  }

  it("createPrefilter alone (without listen) refuses two headers itself", async () => {
    const connect = connectNodeAdapter({
      routes: guardedRoutes,
      interceptors: [t.auth.interceptor],
      requestGate: t.auth.requestGate,
      contextValues: prefilterContextValues,
    });
    let passedOn = 0;
    const handler = createPrefilter({
      auth: t.auth,
      services: [GuardedService],
      next: (req, res) => {
        passedOn++;
        connect(req, res);
      },
    });
    const plainServer = http.createServer(handler);
    plainServer.listen(0, "127.0.0.1");
    await once(plainServer, "listening");
    try {
      const socket = await connectPlain((plainServer.address() as net.AddressInfo).port);
      const closed = whenClosed(socket, Date.now());
      socket.end(
        `POST ${AUTHENTICATED} HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\n` +
          `Authorization: Bearer ${staffToken}\r\nAuthorization: Bearer ${aliceToken}\r\n` +
          `Content-Length: 0\r\nConnection: close\r\n\r\n`,
      );
      const { received } = await closed;
      assert.match(received, /^HTTP\/1\.1 401 /);
      assert.ok(received.includes(MALFORMED_MESSAGE), received);
      assert.equal(passedOn, 0, "refused by the pre-filter itself");
    } finally {
      plainServer.close();
    }
  });

  it("in memory (createTestAuth's transport): two appended headers are TOKEN_MALFORMED", async () => {
    const client = createClient(GuardedService, t.transport);
    const headers = new Headers();
    headers.append("authorization", `Bearer ${staffToken}`);
    headers.append("authorization", `Bearer ${aliceToken}`);
    const error = await client.authenticatedUnary({ text: "x" }, { headers }).then(
      () => assert.fail("served"),
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(error.code, Code.Unauthenticated);
    assert.equal(authErrorReason(error), "TOKEN_MALFORMED");
  });
});

describe("refusals of large HTTP/1.1 uploads reach the client", { timeout: 60_000 }, () => {
  it("5 clients each uploading 8 MiB without a token all read their 401", async () => {
    const server = await serve();
    const body = Buffer.alloc(8 * 2 ** 20, 0x61);
    // Like many clients (Python's requests, for one), send the whole body
    // before reading the answer: a server that closes with the upload
    // unread resets the connection, and the answer is lost with it.
    const upload = async (): Promise<string> => {
      const socket = await connectPlain(server.port);
      socket.pause();
      const chunks: Buffer[] = [];
      const outcome = new Promise<string>((resolve) => {
        socket.on("data", (chunk: Buffer) => chunks.push(chunk));
        socket.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        socket.on("close", () => resolve(Buffer.concat(chunks).toString("latin1").split("\r\n")[0]!));
      });
      const head =
        `POST ${AUTHENTICATED} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\n\r\n`;
      const written = new Promise<void>((resolve) =>
        socket.write(Buffer.concat([Buffer.from(head), body]), () => resolve()),
      );
      await Promise.race([written, outcome]);
      socket.resume();
      socket.end();
      return outcome;
    };
    const outcomes = await Promise.all(Array.from({ length: 5 }, upload));
    assert.deepEqual(outcomes, Array(5).fill("HTTP/1.1 401 Unauthorized"));
  });
});

describe("configuration", () => {
  it("reads the limits from PROTOGUARD_* variables, with the documented defaults", () => {
    const defaults = loadConfig({});
    assert.deepEqual(
      {
        headersTimeoutMs: defaults.headersTimeoutMs,
        requestTimeoutMs: defaults.requestTimeoutMs,
        keepAliveTimeoutMs: defaults.keepAliveTimeoutMs,
        idleTimeoutMs: defaults.idleTimeoutMs,
        maxConcurrentStreams: defaults.maxConcurrentStreams,
        maxConnections: defaults.maxConnections,
        maxConnectionsPerPeer: defaults.maxConnectionsPerPeer,
        maxWatchStreams: defaults.maxWatchStreams,
        maxWatchStreamsPerConnection: defaults.maxWatchStreamsPerConnection,
      },
      {
        headersTimeoutMs: 20_000,
        requestTimeoutMs: 300_000,
        keepAliveTimeoutMs: 5_000,
        idleTimeoutMs: 60_000,
        maxConcurrentStreams: 100,
        maxConnections: 4096,
        maxConnectionsPerPeer: 256,
        maxWatchStreams: 1000,
        maxWatchStreamsPerConnection: 10,
      },
    );
    const set = loadConfig({
      PROTOGUARD_HEADERS_TIMEOUT_MS: "1000",
      PROTOGUARD_REQUEST_TIMEOUT_MS: "2000",
      PROTOGUARD_KEEPALIVE_TIMEOUT_MS: "3000",
      PROTOGUARD_IDLE_TIMEOUT_MS: "0",
      PROTOGUARD_MAX_CONCURRENT_STREAMS: "50",
      PROTOGUARD_MAX_CONNECTIONS: "10",
      PROTOGUARD_MAX_CONNECTIONS_PER_PEER: "0",
      PROTOGUARD_MAX_WATCH_STREAMS: "5",
      PROTOGUARD_MAX_WATCH_STREAMS_PER_CONNECTION: "1",
    });
    assert.equal(set.headersTimeoutMs, 1000);
    assert.equal(set.requestTimeoutMs, 2000);
    assert.equal(set.keepAliveTimeoutMs, 3000);
    assert.equal(set.idleTimeoutMs, 0);
    assert.equal(set.maxConcurrentStreams, 50);
    assert.equal(set.maxConnections, 10);
    assert.equal(set.maxConnectionsPerPeer, 0);
    assert.equal(set.maxWatchStreams, 5);
    assert.equal(set.maxWatchStreamsPerConnection, 1);
    assert.throws(() => loadConfig({ PROTOGUARD_MAX_CONCURRENT_STREAMS: "0" }), /PROTOGUARD_MAX_CONCURRENT_STREAMS/);
    assert.throws(
      () => loadConfig({ PROTOGUARD_HEADERS_TIMEOUT_MS: "5000", PROTOGUARD_REQUEST_TIMEOUT_MS: "1000" }),
      /must not exceed PROTOGUARD_REQUEST_TIMEOUT_MS/,
    );
  });

  it("rejects a limit out of range before opening the port", async () => {
    await assert.rejects(serve({ maxConcurrentStreams: 0 }), /maxConcurrentStreams must be an integer/);
    await assert.rejects(serve({ headersTimeoutMs: 5000, requestTimeoutMs: 1000 }), /must not exceed requestTimeoutMs/);
  });
});
