/**
 * The whole server on one port: the application's Connect services behind
 * the auth layer, gRPC health and reflection, `/.well-known/jwks.json`,
 * `/metrics`, an optional static page, CORS, the HTTP pre-filter, decision
 * logs and metrics, and a graceful close. `protoguard serve` is this plus
 * the example services; an application can call it with its own.
 *
 * {@link startServer} only assembles the parts: the routes (`dispatch.ts`),
 * the listener (`transport/`), the server's own services (`services/`),
 * the pre-filter (`prefilter/`), static files and observability (`observe/`).
 */
import cluster from "node:cluster";
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { createAuth, type Auth, type AuthOptions } from "../connect/auth.js";
import { createCertificatePrincipalSource, type CachedCertificatePrincipalSource } from "../principals/certificates.js";
import { createApiKeySource, type CachedApiKeySource } from "../principals/api-keys.js";
import type { AuthorizeFallback, ResourceLoaders } from "../decide/app-callbacks.js";
import { peerContextValues, type ClientAddressOptions } from "../connect/peer.js";
import { requestIdContextValues } from "../connect/request-id.js";
import { startAuditRetention } from "./audit-retention.js";
import { clientCertificateContextValues } from "../credential/client-certificate.js";
import type { AccessTokenVerifier } from "../decide/decide.js";
import { servicesOf } from "../connect/routes.js";
import { createAuthPolicy, type AuthPolicy } from "../policy/policy.js";
import type { RuleInit } from "../policy/rule.js";
import { createPrincipalSource } from "../principals/source.js";
import { createIdentityResolver } from "../principals/identities.js";
import { resolveTrustedIssuers, type TrustedIssuer, type TrustedIssuerInit } from "../identity/trusted-issuers.js";
import type { GatewayOptions } from "../identity/gateway.js";
import type { Database } from "../store/database-handle.js";
import type { Keyring } from "../token/keys.js";
import {
  loadAdminConsole,
  serveAdminConsole,
  type AdminConsoleFiles,
  type AdminConsoleOptions,
} from "./admin-console.js";
import type { PasswordHasher } from "../lifecycle/passwords.js";
import type { ServedPolicy } from "../admin/policy-table.js";
import { withAdminService, type AdminServiceSettings } from "./admin-routes.js";
import { withCors } from "./cors.js";
import { createDispatch } from "./dispatch.js";
import { plain, type NodeHandler } from "./http.js";
import {
  registerCacheMetrics,
  registerRateLimitMetrics,
  registerRevocationMetrics,
  type CacheCounts,
} from "./observe/metrics.js";
import { createRateLimiter, type RateLimiter, type RateLimiterOptions } from "../connect/rate-limit.js";
import { createObservability } from "./observe/observability.js";
import { createPrefilter, createStreamPrefilter, prefilterContextValues } from "./prefilter/prefilter.js";
import { createHealth, type HealthService } from "./services/health.js";
import { watchDatabaseHealth, type DatabaseHealthOptions } from "./services/database-health.js";
import type { SubscribeOptions } from "../store/invalidation.js";
import { serverServicesHandler } from "./services/server-services.js";
import { staticDirectory, staticFiles } from "./static-files.js";
import { CONNECTION_LIMIT_DEFAULTS, type ConnectionLimits } from "./transport/limits.js";
import { listen } from "./transport/listen.js";
import type { TlsOptions } from "./transport/tls.js";
import { ServerError } from "./transport/errors.js";
import {
  isServerWorker,
  poolMetrics,
  reportWorkerFailure,
  resolveWorkers,
  serveAsWorker,
  startWorkers,
  type MetricsSource,
  type ServerWorkers,
  type WorkersOption,
} from "./workers.js";

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
  /** Identity providers trusted besides the verifier's own issuer (`openRuntime` reads them). Default: none. */
  readonly trustedIssuers?: readonly TrustedIssuerInit[] | readonly TrustedIssuer[];
  /**
   * Hashes the passwords and client secrets AdminService sets (`openRuntime` makes one from
   * `PROTOGUARD_SCRYPT_LOG_N`). Default: `createPasswordHasher()`.
   */
  readonly passwordHasher?: PasswordHasher;
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
  port?: number | undefined;
  /** Interface to bind. Default "127.0.0.1". */
  host?: string | undefined;
  /**
   * PEM certificate and key: serve HTTPS (h2 and http/1.1 via ALPN). With
   * `clientCa`, verified client certificates identify service accounts (see
   * {@link TlsOptions.clientCa}). Default: plaintext h1 + h2c.
   */
  tls?: TlsOptions | undefined;
  /** Origins browsers may call from ("*" for any). Default: none, so no CORS headers at all. */
  corsOrigins?: readonly string[] | undefined;
  /** Where decision and lifecycle logs go. Default: pino at info level on standard output. */
  logger?: Logger | undefined;
  /**
   * Registry behind `/metrics`, e.g. one the application adds its own metrics
   * to (then it is left to add the process metrics itself). Default: a new
   * one with the default process metrics.
   */
  registry?: Registry;
  /** How long in-flight calls may finish on close, in milliseconds. Default 10000. */
  graceMs?: number | undefined;
  /**
   * A directory served under `/` for GET requests no RPC route matches
   * (`/` serves `index.html`). Default: none, so such requests get 404.
   */
  staticDir?: string | undefined;
  /** Rule for methods without a method or service rule. Default `{ authenticated: true }`. */
  defaultRule?: RuleInit;
  /**
   * Loaders of what rule conditions call `resource`, by method; see
   * `createAuth`'s option. Checked against the rules before the port opens.
   * Default: none.
   */
  resources?: ResourceLoaders;
  /** The code fallback called after rules and conditions pass; see `createAuth`'s option. Default: none. */
  authorize?: AuthorizeFallback;
  /** Cached user lookups; 0 disables the cache. Default 10000. */
  principalCacheEntries?: number | undefined;
  /** Longest time a cached user lookup is trusted, in milliseconds. Default 30000. */
  principalCacheMaxAgeMs?: number | undefined;
  /**
   * Refuse unauthenticated calls at the HTTP layer, before Connect reads the
   * body (see `createPrefilter`); the gate and interceptor still enforce
   * every rule without it. Default true.
   */
  prefilter?: boolean | undefined;
  /** Largest request message accepted, in bytes. Default 4 MiB. */
  maxRequestBytes?: number | undefined;
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
  /**
   * External identity providers whose access tokens are accepted besides the runtime
   * verifier's (see `createAuth`'s `trustedIssuers`; `PROTOGUARD_TRUSTED_ISSUERS` names a JSON
   * file of them for `openRuntime`). Their subjects are linked to (or provisioned as) users of
   * the runtime's database. Default: none beyond the runtime verifier's own.
   */
  trustedIssuers?: readonly TrustedIssuerInit[] | readonly TrustedIssuer[] | undefined;
  /**
   * Gateway mode: take verified claims from a trusted gateway's header (see `createAuth`'s
   * `gateway` and `GatewayOptions`). The peer checked is the socket's, never a forwarded
   * address. Default: off.
   */
  gateway?: GatewayOptions | undefined;
  /**
   * Audit events older than this many days are pruned, soon after start and then hourly
   * (`startAuditRetention`); 0 keeps them for ever. Default 90.
   */
  auditRetentionDays?: number | undefined;
  /**
   * Server processes sharing the port: a positive integer, or `"auto"` for
   * one per core. With more than one, this process becomes the primary: it
   * validates the rules, then forks the workers with node:cluster, which
   * re-runs this same entry script in each of them, where the same
   * `startServer` call serves (work to do once, like migrations, belongs
   * behind `if (!isServerWorker())`). The primary accepts connections and
   * hands them to the workers round-robin, replaces a worker that dies, and
   * on `close()` lets every worker finish its calls. Each worker has its own
   * caches, kept correct by the database's notifications, and its own
   * connection limits, Login admission and `/metrics`. Needs PostgreSQL:
   * the embedded database is held by one process (`ServerError`
   * `WORKERS_NEED_POSTGRES`). Default 1: this process serves, nothing is
   * forked (`protoguard serve` defaults to `"auto"` on PostgreSQL).
   */
  workers?: WorkersOption | undefined;
  /**
   * Reconnect and heartbeat settings of the invalidation subscription (see
   * `subscribeInvalidations`): a notification round trip every 1 s, notifications down after 2 s
   * without one (caches are then flushed at every heartbeat). Default: those.
   */
  invalidation?: SubscribeOptions;
  /**
   * The database probe behind health `protoguard.database` and the overall status (see
   * `watchDatabaseHealth`). Default: `select 1` every 2 s, stalled after 3 s.
   */
  databaseHealth?: DatabaseHealthOptions;
  /**
   * How the rules' `rate_limit`s are counted (see `createRateLimiter`):
   * `redisUrl` shares one count across every instance and worker
   * (`PROTOGUARD_RATE_LIMIT_REDIS_URL`), `onRedisError` says what a call gets
   * while Redis is away (`"open"`, the default: admitted uncounted, counted in
   * `protoguard_rate_limit_store_errors_total` and logged at most once every
   * 10 s; `"closed"`: UNAVAILABLE). Default: counted in each process's memory.
   */
  rateLimits?: RateLimiterOptions;
  /**
   * Serve the admin console at `/admin/` (see docs/console.md): `true` for the package's built
   * console, or `{ directory }` for one built elsewhere. Checked before the port opens
   * (`ServerError` `ADMIN_CONSOLE_NOT_BUILT`). Default: off (`PROTOGUARD_ADMIN_CONSOLE=1` turns it
   * on for `protoguard serve`).
   */
  adminConsole?: boolean | AdminConsoleOptions | undefined;
  /**
   * Serve `protoguard.v1.AdminService` (users, groups, grants, service accounts, sessions, the
   * audit log, the policy; see docs/admin.md) beside the application's services, behind the
   * same auth layer. Its rules, declared in admin.proto, admit only superusers and holders of
   * the `protoguard.*` permission each method names, and refuse API keys, so serving it gives
   * nobody anything they were not granted. `false` leaves it out; an object tunes it. Skipped
   * when `routes` registers AdminService itself. Default true (`protoguard serve`:
   * `PROTOGUARD_ADMIN_SERVICE`, default 1).
   */
  adminService?: boolean | AdminServiceSettings | undefined;
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
   * In the primary of a server with `workers` > 1: its worker processes.
   * Undefined when this process serves the port itself.
   */
  readonly workers: ServerWorkers | undefined;
  /**
   * Graceful stop: reports NOT_SERVING to health watchers, stops accepting,
   * lets in-flight calls finish within `graceMs`, then stops the user cache
   * and closes the runtime if it has `close`. Idempotent.
   */
  close(): Promise<void>;
}

const DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024;
const DEFAULT_PORT = 8080;
const DEFAULT_GRACE_MS = 10_000;

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
 * @throws {ServerError} when the port cannot be bound or the TLS material is unusable,
 *   when a worker cannot start (`WORKER_FAILED`, or the worker's own code), or
 *   with `workers` > 1 on the embedded database (`WORKERS_NEED_POSTGRES`).
 * @throws {RangeError} when `workers` is neither a positive integer nor "auto".
 */
export async function startServer(init: StartServerOptions): Promise<RunningServer> {
  // AdminService reads the plans of the server it is part of: known once they are made below.
  const served: { current?: ServedPolicy } = {};
  const options: StartServerOptions = {
    ...init,
    routes: withAdminService(init.routes, init.adminService, {
      database: init.runtime.database,
      keyring: init.runtime.keyring,
      passwordHasher: init.runtime.passwordHasher,
      policy: () => served.current!,
    }),
  };
  const services = servicesOf(options.routes);
  // Validate before opening anything, so a bad rule costs no cleanup.
  const policy = createAuthPolicy({ services, defaultRule: options.defaultRule });
  served.current = { policy, services };
  const staticRoot = options.staticDir === undefined ? undefined : await staticDirectory(options.staticDir);
  const adminConsole = options.adminConsole ? await loadAdminConsole(options.adminConsole) : undefined;
  const observability = createObservability({
    logger: options.logger,
    registry: options.registry,
    // A registry of the caller's may hold the process metrics already, and
    // registering them twice throws.
    defaultMetrics: options.registry === undefined,
    services,
  });
  const { logger } = observability;

  const workerCount = resolveWorkers(options.workers);
  if (workerCount > 1 && cluster.isPrimary) {
    return startPrimary(options, { policy, services, logger, count: workerCount });
  }
  try {
    const server = await startOne(options, { policy, services, staticRoot, adminConsole, observability });
    if (isServerWorker()) serveAsWorker(server.port, server.close);
    return server;
  } catch (error) {
    if (isServerWorker()) reportWorkerFailure(error);
    throw error;
  }
}

/** What {@link startServer} resolved before choosing how many processes serve. */
interface Prepared {
  readonly policy: AuthPolicy;
  readonly services: readonly DescService[];
  readonly staticRoot: string | undefined;
  readonly adminConsole: AdminConsoleFiles | undefined;
  readonly observability: ReturnType<typeof createObservability>;
}

/** The server in this process: the whole of {@link startServer} with one worker, or a worker's part. */
async function startOne(options: StartServerOptions, prepared: Prepared): Promise<RunningServer> {
  const { runtime } = options;
  const { policy, services, staticRoot, adminConsole, observability } = prepared;
  const { logger } = observability;
  const principals = await createPrincipalSource({
    database: runtime.database,
    maxEntries: options.principalCacheEntries,
    maxAgeMs: options.principalCacheMaxAgeMs,
    ...(options.invalidation !== undefined && { subscribe: options.invalidation }),
  });
  // Only a server that asks for client certificates maps them to service accounts.
  let certificates: CachedCertificatePrincipalSource | undefined;
  if (options.tls?.clientCa !== undefined) {
    certificates = createCertificatePrincipalSource({
      database: runtime.database,
      onInvalidation: (listener) => principals.onInvalidation(listener),
      maxAgeMs: options.principalCacheMaxAgeMs,
      ...(options.principalCacheEntries === 0 && { maxEntries: 0 }),
    });
  }
  // Costs nothing until a trusted issuer's token arrives; shares the principal source's subscription.
  const identities = await createIdentityResolver({
    database: runtime.database,
    invalidations: principals,
    maxEntries: options.principalCacheEntries,
    maxAgeMs: options.principalCacheMaxAgeMs,
  });
  // Likewise for API keys: no I/O until a key arrives; follows the same invalidations.
  const apiKeys = createApiKeySource({
    database: runtime.database,
    onInvalidation: (listener) => principals.onInvalidation(listener),
    maxEntries: options.principalCacheEntries,
    maxAgeMs: options.principalCacheMaxAgeMs,
  });
  let stopWatching: (() => void) | undefined;
  const rateLimiter = serverRateLimiter(options.rateLimits, logger);
  try {
    const auth = createAuth({
      ...serverAuthOptions(options, { policy, services, principals, identities, certificates, apiKeys }),
      onDecision: observability.onDecision,
      rateLimits: rateLimiter,
    });
    registerRateLimitMetrics(observability.registry, () => rateLimiter.counts());
    const { verifier } = runtime;
    registerCacheMetrics(observability.registry, {
      principal: () => principals,
      ...(hasCacheCounts(verifier) && { token: () => tokenCacheCounts(verifier) }),
    });
    registerRevocationMetrics(observability.registry, () => principals);
    const health = createHealth({
      services: Object.fromEntries(services.map((service) => [service.typeName, "SERVING" as const])),
      maxWatchStreams: options.maxWatchStreams,
      maxWatchStreamsPerConnection: options.maxWatchStreamsPerConnection,
    });
    stopWatching = watchDatabaseHealth(
      { database: runtime.database, principals, health, registry: observability.registry, logger },
      options.databaseHealth,
    );
    const prefilter = options.prefilter ?? true;
    // A worker's /metrics speaks for the whole pool: scrapes land on any worker.
    const registry = isServerWorker() ? poolMetrics(observability.registry) : observability.registry;
    const handler = createRoutes(options, {
      auth,
      health,
      services,
      prefilter,
      staticRoot,
      adminConsole,
      logger,
      registry,
    });

    const listening = await listen({
      handler,
      port: options.port ?? DEFAULT_PORT,
      host: options.host,
      tls: options.tls,
      ...connectionLimitsOf(options),
      // Plaintext HTTP/2 streams are judged before Node builds request
      // objects for them; the request-level pre-filter covers the rest.
      streamPrefilter: prefilter ? createStreamPrefilter({ auth, services }) : undefined,
    });
    logger.info({ url: listening.url, services: services.map((s) => s.typeName) }, "protoguard listening");
    // Started once listening, so a failed start leaves no timer; stopped by close.
    const retention = startAuditRetention({
      database: runtime.database,
      retentionDays: options.auditRetentionDays,
      logger,
    });

    const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
    let closing: Promise<void> | undefined;
    const close = async () => {
      health.shutdown();
      try {
        await listening.close(graceMs);
      } finally {
        try {
          stopWatching?.();
          await retention.stop();
          certificates?.close();
          apiKeys.close();
          await rateLimiter.close();
          await identities.close();
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
      workers: undefined,
      close: () => (closing ??= close()),
    };
  } catch (error) {
    stopWatching?.();
    certificates?.close();
    apiKeys.close();
    await rateLimiter.close();
    await identities.close();
    await principals.close();
    throw error;
  }
}

/**
 * The `createAuth` options a server builds from its own: one place, so the
 * primary of a server with workers and every worker (or the one process)
 * wire the same parts — the verifier with its trusted issuers, the identity
 * resolver they need, gateway mode, client certificates, loaders, fallback.
 */
function serverAuthOptions(
  options: StartServerOptions,
  parts: {
    policy: AuthPolicy;
    services: readonly DescService[];
    principals: AuthOptions["principals"];
    identities: NonNullable<AuthOptions["identities"]>;
    certificates: CachedCertificatePrincipalSource | undefined;
    apiKeys: CachedApiKeySource;
  },
): AuthOptions {
  return {
    policy: parts.policy,
    services: parts.services,
    verifier: options.runtime.verifier,
    principals: parts.principals,
    identities: parts.identities,
    ...(parts.certificates !== undefined && { certificates: parts.certificates }),
    apiKeys: parts.apiKeys,
    ...(options.resources !== undefined && { resources: options.resources }),
    ...(options.authorize !== undefined && { authorize: options.authorize }),
    // The runtime's issuers (PROTOGUARD_TRUSTED_ISSUERS) and the option's: createAuth composes them.
    trustedIssuers: [
      ...resolveTrustedIssuers(options.runtime.trustedIssuers ?? []),
      ...resolveTrustedIssuers(options.trustedIssuers ?? []),
    ],
    ...(options.gateway !== undefined && { gateway: options.gateway }),
  };
}

/** Shortest time between two log lines about the rate-limit store failing. */
const STORE_ERROR_LOG_INTERVAL_MS = 10_000;

/**
 * The server's limiter: the options' (memory unless a Redis URL is given),
 * logging Redis failures at most once every 10 s with the count of those
 * not logged, so an outage does not become a line per call.
 */
function serverRateLimiter(options: RateLimiterOptions | undefined, logger: Logger): RateLimiter {
  let lastLogged = Number.NEGATIVE_INFINITY;
  let unlogged = 0;
  const onStoreError = options?.onStoreError;
  return createRateLimiter({
    ...options,
    onStoreError(error, outcome) {
      onStoreError?.(error, outcome);
      const now = Date.now();
      if (now - lastLogged < STORE_ERROR_LOG_INTERVAL_MS) {
        unlogged++;
        return;
      }
      lastLogged = now;
      logger.warn(
        { err: error, outcome, suppressed: unlogged },
        outcome === "open"
          ? "rate limit store unavailable: admitting calls uncounted"
          : "rate limit store unavailable: refusing rate-limited calls",
      );
      unlogged = 0;
    },
  });
}

/** Whether the verifier keeps cache totals, as `createTokenVerifier`'s does. */
function hasCacheCounts(verifier: AccessTokenVerifier): verifier is AccessTokenVerifier & CacheTotals {
  return typeof (verifier as Partial<CacheTotals>).cacheHits === "number";
}

interface CacheTotals {
  readonly cacheHits: number;
  readonly cacheMisses: number;
}

function tokenCacheCounts(verifier: CacheTotals): CacheCounts {
  return { hits: verifier.cacheHits, misses: verifier.cacheMisses };
}

/**
 * The primary of a server with several workers: it serves nothing itself.
 * Its `auth` plans the same rules (for inspection) over a principal source
 * without cache or subscription; its `health` is its own, not the workers'.
 */
async function startPrimary(
  options: StartServerOptions,
  parts: { policy: AuthPolicy; services: readonly DescService[]; logger: Logger; count: number },
): Promise<RunningServer> {
  const { runtime } = options;
  const { policy, services, logger, count } = parts;
  if (runtime.database.client.kind === "pglite") {
    throw new ServerError(
      "WORKERS_NEED_POSTGRES",
      `workers: ${count} needs PostgreSQL: the embedded database is held by one process (set DATABASE_URL, or use one worker)`,
    );
  }
  const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
  const principals = await createPrincipalSource({ database: runtime.database, maxEntries: 0, listen: false });
  // The primary serves no call: its parts cache nothing and subscribe to nothing.
  const identities = await createIdentityResolver({
    database: runtime.database,
    invalidations: principals,
    maxEntries: 0,
  });
  const certificates =
    options.tls?.clientCa === undefined
      ? undefined
      : createCertificatePrincipalSource({ database: runtime.database, maxEntries: 0 });
  const apiKeys = createApiKeySource({ database: runtime.database, maxEntries: 0, maxUnknownEntries: 0 });
  const release = async () => {
    certificates?.close();
    await identities.close();
    await principals.close();
  };
  let auth: Auth;
  try {
    // Built before any worker is forked, from the same options a worker's
    // is (loaders, fallback, trusted issuers, gateway, certificates), so a
    // combination a worker would refuse stops the primary rather than every
    // worker in turn.
    auth = createAuth(serverAuthOptions(options, { policy, services, principals, identities, certificates, apiKeys }));
  } catch (error) {
    await release();
    throw error;
  }
  const pool = await startWorkers({ count, graceMs, logger }).catch(async (error: unknown) => {
    await release();
    throw error;
  });
  const health = createHealth({
    services: Object.fromEntries(services.map((service) => [service.typeName, "SERVING" as const])),
  });
  const host = options.host ?? "127.0.0.1";
  const url = `${options.tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${pool.port}`;
  logger.info({ url, services: services.map((s) => s.typeName), workers: count }, "protoguard listening");
  let closing: Promise<void> | undefined;
  const close = async () => {
    health.shutdown();
    try {
      await pool.close();
    } finally {
      try {
        await release();
      } finally {
        await runtime.close?.();
      }
    }
    logger.info("protoguard stopped");
  };
  return {
    url,
    port: pool.port,
    host,
    auth,
    health,
    services,
    workers: pool.workers,
    close: () => (closing ??= close()),
  };
}

/** The parts {@link createRoutes} puts behind one handler, made by {@link startServer}. */
interface RouteParts {
  readonly auth: Auth;
  readonly health: HealthService;
  readonly services: readonly DescService[];
  readonly prefilter: boolean;
  readonly staticRoot: string | undefined;
  readonly adminConsole: AdminConsoleFiles | undefined;
  readonly logger: Logger;
  readonly registry: MetricsSource;
}

/**
 * The one handler the listener serves: the application's routes behind the
 * auth layer (and the pre-filter), the static page as their fallback, the
 * server's own services, the public keys and the metrics, chosen by path,
 * and CORS around it all when origins are configured.
 */
function createRoutes(options: StartServerOptions, parts: RouteParts): NodeHandler {
  const { auth, services } = parts;
  const peerValues = peerContextValues(options.clientAddress);
  const certificateValues = options.tls?.clientCa === undefined ? undefined : clientCertificateContextValues();
  const readMaxBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  const notFound: NodeHandler = (_req, res) => plain(res, 404, "not found");

  const connectHandler = connectNodeAdapter({
    routes: options.routes,
    interceptors: [auth.interceptor],
    requestGate: auth.requestGate,
    contextValues: (req) => {
      const values = requestIdContextValues(req, peerValues(req, prefilterContextValues(req)));
      return certificateValues === undefined ? values : certificateValues(req, values);
    },
    readMaxBytes,
    fallback: parts.staticRoot === undefined ? notFound : staticFiles(parts.staticRoot),
  });
  const routed = createDispatch({
    keyring: options.runtime.keyring,
    registry: parts.registry,
    logger: parts.logger,
    serverServices: serverServicesHandler({ health: parts.health, services, readMaxBytes, fallback: notFound }),
    app: parts.prefilter ? createPrefilter({ auth, services, next: connectHandler }) : connectHandler,
  });
  const dispatch = parts.adminConsole === undefined ? routed : serveAdminConsole(parts.adminConsole, routed);
  return options.corsOrigins !== undefined && options.corsOrigins.length > 0
    ? withCors(dispatch, { origins: [...options.corsOrigins] })
    : dispatch;
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
