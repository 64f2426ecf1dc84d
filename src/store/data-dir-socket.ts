/**
 * Sharing an embedded (PGlite) database with other local processes.
 *
 * PGlite is one PostgreSQL backend inside one process, and its data
 * directory has one writer (see `data-dir-lock.ts`). So that the CLI can
 * still create users and grant permissions while `protoguard serve` (or an
 * app) holds the directory, the holder serves its PGlite over the PostgreSQL
 * wire protocol on a Unix socket inside the PGlite directory,
 * {@link DATA_DIR_SOCKET_FILE} (mode 0600: only the directory's owner, who
 * can read the database files anyway, can connect). Another process that
 * finds the directory locked connects there with postgres.js instead of
 * failing ({@link connectToDataDirHolder}).
 *
 * The holder keeps its own queries and a socket client's apart: a client's
 * work runs under PGlite's transaction mutex from its first message until
 * PGlite answers ReadyForQuery idle, so neither ever runs inside the other's
 * transaction. A client that leaves mid-transaction is rolled back.
 *
 * Notifications: PGlite has one session, LISTENing for the holder. A
 * NOTIFY committed by a socket client (the invalidation triggers) comes back
 * in that client's raw protocol output, which PGlite's own `listen`
 * callbacks never see. So the holder picks NotificationResponse messages out
 * of the output and sends each again with `pg_notify` on its own path
 * (which reaches every `pg.listen` subscriber, the principal cache among
 * them) before the client receives its answer: when the CLI's `grant`
 * returns, the server's caches have already dropped the user.
 *
 * The wire handling is ours rather than `@electric-sql/pglite-socket`'s,
 * whose exact-version peer dependency on PGlite would refuse to install next
 * to ours, and which neither excludes the holder's own queries nor passes
 * notifications on.
 */
import { chmodSync, existsSync, mkdtempSync, renameSync, rmdirSync, unlinkSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import type { PGlite } from "@electric-sql/pglite";
import postgres from "postgres";
import { postgresDatabase, type Database } from "./database-handle.js";

/** Name of the socket inside a PGlite data directory (PostgreSQL's own name, so `psql -h <dir>` finds it). */
export const DATA_DIR_SOCKET_FILE = ".s.PGSQL.5432";

/**
 * How long a socket client may keep a transaction open without sending
 * anything before it is rolled back and disconnected: meanwhile the holder
 * cannot run a single query.
 */
const IDLE_IN_TRANSACTION_MS = 10_000;

/** Longest path a Unix socket may have (Linux `sun_path` is 108 bytes, macOS 104). */
const MAX_SOCKET_PATH = 100;

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const PROTOCOL_3 = 196608;

/** A running share; `close()` stops it and removes the socket. */
export interface DataDirShare {
  /** The socket's path. */
  readonly path: string;
  /** Disconnects every client (rolling back what they left open) and removes the socket. Idempotent. */
  close(): Promise<void>;
}

/**
 * Serves `pg` on {@link DATA_DIR_SOCKET_FILE} in `dir`, which the caller
 * holds (its lock), so a socket file found there is a dead holder's and is
 * replaced. Resolves undefined where Unix sockets are not available (Windows)
 * or the path is too long for one: the directory then stays unshared and
 * other processes are refused as before.
 */
export async function shareDataDir(pg: PGlite, dir: string): Promise<DataDirShare | undefined> {
  const path = join(dir, DATA_DIR_SOCKET_FILE);
  if (process.platform === "win32" || Buffer.byteLength(path) > MAX_SOCKET_PATH) return undefined;
  unlinkIfExists(path);
  // Bound in a private directory, made 0600, then moved into place: no other
  // user ever sees the socket with looser permissions.
  const staging = mkdtempSync(join(dir, ".s.staging-"));
  const staged = join(staging, "s");
  const clients = new Set<Connection>();
  const server = createServer((socket) => {
    const connection = new Connection(pg, socket, () => clients.delete(connection));
    clients.add(connection);
  });
  try {
    await listen(server, staged);
    chmodSync(staged, 0o600);
    renameSync(staged, path);
  } catch {
    server.close();
    unlinkIfExists(staged);
    return undefined;
  } finally {
    try {
      rmdirSync(staging);
    } catch {
      // Not empty only if the rename failed; the socket file was removed above.
    }
  }
  server.unref();
  let closing: Promise<void> | undefined;
  return {
    path,
    close: () =>
      (closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        unlinkIfExists(path);
        await Promise.all([...clients].map((client) => client.end()));
        await closed;
      })()),
  };
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function unlinkIfExists(path: string): void {
  try {
    if (existsSync(path)) unlinkSync(path);
  } catch {
    // Gone meanwhile, or not ours to remove: listen() reports what matters.
  }
}

/** One socket client: its messages, in order, each run on PGlite. */
class Connection {
  private input = Buffer.alloc(0);
  private startedUp = false;
  /** Set while this client holds PGlite's transaction mutex; calling it releases. */
  private release: (() => void) | undefined;
  private chain: Promise<void> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | undefined;
  private ended = false;
  private readonly output = new BackendParser();
  /** Notifications seen in a transaction not yet over. */
  private readonly notifications: [string, string][] = [];

  constructor(
    private readonly pg: PGlite,
    private readonly socket: Socket,
    private readonly onGone: () => void,
  ) {
    socket.on("data", (chunk: Buffer) => {
      this.input = Buffer.concat([this.input, chunk]);
      this.enqueue(() => this.drain());
    });
    socket.on("error", () => void this.end());
    socket.on("close", () => void this.end());
  }

  /** Stops the client: rolls back what it left open, frees PGlite, closes the socket. */
  end(): Promise<void> {
    if (!this.ended) {
      this.ended = true;
      clearTimeout(this.idleTimer);
      this.socket.destroy();
      this.enqueue(() => this.cleanUp());
      this.chain = this.chain.then(() => this.onGone());
    }
    return this.chain;
  }

  private enqueue(step: () => Promise<void>): void {
    this.chain = this.chain.then(step).catch(() => {
      this.socket.destroy();
      if (!this.ended) void this.end();
    });
  }

  private async cleanUp(): Promise<void> {
    if (this.release === undefined) return;
    try {
      if (!this.pg.closed && this.pg.isInTransaction()) {
        await this.pg._runExclusiveQuery(() => this.pg.execProtocolRaw(simpleQuery("ROLLBACK")));
      }
    } finally {
      this.unlock();
    }
  }

  /** Runs every complete message in the input. */
  private async drain(): Promise<void> {
    while (!this.ended) {
      const message = this.nextMessage();
      if (message === undefined) return;
      await this.handle(message);
    }
  }

  private nextMessage(): Buffer | undefined {
    const input = this.input;
    let length: number;
    if (!this.startedUp) {
      if (input.length < 4) return undefined;
      length = input.readInt32BE(0);
    } else {
      if (input.length < 5) return undefined;
      length = input.readInt32BE(1) + 1;
    }
    if (length < 4 || input.length < length) return undefined;
    this.input = input.subarray(length);
    return input.subarray(0, length);
  }

  private async handle(message: Buffer): Promise<void> {
    if (!this.startedUp) {
      const code = message.length >= 8 ? message.readInt32BE(4) : 0;
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
        this.socket.write("N"); // no encryption on a local socket
        return;
      }
      if (code !== PROTOCOL_3) {
        // A CancelRequest (PGlite has no backend to signal) or garbage.
        void this.end();
        return;
      }
      this.startedUp = true;
    } else if (message[0] === 0x58 /* X: Terminate */) {
      void this.end();
      return;
    }
    if (this.pg.closed) {
      void this.end();
      return;
    }
    clearTimeout(this.idleTimer);
    if (this.release === undefined) await this.lock();
    const chunks: Uint8Array[] = [];
    const notifications: [string, string][] = [];
    let idle = false;
    await this.pg._runExclusiveQuery(() =>
      this.pg.execProtocolRawStream(new Uint8Array(message), {
        onRawData: (data) => {
          chunks.push(data.slice());
          for (const event of this.output.push(data)) {
            if (event.kind === "ready") idle = event.status === "I";
            else notifications.push([event.channel, event.payload]);
          }
        },
      }),
    );
    this.notifications.push(...notifications);
    // Still holding PGlite (mid-transaction): the client has a while to go on.
    if (!idle) this.armIdleTimer();
    if (idle) {
      this.unlock();
      // Before the client sees its answer (a COMMIT's, say), the holder's
      // listeners hear what it changed.
      for (const [channel, payload] of this.notifications.splice(0)) {
        await this.pg.query("select pg_notify($1, $2)", [channel, payload]);
      }
    }
    if (!this.socket.destroyed) for (const chunk of chunks) this.socket.write(chunk);
  }

  /** Waits for PGlite's transaction mutex and keeps it until {@link unlock}. */
  private lock(): Promise<void> {
    return new Promise<void>((locked, failed) => {
      this.pg
        ._runExclusiveTransaction(
          () =>
            new Promise<void>((release) => {
              this.release = release;
              locked();
            }),
        )
        .catch(failed);
    });
  }

  private unlock(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const release = this.release;
    this.release = undefined;
    release?.();
  }

  private armIdleTimer(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => void this.end(), IDLE_IN_TRANSACTION_MS);
    this.idleTimer.unref();
  }
}

/** A simple-protocol Query message. */
function simpleQuery(text: string): Uint8Array {
  const body = Buffer.from(`${text}\0`, "utf8");
  const message = Buffer.alloc(5 + body.length);
  message[0] = 0x51; // Q
  message.writeInt32BE(4 + body.length, 1);
  body.copy(message, 5);
  return message;
}

type BackendEvent =
  | { readonly kind: "ready"; readonly status: string }
  | { readonly kind: "notification"; readonly channel: string; readonly payload: string };

/** Splits PGlite's output into messages, reporting ReadyForQuery and NotificationResponse. */
class BackendParser {
  private pending = Buffer.alloc(0);

  push(data: Uint8Array): BackendEvent[] {
    this.pending = this.pending.length === 0 ? Buffer.from(data) : Buffer.concat([this.pending, data]);
    const events: BackendEvent[] = [];
    while (this.pending.length >= 5) {
      const length = this.pending.readInt32BE(1) + 1;
      if (this.pending.length < length) break;
      const type = this.pending[0];
      const body = this.pending.subarray(5, length);
      if (type === 0x5a /* Z */) {
        events.push({ kind: "ready", status: String.fromCharCode(body[0] ?? 0x49) });
      } else if (type === 0x41 /* A */) {
        const channelEnd = body.indexOf(0, 4);
        const payloadEnd = body.indexOf(0, channelEnd + 1);
        events.push({
          kind: "notification",
          channel: body.toString("utf8", 4, channelEnd),
          payload: body.toString("utf8", channelEnd + 1, payloadEnd),
        });
      }
      this.pending = this.pending.subarray(length);
    }
    if (this.pending.length === 0) this.pending = Buffer.alloc(0);
    else this.pending = Buffer.from(this.pending);
    return events;
  }
}

/**
 * Connects to the process holding the PGlite directory `dir` over its
 * {@link DATA_DIR_SOCKET_FILE}: a {@link Database} on postgres.js with two
 * connections. Resolves undefined when there is no socket, or nobody answers
 * on it (a holder that does not share, or one mid-shutdown).
 */
export async function connectToDataDirHolder(dir: string): Promise<Database | undefined> {
  const path = join(dir, DATA_DIR_SOCKET_FILE);
  if (process.platform === "win32" || !existsSync(path)) return undefined;
  const sql = postgres({
    path,
    user: "postgres",
    database: "postgres",
    // Two, as migrateDatabase needs (one holds its advisory lock); the holder
    // runs one client message at a time anyway.
    max: 2,
    // Unnamed statements only: the holder's one session outlives this client.
    prepare: false,
    connect_timeout: 5,
    onnotice: () => {},
  });
  try {
    await sql`select 1`;
  } catch {
    await sql.end({ timeout: 0 });
    return undefined;
  }
  return postgresDatabase(sql);
}
