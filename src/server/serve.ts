/**
 * The whole server on one port: the application's Connect services behind
 * the auth layer, gRPC health and reflection, `/.well-known/jwks.json`,
 * `/metrics`, an optional static page, CORS, the HTTP pre-filter, decision
 * logs and metrics, and a graceful close. `protoguard serve` is this plus
 * the example services; an application can call it with its own.
 */
import { readFile, stat } from "node:fs/promises";
import { extname, resolve, sep } from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { createConnectRouter, createContextValues, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { file_grpc_health_v1_health, Health } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionAlpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { createAuth, type Auth } from "../connect/auth.js";
import { peerContextValues, type ClientAddressOptions } from "../connect/peer.js";
import type { AccessTokenVerifier } from "../decide/decide.js";
import { createAuthPolicy } from "../policy/policy.js";
import type { RuleInit } from "../policy/rule.js";
import { createPrincipalSource } from "../principals/source.js";
import type { Database } from "../store/database.js";
import { jwksDocument } from "../token/jwks.js";
import type { Keyring } from "../token/keys.js";
import { withCors } from "./cors.js";
import { createHealth, healthConnectionKey, type HealthService } from "./health.js";
import { CONNECTION_LIMIT_DEFAULTS, listen, type ConnectionLimits, type RequestHandler, type TlsOptions } from "./listen.js";
import { createObservability } from "./observability.js";
import { createPrefilter, createStreamPrefilter, prefilterContextValues } from "./prefilter.js";
import { fileRegistryOf, reflectionFiles, registerReflection } from "./reflection.js";

/**
 * Services the server adds itself and serves to anyone, without the auth
 * layer: load balancers probe health without tokens, and reflection only
 * describes the schema (which `buf curl --schema` users hold anyway).
 */
export const SERVER_SERVICES: readonly DescService[] = [Health, ServerReflection, ServerReflectionAlpha];

/** Path of the public keys of an RS256/ES256 keyring, for other services that verify our tokens. */
export const JWKS_PATH = "/.well-known/jwks.json";
/**
 * Path of the Prometheus metrics. Served to anyone who reaches the port, like
 * most exporters: bind to a private interface (the default 127.0.0.1) or
 * keep the path off the public side of the proxy.
 */
export const METRICS_PATH = "/metrics";

/**
 * What {@link startServer} needs of a runtime: a `Runtime` from
 * `openRuntime` fits, and so do its parts alone (a test database and a
 * keyring). `close`, when present, is called last by the server's close:
 * pass a runtime the server should own, or parts without `close` to keep
 * them.
 */
export interface ServerRuntime {
  readonly database: Database;
  readonly keyring: Keyring;
  readonly verifier: AccessTokenVerifier;
  close?(): Promise<void>;
}

/**
 * Options of {@link startServer}. The connection bounds it extends
 * (timeouts, `maxConcurrentStreams`, `maxConnections`,
 * `maxConnectionsPerPeer`) apply to every listener, plaintext and TLS, with
 * the defaults documented on {@link ConnectionLimits}.
 */
export interface StartServerOptions extends ConnectionLimits {
  /** Database, keys and verifier. Required. */
  runtime: ServerRuntime;
  /**
   * Registers the application's services, as for `connectNodeAdapter({
   * routes })`. Every method's rule is validated before the port opens.
   * Required. Do not register grpc.health.v1 or grpc.reflection here: the
   * server adds them.
   */
  routes: (router: ConnectRouter) => void;
  /** TCP port; 0 picks a free one (read it from the result). Default 8080. */
  port?: number;
  /** Interface to bind. Default "127.0.0.1". */
  host?: string;
  /** PEM certificate and key: serve HTTPS (h2 and http/1.1 via ALPN). Default: plaintext h1 + h2c. */
  tls?: TlsOptions;
  /** Origins browsers may call from ("*" for any). Default: none, so no CORS headers at all. */
  corsOrigins?: readonly string[];
  /** Where decision and lifecycle logs go. Default: pino at info level on standard output. */
  logger?: Logger;
  /**
   * Registry behind `/metrics`, e.g. one the application adds its own metrics
   * to (then it is left to add the process metrics itself). Default: a new
   * one with the default process metrics.
   */
  registry?: Registry;
  /** How long in-flight calls may finish on close, in milliseconds. Default 10000. */
  graceMs?: number;
  /**
   * A directory served under `/` for GET requests no RPC route matches
   * (`/` serves `index.html`). Default: none, so such requests get 404.
   */
  staticDir?: string;
  /** Rule for methods without a method or service rule. Default `{ authenticated: true }`. */
  defaultRule?: RuleInit;
  /** Cached user lookups; 0 disables the cache. Default 10000. */
  principalCacheEntries?: number;
  /** Longest time a cached user lookup is trusted, in milliseconds. Default 30000. */
  principalCacheMaxAgeMs?: number;
  /**
   * Refuse unauthenticated calls at the HTTP layer, before Connect reads the
   * body (see `createPrefilter`); the gate and interceptor still enforce
   * every rule without it. Default true.
   */
  prefilter?: boolean;
  /** Largest request message accepted, in bytes. Default 4 MiB. */
  maxRequestBytes?: number;
  /**
   * How the client address of a call (`peerAddressKey`, for the Login
   * admission) is found: the socket's peer, or the forwarded header when
   * that peer is one of `trustedProxies`. Default: no trusted proxies.
   */
  clientAddress?: ClientAddressOptions;
  /**
   * Open grpc.health.v1.Health/Watch calls across all clients (Watch needs
   * no token and never ends); more are refused with RESOURCE_EXHAUSTED.
   * Default 1000. 0 means no limit.
   */
  maxWatchStreams?: number;
  /** Open health Watch calls on one connection; more are refused with RESOURCE_EXHAUSTED. Default 10. 0 means no limit. */
  maxWatchStreamsPerConnection?: number;
}

/** A running server, returned by {@link startServer}. */
export interface RunningServer {
  /** Base URL for clients, e.g. "http://127.0.0.1:8080". */
  readonly url: string;
  /** The port bound: differs from the requested one when that was 0. */
  readonly port: number;
  readonly host: string;
  /** The auth layer, with the planned rule of every application method. */
  readonly auth: Auth;
  /** The gRPC health service, e.g. to report a dependency NOT_SERVING. */
  readonly health: HealthService;
  /** The application's services, as found in `routes`. */
  readonly services: readonly DescService[];
  /**
   * Graceful stop: reports NOT_SERVING to health watchers, stops accepting,
   * lets in-flight calls finish within `graceMs`, then stops the user cache
   * and closes the runtime if it has `close`. Idempotent.
   */
  close(): Promise<void>;
}

const DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024;

/**
 * Starts the server: validates every rule, then listens. On any start-up
 * failure (malformed rule, missing static directory, port in use, bad TLS
 * material) it rejects with a readable error and leaves nothing open except
 * the runtime, which stays the caller's to close.
 *
 * @example
 * ```ts
 * const runtime = await openRuntime(loadConfig(process.env));
 * const server = await startServer({
 *   runtime,
 *   routes: (router) => router.service(ProductService, productImpl),
 *   port: 8080,
 *   corsOrigins: ["https://app.example.com"],
 * });
 * console.log(`listening on ${server.url}`);
 * onShutdownSignals(() => server.close());
 * ```
 *
 * @throws {PolicyError} naming every method whose rule is malformed.
 */
export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const { runtime } = options;
  const peerValues = peerContextValues(options.clientAddress);
  const services = servicesOf(options.routes);
  // Validate before opening anything, so a bad rule costs no cleanup.
  const policy = createAuthPolicy({
    services,
    ...(options.defaultRule !== undefined && { defaultRule: options.defaultRule }),
  });
  const staticRoot = options.staticDir === undefined ? undefined : await staticDirectory(options.staticDir);
  const observability = createObservability({
    ...(options.logger !== undefined && { logger: options.logger }),
    // A registry of the caller's may hold the process metrics already, and
    // registering them twice throws.
    ...(options.registry !== undefined && { registry: options.registry, defaultMetrics: false }),
  });
  const { logger, registry } = observability;

  const principals = await createPrincipalSource({
    database: runtime.database,
    ...(options.principalCacheEntries !== undefined && { maxEntries: options.principalCacheEntries }),
    ...(options.principalCacheMaxAgeMs !== undefined && { maxAgeMs: options.principalCacheMaxAgeMs }),
  });
  try {
    const auth = createAuth({
      policy,
      verifier: runtime.verifier,
      principals,
      onDecision: observability.onDecision,
    });
    const health = createHealth({
      services: Object.fromEntries(services.map((service) => [service.typeName, "SERVING" as const])),
      ...(options.maxWatchStreams !== undefined && { maxWatchStreams: options.maxWatchStreams }),
      ...(options.maxWatchStreamsPerConnection !== undefined && {
        maxWatchStreamsPerConnection: options.maxWatchStreamsPerConnection,
      }),
    });
    const readMaxBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    const notFound: RequestHandler = (_req, res) => plain(res, 404, "not found");

    const connectHandler = connectNodeAdapter({
      routes: options.routes,
      interceptors: [auth.interceptor],
      requestGate: auth.requestGate,
      contextValues: (req) => peerValues(req, prefilterContextValues(req)),
      readMaxBytes,
      fallback: staticRoot === undefined ? notFound : staticFiles(staticRoot),
    });
    const prefilter = options.prefilter ?? true;
    const appHandler: RequestHandler = prefilter
      ? createPrefilter({ auth, services, next: connectHandler })
      : connectHandler;
    // A router of its own, without the auth layer: it holds nothing but
    // health and reflection, so no path can reach an application method
    // through it, whatever the request says.
    const serverHandler = connectNodeAdapter({
      routes(router) {
        health.register(router);
        registerReflection(router, {
          registry: fileRegistryOf(...services.map((s) => s.file), file_grpc_health_v1_health, ...reflectionFiles),
          services: [...services.map((s) => s.typeName), Health.typeName, ServerReflection.typeName],
        });
      },
      // Health counts Watch calls per connection: the HTTP/2 session, or the socket.
      contextValues: (req) =>
        createContextValues().set(healthConnectionKey, "stream" in req ? req.stream.session : req.socket),
      readMaxBytes,
      fallback: notFound,
    });
    const serverServiceNames = new Set(SERVER_SERVICES.map((s) => s.typeName));
    const jwks = runtime.keyring.publicJwks().keys.length > 0 ? jwksDocument(runtime.keyring) : undefined;

    const dispatch: RequestHandler = (req, res) => {
      const path = pathOf(req.url);
      if (path === JWKS_PATH) {
        if (jwks === undefined) return plain(res, 404, "no public keys: tokens are signed with a shared secret");
        if (!isRead(req.method)) return plain(res, 405, "method not allowed", { allow: "GET, HEAD" });
        res.writeHead(200, { ...jwks.headers, "content-length": Buffer.byteLength(jwks.body) });
        endBody(res, req.method, jwks.body);
        return;
      }
      if (path === METRICS_PATH) {
        if (!isRead(req.method)) return plain(res, 405, "method not allowed", { allow: "GET, HEAD" });
        registry.metrics().then(
          (body) => {
            res.writeHead(200, { "content-type": registry.contentType });
            endBody(res, req.method, body);
          },
          (error: unknown) => {
            logger.error({ error: error instanceof Error ? error.message : String(error) }, "metrics failed");
            plain(res, 500, "metrics unavailable");
          },
        );
        return;
      }
      const service = serviceOfPath(path);
      if (service !== undefined && serverServiceNames.has(service)) return serverHandler(req, res);
      appHandler(req, res);
    };
    const handler =
      options.corsOrigins !== undefined && options.corsOrigins.length > 0
        ? withCors(dispatch, { origins: [...options.corsOrigins] })
        : dispatch;

    const listening = await listen({
      handler,
      port: options.port ?? 8080,
      ...(options.host !== undefined && { host: options.host }),
      ...(options.tls !== undefined && { tls: options.tls }),
      ...connectionLimitsOf(options),
      // Plaintext HTTP/2 streams are judged before Node builds request
      // objects for them; the request-level pre-filter covers the rest.
      ...(prefilter && { streamPrefilter: createStreamPrefilter({ auth, services }) }),
    });
    logger.info({ url: listening.url, services: services.map((s) => s.typeName) }, "protoguard listening");

    const graceMs = options.graceMs ?? 10_000;
    let closing: Promise<void> | undefined;
    const close = async () => {
      health.shutdown();
      try {
        await listening.close(graceMs);
      } finally {
        try {
          await principals.close();
        } finally {
          await runtime.close?.();
        }
      }
      logger.info("protoguard stopped");
    };
    return {
      url: listening.url,
      port: listening.port,
      host: listening.host,
      auth,
      health,
      services,
      close: () => (closing ??= close()),
    };
  } catch (error) {
    await principals.close();
    throw error;
  }
}

/** The {@link ConnectionLimits} set in `options`, for `listen` (which applies the defaults). */
function connectionLimitsOf(options: StartServerOptions): ConnectionLimits {
  const limits: ConnectionLimits = {};
  for (const name of Object.keys(CONNECTION_LIMIT_DEFAULTS) as (keyof ConnectionLimits)[]) {
    const value = options[name];
    if (value !== undefined) limits[name] = value;
  }
  return limits;
}

/** The distinct services `routes` registers, found by letting it register on a scratch router. */
function servicesOf(routes: (router: ConnectRouter) => void): DescService[] {
  const probe = createConnectRouter();
  routes(probe);
  return [...new Set(probe.handlers.map((handler) => handler.service))];
}

/** The URL path without the query string. */
function pathOf(url: string | undefined): string {
  if (url === undefined) return "/";
  const query = url.indexOf("?");
  return query === -1 ? url : url.slice(0, query);
}

/** "pkg.Service" of an RPC path "/pkg.Service/Method", else undefined. */
function serviceOfPath(path: string): string | undefined {
  const slash = path.indexOf("/", 1);
  return slash === -1 ? undefined : path.slice(1, slash);
}

function isRead(method: string | undefined): boolean {
  return method === "GET" || method === "HEAD";
}

type NodeResponse = Parameters<RequestHandler>[1];

/** Ends with `body`, or with no body for HEAD (the headers already describe it). */
function endBody(res: NodeResponse, method: string | undefined, body: string | Uint8Array): void {
  if (method === "HEAD") res.end();
  else res.end(body);
}

function plain(res: NodeResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  const body = `${text}\n`;
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": String(Buffer.byteLength(body)),
    ...headers,
  });
  res.end(body);
}

async function staticDirectory(dir: string): Promise<string> {
  const root = resolve(dir);
  const info = await stat(root).catch(() => undefined);
  if (!info?.isDirectory()) throw new Error(`static directory ${root} does not exist or is not a directory`);
  return root;
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
  ".wasm": "application/wasm",
  ".woff2": "font/woff2",
};

/**
 * Serves files under `root` for GET and HEAD. Paths are resolved and must
 * stay inside `root`, so `..` and encoded variants cannot reach other
 * files. The page is small, so files are read whole rather than streamed.
 */
function staticFiles(root: string): RequestHandler {
  return (req, res) => {
    if (!isRead(req.method)) return plain(res, 404, "not found");
    let path: string;
    try {
      path = decodeURIComponent(pathOf(req.url));
    } catch {
      return plain(res, 400, "bad path");
    }
    if (path.includes("\0")) return plain(res, 404, "not found");
    if (path.endsWith("/")) path += "index.html";
    const file = resolve(root, `.${path}`);
    if (!file.startsWith(root + sep)) return plain(res, 404, "not found");
    readFile(file).then(
      (body) => {
        res.writeHead(200, {
          "content-type": CONTENT_TYPES[extname(file).toLowerCase()] ?? "application/octet-stream",
          "content-length": String(body.length),
          "x-content-type-options": "nosniff",
          // The page changes with the server; revalidate instead of caching stale scripts.
          "cache-control": "no-cache",
        });
        endBody(res, req.method, body);
      },
      () => plain(res, 404, "not found"),
    );
  };
}
