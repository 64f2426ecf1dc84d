/**
 * Serving: one port for gRPC, gRPC-Web and Connect (HTTP/1.1, h2c, TLS with
 * ALPN), the pre-filter that refuses unauthenticated calls before Connect
 * reads a body, gRPC health and reflection, CORS, decision logs and
 * Prometheus metrics, graceful shutdown; and the environment read once into
 * options, as `protoguard serve` does.
 *
 * @example
 * ```ts
 * import { startServer } from "protoguard/server";
 *
 * const server = await startServer({ runtime, routes, port: 8080 });
 * console.log(`listening on ${server.url}`);
 * ```
 *
 * @module protoguard/server
 */

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------
export { startServer } from "../server/serve.js";
export { JWKS_PATH, METRICS_PATH } from "../server/dispatch.js";
export { SERVER_SERVICES } from "../server/services/server-services.js";
export type { RunningServer, ServerRuntime, StartServerOptions } from "../server/serve.js";
export { onShutdownSignals } from "../server/shutdown.js";
export { isServerWorker } from "../server/workers.js";
export type { ServerWorkers, WorkersOption } from "../server/workers.js";
export type { ShutdownSignalOptions } from "../server/shutdown.js";

// ---------------------------------------------------------------------------
// Configuration from the environment (what `protoguard serve` uses)
// ---------------------------------------------------------------------------
export { ConfigError, loadConfig } from "../runtime/config.js";
export type { ProtoguardConfig } from "../runtime/config.js";
export { openRuntime } from "../runtime/runtime.js";
export type { OpenRuntimeOptions, Runtime } from "../runtime/runtime.js";
export { defineServeApp } from "../cli/app.js";
export type { ServeApp, ServeAppStart, ServeResourceLoader } from "../cli/app.js";

// ---------------------------------------------------------------------------
// The parts, for servers assembled by hand
// ---------------------------------------------------------------------------
export type { NodeHandler, NodeRequest } from "../server/http.js";
export { createPrefilter, createStreamPrefilter, prefilterContextValues } from "../server/prefilter/prefilter.js";
export type { PrefilterOptions } from "../server/prefilter/prefilter.js";
// Client addresses (behind trusted proxies), as the Login admission sees them.
export { parseTrustedProxies } from "../util/ip-address.js";
export {
  createClientAddressResolver,
  peerAddressKey,
  peerContextValues,
  socketAddressKey,
  UNKNOWN_PEER,
} from "../connect/peer.js";
export type { ClientAddressOptions, ForwardedHeader, PeerRequest } from "../connect/peer.js";
export { listen } from "../server/transport/listen.js";
export type { Listening, ListenOptions } from "../server/transport/listen.js";
export { CONNECTION_LIMIT_DEFAULTS } from "../server/transport/limits.js";
export type { ConnectionLimits } from "../server/transport/limits.js";
export type { TlsOptions } from "../server/transport/tls.js";
export { ServerError } from "../server/transport/errors.js";
export type { ServerErrorCode } from "../server/transport/errors.js";
export { withCors } from "../server/cors.js";
export type { CorsOptions } from "../server/cors.js";
export { createHealth, HEALTH_WATCH_DEFAULTS, healthConnectionKey } from "../server/services/health.js";
export type { HealthOptions, HealthService, ServingStatus } from "../server/services/health.js";
export { fileRegistryOf, registerReflection } from "../server/services/reflection.js";
export type { ReflectionOptions } from "../server/services/reflection.js";
export { createObservability } from "../server/observe/observability.js";
export type { Observability, ObservabilityOptions } from "../server/observe/observability.js";

// The development secret the CLI keeps in the data directory, for an app wired by hand
export { DEVELOPMENT_SECRET_FILE, loadDevelopmentSecret } from "../runtime/dev-secret.js";

// Database and notification health (what a pooler in front of PostgreSQL needs watching)
export {
  DATABASE_HEALTH_DEFAULTS,
  DATABASE_HEALTH_SERVICE,
  NOTIFICATIONS_HEALTH_SERVICE,
} from "../server/services/database-health.js";
export type { DatabaseHealthOptions } from "../server/services/database-health.js";
// Request ids, as the audit log records them.
export { REQUEST_ID_HEADER, requestIdContextValues, requestIdKey } from "../connect/request-id.js";

// AdminService: users, groups, grants, service accounts, sessions, API keys, the audit log and
// the policy over Connect, guarded by the rules in admin.proto (startServer serves it by default)
export { ADMIN_SERVICE_DEFAULTS, createAdminService } from "../admin/admin-service.js";
export type { AdminServiceOptions } from "../admin/admin-service.js";
export type { ServedPolicy } from "../admin/policy-table.js";
export type { AdminServiceSettings } from "../server/admin-routes.js";

// The admin console at /admin/ (startServer's `adminConsole`)
export { ADMIN_CONSOLE_HEADERS, ADMIN_CONSOLE_PATH } from "../server/admin-console.js";
export type { AdminConsoleOptions } from "../server/admin-console.js";
