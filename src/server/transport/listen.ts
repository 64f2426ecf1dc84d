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
import type * as tls from "node:tls";
import type { NodeHandler } from "../http.js";
import { exposeRepeatedAuthorization } from "./authorization.js";
import { ConnectionTracker } from "./connections.js";
import { ServerError } from "./errors.js";
import {
  closeIdleSessions,
  http2Options,
  limitConnections,
  resolveLimits,
  setHttp1Timeouts,
  type ConnectionLimits,
  type Limits,
} from "./limits.js";
import { sniff } from "./sniff.js";
import { checkTls, type TlsOptions } from "./tls.js";

/** Options of {@link listen}. */
export interface ListenOptions extends ConnectionLimits {
  /** Serves every request, whatever the protocol. */
  handler: NodeHandler;
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
   * `handler`. `rawHeaders` are the stream's headers as received, with
   * duplicates. See `createStreamPrefilter`. Default: none.
   */
  streamPrefilter?: (
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    next: () => void,
    rawHeaders?: readonly string[],
  ) => void;
  /** Serve HTTPS (h2 and http/1.1 via ALPN) instead of plaintext. Default: plaintext. */
  tls?: TlsOptions;
  /**
   * How long a plaintext connection may take to show whether it speaks
   * HTTP/2 (its first 24 bytes at most), counted from accept, however
   * slowly the bytes trickle in. Default: {@link ConnectionLimits.headersTimeoutMs}.
   */
  prefaceTimeoutMs?: number;
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

/**
 * Listens on one port and serves `handler` over HTTP/1.1 and HTTP/2.
 * Plaintext serves HTTP/1.1 and h2c (prior knowledge) side by side; with
 * `tls`, ALPN picks h2 or http/1.1.
 *
 * Rejects with a {@link ServerError} when the port is taken (code
 * `PORT_IN_USE`, "port N is already in use"), when binding is not permitted,
 * or when the TLS certificate or key is unusable (checked before binding,
 * codes `TLS_*`); with a RangeError when a connection limit is out of range.
 */
export async function listen(options: ListenOptions): Promise<Listening> {
  const host = options.host ?? "127.0.0.1";
  const limits = resolveLimits(options);
  const tracker = new ConnectionTracker();
  const handler = frontHandler(options.handler, tracker);
  const inner = options.tls
    ? createTlsServer(options.tls, handler, tracker, limits)
    : createPlaintextServer(handler, tracker, limits, options.streamPrefilter);
  const { server } = inner;
  limitConnections(server, limits);
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
    close: (graceMs?: number) => {
      inner.stopTimers();
      return tracker.close(server, graceMs);
    },
  };
}

/**
 * Wraps the handler every request goes through, whatever the front-end:
 * counts HTTP/1.1 requests for graceful close (HTTP/2 streams are counted by
 * their session) and makes a repeated `authorization` header visible.
 */
function frontHandler(handler: NodeHandler, tracker: ConnectionTracker): NodeHandler {
  return (req, res) => {
    if (req.httpVersionMajor === 1) {
      tracker.trackHttp1Request(req as http.IncomingMessage, res as unknown as http.ServerResponse);
    }
    exposeRepeatedAuthorization(req.headers, req.rawHeaders);
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

/** The {@link ServerError} for a failed bind, with the system error as its cause. */
function bindError(err: NodeJS.ErrnoException, port: number, host: string): ServerError {
  switch (err.code) {
    case "EADDRINUSE":
      return new ServerError("PORT_IN_USE", `port ${port} is already in use on ${host}`, { cause: err });
    case "EACCES":
      return new ServerError(
        "PERMISSION_DENIED",
        `permission denied to listen on port ${port} on ${host} (ports below 1024 need privileges)`,
        { cause: err },
      );
    case "EADDRNOTAVAIL":
    case "ENOTFOUND":
      return new ServerError(
        "ADDRESS_UNAVAILABLE",
        `cannot listen on ${host}:${port}: the address is not available on this machine`,
        { cause: err },
      );
    default:
      return new ServerError("LISTEN_FAILED", `cannot listen on ${host}:${port}: ${err.message}`, { cause: err });
  }
}

interface InnerServer {
  readonly server: net.Server;
  /** Stops interval timers that outlive no socket but would keep running. */
  stopTimers(): void;
}

function createPlaintextServer(
  handler: NodeHandler,
  tracker: ConnectionTracker,
  limits: Limits,
  streamPrefilter: ListenOptions["streamPrefilter"],
): InnerServer {
  // Neither inner server listens; they only receive sockets from the sniffer.
  const http1Server = http.createServer(handler);
  setHttp1Timeouts(http1Server, limits);
  armHttp1Timeouts(http1Server);
  const http2Server = createHttp2Server(handler, limits, streamPrefilter);
  http2Server.on("session", (session) => tracker.addSession(session));
  closeIdleSessions(http2Server, limits.idleTimeoutMs);

  const server = net.createServer((socket) => {
    // An unhandled socket error (a peer reset, say) would crash the process.
    socket.on("error", () => socket.destroy());
    // Refused by the connection limits.
    if (socket.destroyed) return;
    tracker.addSocket(socket, socket);
    if (tracker.closing) return;
    sniff(socket, limits.prefaceTimeoutMs, (isHttp2) => {
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
  return {
    server,
    // Clears the timeout check interval (and drops idle HTTP/1.1 sockets,
    // which the tracker's close would drop anyway).
    stopTimers: () => http1Server.close(ignore),
  };
}

/**
 * Node starts the HTTP/1.1 header and request timeout checks of an
 * `http.Server` (the interval that answers 408) from its `'listening'`
 * event, and keeps a parser list for it only from then on. The inner server
 * never listens (the sniffing `net.Server` does), so without this its
 * timeouts would never fire: a client sending half a request line would
 * keep its socket forever. Emitting the event runs exactly Node's own
 * set-up; the server binds nothing, and `close()` clears the interval.
 */
function armHttp1Timeouts(server: http.Server): void {
  server.emit("listening");
}

/**
 * The h2c server. With a stream pre-filter, no `request` listener is added
 * (that would make Node build compatibility objects for every stream); the
 * streams the pre-filter hands on get the same objects Node would make, and
 * go to `handler`.
 */
function createHttp2Server(
  handler: NodeHandler,
  limits: Limits,
  streamPrefilter: ListenOptions["streamPrefilter"],
): http2.Http2Server {
  if (streamPrefilter === undefined) return http2.createServer(http2Options(limits), handler);
  const server = http2.createServer(http2Options(limits));
  server.on(
    "stream",
    (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      exposeRepeatedAuthorization(headers, rawHeaders);
      streamPrefilter(
        stream,
        headers,
        () => {
          // The client reset the stream while its verdict was awaited: nobody to answer.
          if (stream.destroyed) return;
          const req = new http2.Http2ServerRequest(stream, headers, {}, rawHeaders);
          // Node's own 'stream' handler builds the request at once. Built later (after an
          // asynchronous verdict), it misses the stream's 'end' when the body was empty and
          // END_STREAM has already been read: it would wait for a body that never comes.
          // An ended stream has no unread data left, so the request ends too.
          if (stream.readableEnded) req.push(null);
          handler(req, new http2.Http2ServerResponse(stream));
        },
        rawHeaders,
      );
    },
  );
  return server;
}

function createTlsServer(
  options: TlsOptions,
  handler: NodeHandler,
  tracker: ConnectionTracker,
  limits: Limits,
): InnerServer {
  checkTls(options);
  const server = http2.createSecureServer(
    {
      ...http2Options(limits),
      cert: options.cert,
      key: options.key,
      // Client certificates are asked for and verified, never required: one
      // that fails verification leaves the caller unidentified (anonymous,
      // or a bearer token), it does not end the connection.
      ...(options.clientCa !== undefined && { ca: options.clientCa, requestCert: true, rejectUnauthorized: false }),
      allowHTTP1: true,
      ALPNProtocols: ["h2", "http/1.1"],
      // A client that never finishes the handshake is as slow as one that
      // never finishes its headers (Node's default is 120 s).
      handshakeTimeout: limits.prefaceTimeoutMs,
    },
    handler,
  );
  // Node arms these for the HTTP/1.1 fallback when the server listens.
  setHttp1Timeouts(server, limits);
  server.on("connection", (socket: net.Socket) => {
    socket.on("error", () => socket.destroy());
    // Refused by the connection limits.
    if (socket.destroyed) return;
    tracker.addSocket(socket);
  });
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    socket.on("error", () => socket.destroy());
    tracker.classify(socket, socket.alpnProtocol === "h2" ? "h2" : "h1");
  });
  server.on("session", (session) => tracker.addSession(session));
  closeIdleSessions(server, limits.idleTimeoutMs);
  // Failed handshakes (plain HTTP to an HTTPS port, bad clients) are the
  // client's problem; without a listener Node would only log them, but keep
  // the socket from lingering.
  server.on("tlsClientError", (_err, socket) => socket.destroy());
  // The secure server's own close() clears its timeout check interval.
  return { server, stopTimers: ignore };
}

function ignore(): void {}
