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

/**
 * Time and size bounds of every connection, whatever the protocol: what keeps
 * clients that send slowly, idle, or open many calls from holding the
 * server's sockets and memory. Options of {@link listen} and `startServer`;
 * `protoguard serve` reads them from `PROTOGUARD_*` variables. A 0 turns a
 * bound off where noted. Defaults are in {@link CONNECTION_LIMIT_DEFAULTS}.
 */
export interface ConnectionLimits {
  /**
   * Longest time from a connection's (or a keep-alive request's) first byte
   * to the end of the HTTP/1.1 request head; a slower client gets 408 and the
   * socket is closed. Plaintext connections also have this long to show
   * whether they speak HTTP/2 (the preface), and TLS clients to finish the
   * handshake. Default 20000 ms (Apache's `mod_reqtimeout` header bound; Node
   * and nginx allow 60 s). 0 disables it (not recommended).
   */
  headersTimeoutMs?: number;
  /**
   * Longest time to receive a whole HTTP/1.1 request, head and body; a slower
   * client gets 408. Not applied to HTTP/2 streams, whose number is bounded
   * by {@link maxConcurrentStreams} instead. Default 300000 ms (Node's). 0
   * disables it. Must not be less than {@link headersTimeoutMs}.
   */
  requestTimeoutMs?: number;
  /** How long an idle HTTP/1.1 keep-alive connection stays open. Default 5000 ms (Node's). */
  keepAliveTimeoutMs?: number;
  /**
   * How long an HTTP/2 connection may stay open without any stream (call) in
   * flight before the server ends it with GOAWAY; clients reconnect when they
   * next call. Open streams, however quiet (a health Watch), keep it alive.
   * Default 60000 ms (nginx closes idle HTTP/2 connections after 75 s,
   * Envoy after 1 h). 0 disables it.
   */
  idleTimeoutMs?: number;
  /**
   * SETTINGS_MAX_CONCURRENT_STREAMS advertised on every HTTP/2 connection:
   * streams beyond it are refused (REFUSED_STREAM, which clients retry).
   * Default 100: the lowest value RFC 9113 (section 6.5.2) recommends a
   * peer to allow, the bound Envoy's edge-proxy guide and grpc-java's
   * Netty examples use (nginx uses 128, Go's net/http2 250); enough to
   * pipeline any client's calls, small enough that one connection cannot
   * hold thousands of calls' memory. Node would advertise 2^32-1.
   */
  maxConcurrentStreams?: number;
  /**
   * Open TCP connections across all peers; new ones beyond it are closed at
   * once. Default 4096. 0 means no limit.
   */
  maxConnections?: number;
  /**
   * Open TCP connections from one IP address; new ones beyond it are closed
   * at once, so one address cannot take the whole {@link maxConnections}
   * budget. Behind a proxy or load balancer every connection comes from its
   * address: raise this or set it to 0 there. Default 256. 0 means no limit.
   */
  maxConnectionsPerPeer?: number;
}

/** The defaults of {@link ConnectionLimits}, resolved once; see each option. */
export const CONNECTION_LIMIT_DEFAULTS: Readonly<Required<ConnectionLimits>> = Object.freeze({
  headersTimeoutMs: 20_000,
  requestTimeoutMs: 300_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  maxConcurrentStreams: 100,
  maxConnections: 4096,
  maxConnectionsPerPeer: 256,
});

/** Options of {@link listen}. */
export interface ListenOptions extends ConnectionLimits {
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

/** {@link ConnectionLimits} with every default applied, checked once at start. */
interface Limits extends Required<ConnectionLimits> {
  prefaceTimeoutMs: number;
  /** How often HTTP/1.1 connections are checked against the header and request timeouts. */
  checkIntervalMs: number;
}

function resolveLimits(options: ListenOptions): Limits {
  const limits = { ...CONNECTION_LIMIT_DEFAULTS };
  for (const name of Object.keys(limits) as (keyof ConnectionLimits)[]) {
    const value = options[name];
    if (value === undefined) continue;
    const min = name === "maxConcurrentStreams" ? 1 : 0;
    const max = name === "maxConcurrentStreams" ? 2 ** 31 - 1 : Number.MAX_SAFE_INTEGER;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${value}`);
    }
    limits[name] = value;
  }
  if (limits.requestTimeoutMs > 0 && limits.headersTimeoutMs > limits.requestTimeoutMs) {
    throw new RangeError(
      `headersTimeoutMs (${limits.headersTimeoutMs}) must not exceed requestTimeoutMs (${limits.requestTimeoutMs})`,
    );
  }
  // The preface wait is always bounded, even with the header timeout off.
  const prefaceTimeoutMs = options.prefaceTimeoutMs ?? (limits.headersTimeoutMs > 0 ? limits.headersTimeoutMs : 10_000);
  // Node checks its HTTP/1.1 timeouts on an interval (30 s by default), so a
  // slow client can hold a socket up to one interval past them; a quarter of
  // the shorter timeout keeps the overshoot small at a negligible cost (a
  // walk over the open HTTP/1.1 connections).
  const shortest = Math.min(...[limits.headersTimeoutMs, limits.requestTimeoutMs].filter((ms) => ms > 0), 20_000);
  const checkIntervalMs = Math.min(5_000, Math.max(50, Math.floor(shortest / 4)));
  return { ...limits, prefaceTimeoutMs, checkIntervalMs };
}

/**
 * Caps connections: all of them through Node's `maxConnections` (Node closes
 * the socket right after accepting it), and per remote address here.
 */
function limitConnections(server: net.Server, limits: Limits): void {
  if (limits.maxConnections > 0) server.maxConnections = limits.maxConnections;
  const perPeer = limits.maxConnectionsPerPeer;
  if (perPeer === 0) return;
  const open = new Map<string, number>();
  // prependListener: refused sockets must not reach the HTTP servers.
  server.prependListener("connection", (socket: net.Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined) return;
    const count = open.get(address) ?? 0;
    if (count >= perPeer) {
      socket.destroy();
      return;
    }
    open.set(address, count + 1);
    socket.once("close", () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left === 0) open.delete(address);
      else open.set(address, left);
    });
  });
}

/**
 * Wraps the handler every request goes through, whatever the front-end:
 * counts HTTP/1.1 requests for graceful close (HTTP/2 streams are counted by
 * their session) and makes a repeated `authorization` header visible.
 */
function frontHandler(handler: RequestHandler, tracker: ConnectionTracker): RequestHandler {
  return (req, res) => {
    if (req.httpVersionMajor === 1) {
      tracker.trackHttp1Request(req as http.IncomingMessage, res as unknown as http.ServerResponse);
    }
    exposeRepeatedAuthorization(req.headers, req.rawHeaders);
    handler(req, res);
  };
}

/**
 * Node keeps only the first of several `authorization` headers in
 * `headers` (HTTP/1.1 and HTTP/2 alike), so everything reading it,
 * Connect included, would serve the first of two credentials: a proxy that
 * appends its own header without removing the client's would be bypassed.
 * This puts every value back, joined with ", " as a fetch `Headers` joins
 * them, which no bearer credential can match, so the call is refused as
 * TOKEN_MALFORMED in its own protocol by whatever decides it.
 *
 * @returns whether the header was repeated
 */
export function exposeRepeatedAuthorization(
  headers: http.IncomingHttpHeaders | http2.IncomingHttpHeaders,
  rawHeaders: readonly string[] | undefined,
): boolean {
  const values = authorizationValues(rawHeaders);
  if (values.length < 2) return false;
  headers.authorization = values.join(", ");
  return true;
}

/** Every `authorization` value of a raw header list (name, value, name, value...), in order. */
export function authorizationValues(rawHeaders: readonly string[] | undefined): string[] {
  const values: string[] = [];
  if (rawHeaders === undefined) return values;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    // Length first: most names are not 13 characters long.
    if (name.length === 13 && name.toLowerCase() === "authorization") values.push(rawHeaders[i + 1]!);
  }
  return values;
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

/** A server built by {@link listen}, with the timers it runs beside Node's. */
interface InnerServer {
  readonly server: net.Server;
  /** Stops interval timers that outlive no socket but would keep running. */
  stopTimers(): void;
}

/** HTTP/2 settings and options shared by the h2c and TLS servers. */
function http2Options(limits: Limits): http2.ServerOptions {
  return {
    // Streams a peer opens beyond the advertised bound are refused with
    // RST_STREAM REFUSED_STREAM by nghttp2 itself.
    settings: { maxConcurrentStreams: limits.maxConcurrentStreams },
  };
}

/** Applies Node's HTTP/1.1 timeouts to a server that serves HTTP/1.1 (plain or the TLS fallback). */
function setHttp1Timeouts(server: http.Server | http2.Http2SecureServer, limits: Limits): void {
  const target = server as unknown as {
    headersTimeout: number;
    requestTimeout: number;
    keepAliveTimeout: number;
    connectionsCheckingInterval: number;
  };
  target.headersTimeout = limits.headersTimeoutMs;
  target.requestTimeout = limits.requestTimeoutMs;
  // The secure server's HTTP/1.1 side reads this like http.Server does, but
  // Node leaves it unset there, which keeps idle HTTP/1.1 sockets forever.
  target.keepAliveTimeout = limits.keepAliveTimeoutMs;
  target.connectionsCheckingInterval = limits.checkIntervalMs;
}

/**
 * Ends HTTP/2 sessions that have had no open stream for `idleTimeoutMs`
 * with GOAWAY. Node's own session timeout counts any silence, so it would
 * also cut a quiet long-lived call; this one counts only time without calls.
 */
function closeIdleSessions(server: http2.Http2Server | http2.Http2SecureServer, idleTimeoutMs: number): void {
  if (idleTimeoutMs === 0) return;
  server.on("session", (session: http2.ServerHttp2Session) => {
    let open = 0;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      timer = setTimeout(() => {
        if (!session.closed && !session.destroyed) session.close();
      }, idleTimeoutMs);
      timer.unref();
    };
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      open++;
      clearTimeout(timer);
      stream.once("close", () => {
        if (--open === 0 && !session.closed && !session.destroyed) arm();
      });
    });
    session.once("close", () => clearTimeout(timer));
    arm();
  });
}

function createPlaintextServer(
  handler: RequestHandler,
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
  handler: RequestHandler,
  limits: Limits,
  streamPrefilter: ListenOptions["streamPrefilter"],
): http2.Http2Server {
  if (streamPrefilter === undefined) return http2.createServer(http2Options(limits), handler);
  const server = http2.createServer(http2Options(limits));
  server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    exposeRepeatedAuthorization(headers, rawHeaders);
    streamPrefilter(
      stream,
      headers,
      () => {
        const req = new http2.Http2ServerRequest(stream, headers, {}, rawHeaders);
        handler(req, new http2.Http2ServerResponse(stream));
      },
      rawHeaders,
    );
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
    clearTimeout(deadline);
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
  // A peer that half-closes before sending a request gets nothing.
  const onEnd = (): void => {
    socket.destroy();
  };
  socket.on("data", onData);
  socket.on("end", onEnd);
  // A deadline from accept, not an idle timeout: a peer trickling the
  // preface a byte at a time must not hold the socket either.
  const deadline = setTimeout(() => socket.destroy(), timeoutMs);
  deadline.unref();
  socket.once("close", () => clearTimeout(deadline));
}

function createTlsServer(
  options: TlsOptions,
  handler: RequestHandler,
  tracker: ConnectionTracker,
  limits: Limits,
): InnerServer {
  checkTls(options);
  const server = http2.createSecureServer(
    {
      ...http2Options(limits),
      cert: options.cert,
      key: options.key,
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
