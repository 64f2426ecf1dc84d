/**
 * The time and size bounds of every connection, whatever the protocol, and
 * how they are applied to Node's servers: connection caps, HTTP/1.1
 * timeouts, HTTP/2 stream limits and idle sessions.
 */
import type * as http from "node:http";
import type * as http2 from "node:http2";
import type * as net from "node:net";

/**
 * Time and size bounds of every connection, whatever the protocol: what keeps
 * clients that send slowly, idle, or open many calls from holding the
 * server's sockets and memory. Options of `listen` and `startServer`;
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

/** {@link ConnectionLimits} with every default applied, checked once at start. */
export interface Limits extends Required<ConnectionLimits> {
  prefaceTimeoutMs: number;
  /** How often HTTP/1.1 connections are checked against the header and request timeouts. */
  checkIntervalMs: number;
}

/**
 * {@link ConnectionLimits} with every default applied and checked.
 *
 * @throws {RangeError} when a bound is out of range, or the header timeout exceeds the request timeout.
 */
export function resolveLimits(options: ConnectionLimits & { prefaceTimeoutMs?: number | undefined }): Limits {
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
export function limitConnections(server: net.Server, limits: Limits): void {
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

/** HTTP/2 settings and options shared by the h2c and TLS servers. */
export function http2Options(limits: Limits): http2.ServerOptions {
  return {
    // Streams a peer opens beyond the advertised bound are refused with
    // RST_STREAM REFUSED_STREAM by nghttp2 itself.
    settings: { maxConcurrentStreams: limits.maxConcurrentStreams },
  };
}

/** Applies Node's HTTP/1.1 timeouts to a server that serves HTTP/1.1 (plain or the TLS fallback). */
export function setHttp1Timeouts(server: http.Server | http2.Http2SecureServer, limits: Limits): void {
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
export function closeIdleSessions(server: http2.Http2Server | http2.Http2SecureServer, idleTimeoutMs: number): void {
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
