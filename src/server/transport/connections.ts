/**
 * Connection tracking for graceful shutdown of the one-port server: stop accepting, let in-flight
 * calls finish within a grace period, then cut whatever is left.
 *
 * Node's own `server.close()` is not enough here: it waits for every socket,
 * and idle HTTP/1.1 keep-alive sockets and HTTP/2 sessions never end on their
 * own, so a close without help would always take the full grace period (or
 * forever). The tracker knows, per connection, whether anything is in flight.
 */
import type * as http from "node:http";
import type * as http2 from "node:http2";
import type * as net from "node:net";

/** The wire protocol a connection turned out to speak; "pending" until known. */
export type ConnectionProtocol = "pending" | "h1" | "h2";

interface Connection {
  /** The TCP socket the listener accepted; destroying it ends everything. */
  readonly raw: net.Socket;
  /** The socket HTTP runs on: the raw socket in plaintext, the TLSSocket with TLS. */
  leaf: net.Socket | undefined;
  protocol: ConnectionProtocol;
  /** HTTP/1.1 requests whose response has not closed yet. */
  active: number;
}

/**
 * Which side of a TCP connection this is, as seen by the server. A TLSSocket
 * reports the same peer as the raw socket under it, which is the only public
 * way to pair the two.
 */
function peerKey(socket: net.Socket): string | undefined {
  if (socket.remoteAddress === undefined || socket.remotePort === undefined) return undefined;
  return `${socket.remoteAddress}|${socket.remotePort}`;
}

/**
 * Follows every connection of one listening server so that {@link close}
 * can end idle ones at once and busy ones when their last call completes.
 *
 * Feed it from the server's events: {@link addSocket} for every accepted TCP
 * socket, {@link classify} once the protocol is known, {@link addSession}
 * for every HTTP/2 session and {@link trackHttp1Request} for every HTTP/1.1
 * request. `listen()` does all of this; use the class directly only when
 * building a server by hand.
 */
export class ConnectionTracker {
  readonly #byRaw = new Map<net.Socket, Connection>();
  readonly #byLeaf = new Map<net.Socket, Connection>();
  readonly #byPeer = new Map<string, Connection>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  #closing = false;
  #closed: Promise<void> | undefined;

  /** True once {@link close} has been called. */
  get closing(): boolean {
    return this.#closing;
  }

  /** Number of open TCP connections, whatever their state. */
  get size(): number {
    return this.#byRaw.size;
  }

  /**
   * Starts following an accepted TCP socket. With `leaf` the socket is
   * already the one HTTP will run on (plaintext); without it, the TLS socket
   * is paired later by {@link classify}.
   */
  addSocket(raw: net.Socket, leaf?: net.Socket): void {
    const connection: Connection = { raw, leaf, protocol: "pending", active: 0 };
    this.#byRaw.set(raw, connection);
    if (leaf) this.#byLeaf.set(leaf, connection);
    const key = peerKey(raw);
    if (key !== undefined) this.#byPeer.set(key, connection);
    raw.once("close", () => {
      this.#byRaw.delete(raw);
      if (connection.leaf) this.#byLeaf.delete(connection.leaf);
      if (key !== undefined && this.#byPeer.get(key) === connection) this.#byPeer.delete(key);
    });
    // A connection that arrives while closing lost a race with server.close().
    if (this.#closing) raw.destroy();
  }

  /**
   * Records the protocol of a connection once known: after the HTTP/2
   * preface sniff in plaintext, after ALPN with TLS (pass the TLSSocket).
   */
  classify(leaf: net.Socket, protocol: "h1" | "h2"): void {
    let connection = this.#byLeaf.get(leaf);
    if (!connection) {
      const key = peerKey(leaf);
      connection = key === undefined ? undefined : this.#byPeer.get(key);
      if (!connection) return;
      connection.leaf = leaf;
      this.#byLeaf.set(leaf, connection);
    }
    connection.protocol = protocol;
    if (this.#closing && protocol === "h1" && connection.active === 0) connection.raw.destroy();
  }

  /** Follows an HTTP/2 session: closing sends GOAWAY and lets its streams finish. */
  addSession(session: http2.ServerHttp2Session): void {
    this.#sessions.add(session);
    session.once("close", () => this.#sessions.delete(session));
    if (this.#closing) session.close();
  }

  /**
   * Counts an HTTP/1.1 request as in flight until its response closes, so
   * that a closing server ends the socket right after the last response
   * instead of cutting it mid-call or leaving it open for keep-alive.
   */
  trackHttp1Request(req: http.IncomingMessage, res: http.ServerResponse): void {
    const connection = this.#byLeaf.get(req.socket);
    if (!connection) return;
    connection.active++;
    // Tell the client not to send another request on this socket.
    if (this.#closing && !res.headersSent) res.setHeader("connection", "close");
    res.once("close", () => {
      connection.active--;
      if (this.#closing && connection.active === 0) {
        // end() rather than destroy(): the response bytes may still be queued.
        connection.leaf?.end();
      }
    });
  }

  /**
   * Stops `server` accepting, closes idle connections at once, sends GOAWAY
   * on every HTTP/2 session, and waits for in-flight calls to finish. After
   * `graceMs` every remaining session and socket is destroyed, which aborts
   * their calls. Resolves once every connection is gone. Calling it again
   * returns the same promise.
   *
   * @param server the listening server (a `net.Server` or an HTTP/2 secure server)
   * @param graceMs how long in-flight calls may take; default 10000 ms
   */
  close(server: net.Server, graceMs = 10_000): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#closing = true;
    this.#closed = new Promise<void>((resolve) => {
      // net.Server.close() calls back only once every accepted socket closed,
      // including those handed to the inner HTTP servers.
      const timer = setTimeout(() => this.destroyAll(), Math.max(0, graceMs));
      server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      for (const session of this.#sessions) session.close();
      for (const connection of this.#byRaw.values()) {
        const idleHttp1 = connection.protocol === "h1" && connection.active === 0;
        if (connection.protocol === "pending" || idleHttp1) connection.raw.destroy();
      }
    });
    return this.#closed;
  }

  /** Destroys every session and socket now, aborting their calls. */
  destroyAll(): void {
    for (const session of this.#sessions) session.destroy();
    for (const connection of this.#byRaw.values()) {
      connection.leaf?.destroy();
      connection.raw.destroy();
    }
  }
}
