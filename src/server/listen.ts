/**
 * One port for every protocol Connect speaks: HTTP/1.1 (Connect, gRPC-Web),
 * HTTP/2 (gRPC, Connect streaming) and, with TLS, both via ALPN.
 *
 * Without TLS there is no ALPN, and Node 20's `http2.createServer({
 * allowHTTP1: true })` answers HTTP/1.1 clients with HTTP/2 frames. So the
 * plaintext listener is a bare `net.Server` that reads the first bytes of
 * each connection: the 24-byte HTTP/2 client preface means h2c with prior
 * knowledge (what gRPC clients send), anything else is HTTP/1.1.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import * as tls from "node:tls";
import type { connectNodeAdapter } from "@connectrpc/connect-node";
import { ConnectionTracker } from "./shutdown.js";

/**
 * A Node request handler that serves both HTTP/1.1 and HTTP/2 requests, such
 * as the result of `connectNodeAdapter()` or of `withCors()`.
 */
export type RequestHandler = ReturnType<typeof connectNodeAdapter>;

/** PEM certificate chain and private key for {@link listen}. */
export interface TlsOptions {
  /** PEM certificate (chain), as text or bytes; not a file path. */
  cert: string | Buffer;
  /** PEM private key matching `cert`, as text or bytes; not a file path. */
  key: string | Buffer;
}

/** Options of {@link listen}. */
export interface ListenOptions {
  /** Serves every request, whatever the protocol. */
  handler: RequestHandler;
  /** TCP port; 0 picks a free one (read it from the result). */
  port: number;
  /**
   * Interface to bind. Default "127.0.0.1": exposing a server on every
   * interface ("0.0.0.0" or "::") should be a deliberate choice.
   */
  host?: string;
  /**
   * Sees every plaintext HTTP/2 stream before Node's compatibility layer
   * builds a request and response for it (their cost dominates a refused
   * call); it answers the stream itself or calls `next` to hand it to
   * `handler`. See `createStreamPrefilter`. Default: none.
   */
  streamPrefilter?: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, next: () => void) => void;
  /** Serve HTTPS (h2 and http/1.1 via ALPN) instead of plaintext. Default: plaintext. */
  tls?: TlsOptions;
  /**
   * How long a plaintext connection may stay silent before its first bytes
   * arrive; silent sockets would otherwise be held forever. Default 10000 ms.
   */
  prefaceTimeoutMs?: number;
  /**
   * How long an idle HTTP/1.1 keep-alive connection stays open. Default 5000 ms
   * (Node's default).
   */
  keepAliveTimeoutMs?: number;
}

/** A listening server, returned by {@link listen}. */
export interface Listening {
  /** The listening server: a `net.Server` (plaintext) or an `http2.Http2SecureServer` (TLS). */
  readonly server: net.Server;
  /** The port actually bound; differs from the requested one when that was 0. */
  readonly port: number;
  /** The interface bound. */
  readonly host: string;
  /** Base URL for clients, e.g. "http://127.0.0.1:8080" (IPv6 hosts in brackets). */
  readonly url: string;
  /**
   * Stops accepting, lets in-flight calls finish for up to `graceMs`
   * (default 10000), then destroys what is left. Resolves when every
   * connection is closed. Idempotent.
   */
  close(graceMs?: number): Promise<void>;
}

/** The first bytes an HTTP/2 client sends on a connection (RFC 9113, section 3.4). */
const http2Preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/**
 * Listens on one port and serves `handler` over HTTP/1.1 and HTTP/2.
 * Plaintext serves HTTP/1.1 and h2c (prior knowledge) side by side; with
 * `tls`, ALPN picks h2 or http/1.1.
 *
 * Rejects with a readable Error when the port is taken ("port N is already
 * in use"), when binding is not permitted, or when the TLS certificate or
 * key is unusable (checked before binding).
 */
export async function listen(options: ListenOptions): Promise<Listening> {
  const host = options.host ?? "127.0.0.1";
  const tracker = new ConnectionTracker();
  const handler = trackingHandler(options.handler, tracker);
  const server = options.tls
    ? createTlsServer(options.tls, handler, tracker)
    : createPlaintextServer(handler, tracker, {
        prefaceTimeoutMs: options.prefaceTimeoutMs ?? 10_000,
        keepAliveTimeoutMs: options.keepAliveTimeoutMs ?? 5_000,
        streamPrefilter: options.streamPrefilter,
      });
  if (options.tls) {
    // The secure server's HTTP/1.1 side reads this like http.Server does, but
    // Node leaves it unset there, which keeps idle HTTP/1.1 sockets forever.
    (server as unknown as { keepAliveTimeout: number }).keepAliveTimeout = options.keepAliveTimeoutMs ?? 5_000;
  }
  await bind(server, options.port, host);
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : options.port;
  const scheme = options.tls ? "https" : "http";
  const urlHost = host.includes(":") ? `[${host}]` : host;
  return {
    server,
    port,
    host,
    url: `${scheme}://${urlHost}:${port}`,
    close: (graceMs?: number) => tracker.close(server, graceMs),
  };
}

/** Counts HTTP/1.1 requests for graceful close; HTTP/2 streams are counted by their session. */
function trackingHandler(handler: RequestHandler, tracker: ConnectionTracker): RequestHandler {
  return (req, res) => {
    if (req.httpVersionMajor === 1) {
      tracker.trackHttp1Request(req as http.IncomingMessage, res as unknown as http.ServerResponse);
    }
    handler(req, res);
  };
}

function bind(server: net.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off("listening", onListening);
      reject(bindError(err, port, host));
    };
    const onListening = (): void => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen(port, host);
  });
}

function bindError(err: NodeJS.ErrnoException, port: number, host: string): Error {
  switch (err.code) {
    case "EADDRINUSE":
      return new Error(`port ${port} is already in use on ${host}`, { cause: err });
    case "EACCES":
      return new Error(`permission denied to listen on port ${port} on ${host} (ports below 1024 need privileges)`, {
        cause: err,
      });
    case "EADDRNOTAVAIL":
    case "ENOTFOUND":
      return new Error(`cannot listen on ${host}:${port}: the address is not available on this machine`, { cause: err });
    default:
      return new Error(`cannot listen on ${host}:${port}: ${err.message}`, { cause: err });
  }
}

interface PlaintextOptions {
  prefaceTimeoutMs: number;
  keepAliveTimeoutMs: number;
  streamPrefilter: ListenOptions["streamPrefilter"];
}

function createPlaintextServer(
  handler: RequestHandler,
  tracker: ConnectionTracker,
  options: PlaintextOptions,
): net.Server {
  // Neither inner server listens; they only receive sockets from the sniffer.
  const http1Server = http.createServer(handler);
  http1Server.keepAliveTimeout = options.keepAliveTimeoutMs;
  const http2Server = createHttp2Server(handler, options.streamPrefilter);
  http2Server.on("session", (session) => tracker.addSession(session));

  return net.createServer((socket) => {
    // An unhandled socket error (a peer reset, say) would crash the process.
    socket.on("error", () => socket.destroy());
    tracker.addSocket(socket, socket);
    if (tracker.closing) return;
    sniff(socket, options.prefaceTimeoutMs, (isHttp2) => {
      tracker.classify(socket, isHttp2 ? "h2" : "h1");
      if (isHttp2) {
        // No resume(): the http2 session reads the unshifted bytes from the
        // socket's buffer itself; resuming makes them flow past it (GOAWAY).
        http2Server.emit("connection", socket);
      } else {
        http1Server.emit("connection", socket);
        socket.resume();
      }
    });
  });
}

/**
 * The h2c server. With a stream pre-filter, no `request` listener is added
 * (that would make Node build compatibility objects for every stream); the
 * streams the pre-filter hands on get the same objects Node would make, and
 * go to `handler`.
 */
function createHttp2Server(handler: RequestHandler, streamPrefilter: ListenOptions["streamPrefilter"]): http2.Http2Server {
  if (streamPrefilter === undefined) return http2.createServer(handler);
  const server = http2.createServer();
  server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    streamPrefilter(stream, headers, () => {
      const req = new http2.Http2ServerRequest(stream, headers, {}, rawHeaders);
      handler(req, new http2.Http2ServerResponse(stream));
    });
  });
  return server;
}

/**
 * Reads just enough of a new connection to tell HTTP/2 from HTTP/1.1, puts
 * the bytes back, and calls `decide` once. The preface may arrive split over
 * several packets, so a matching prefix keeps waiting; the first mismatching
 * byte decides HTTP/1.1 at once (a request line differs by its second byte).
 */
function sniff(socket: net.Socket, timeoutMs: number, decide: (isHttp2: boolean) => void): void {
  const chunks: Buffer[] = [];
  let length = 0;
  const finish = (isHttp2: boolean): void => {
    socket.off("data", onData);
    socket.off("end", onEnd);
    socket.off("timeout", onTimeout);
    socket.setTimeout(0);
    socket.pause();
    socket.unshift(Buffer.concat(chunks, length));
    decide(isHttp2);
  };
  const onData = (chunk: Buffer): void => {
    chunks.push(chunk);
    const offset = length;
    length += chunk.length;
    const compare = Math.min(chunk.length, http2Preface.length - offset);
    if (compare > 0 && !chunk.subarray(0, compare).equals(http2Preface.subarray(offset, offset + compare))) {
      finish(false);
    } else if (length >= http2Preface.length) {
      finish(true);
    }
  };
  // A peer that half-closes or goes quiet before sending a request gets nothing.
  const onEnd = (): void => {
    socket.destroy();
  };
  const onTimeout = (): void => {
    socket.destroy();
  };
  socket.on("data", onData);
  socket.on("end", onEnd);
  socket.on("timeout", onTimeout);
  socket.setTimeout(timeoutMs);
}

function createTlsServer(options: TlsOptions, handler: RequestHandler, tracker: ConnectionTracker): net.Server {
  checkTls(options);
  const server = http2.createSecureServer(
    {
      cert: options.cert,
      key: options.key,
      allowHTTP1: true,
      ALPNProtocols: ["h2", "http/1.1"],
    },
    handler,
  );
  server.on("connection", (socket: net.Socket) => {
    socket.on("error", () => socket.destroy());
    tracker.addSocket(socket);
  });
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    socket.on("error", () => socket.destroy());
    tracker.classify(socket, socket.alpnProtocol === "h2" ? "h2" : "h1");
  });
  server.on("session", (session) => tracker.addSession(session));
  // Failed handshakes (plain HTTP to an HTTPS port, bad clients) are the
  // client's problem; without a listener Node would only log them, but keep
  // the socket from lingering.
  server.on("tlsClientError", (_err, socket) => socket.destroy());
  return server;
}

/**
 * Validates certificate and key one at a time, because a combined failure
 * from OpenSSL ("no start line", "key values mismatch") does not say which
 * of the two is wrong.
 */
function checkTls(options: TlsOptions): void {
  for (const [label, value] of [
    ["certificate", options.cert],
    ["private key", options.key],
  ] as const) {
    const text = typeof value === "string" ? value : value.toString("latin1");
    if (!text.includes("-----BEGIN")) {
      const hint =
        typeof value === "string" && !value.includes("\n")
          ? " It looks like a file path; pass the file's contents (fs.readFileSync(path))."
          : "";
      throw new Error(`TLS ${label} is not PEM: expected a "-----BEGIN" block.${hint}`);
    }
  }
  try {
    tls.createSecureContext({ cert: options.cert });
  } catch (err) {
    throw new Error(`TLS certificate is invalid: ${(err as Error).message}`, { cause: err });
  }
  try {
    tls.createSecureContext({ key: options.key });
  } catch (err) {
    throw new Error(`TLS private key is invalid (encrypted keys are not supported): ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    tls.createSecureContext({ cert: options.cert, key: options.key });
  } catch (err) {
    throw new Error(`TLS private key does not match the certificate: ${(err as Error).message}`, { cause: err });
  }
}
