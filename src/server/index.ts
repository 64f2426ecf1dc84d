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
export { startServer } from "./serve.js";
export { JWKS_PATH, METRICS_PATH } from "./dispatch.js";
export { SERVER_SERVICES } from "./services/server-services.js";
export type { RunningServer, ServerRuntime, StartServerOptions } from "./serve.js";
export { onShutdownSignals } from "./shutdown.js";
export { isServerWorker } from "./workers.js";
export type { ServerWorkers, WorkersOption } from "./workers.js";
export type { ShutdownSignalOptions } from "./shutdown.js";

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
export type { NodeHandler, NodeRequest } from "./http.js";
export { createPrefilter, createStreamPrefilter, prefilterContextValues } from "./prefilter/prefilter.js";
export type { PrefilterOptions } from "./prefilter/prefilter.js";
// Client addresses (behind trusted proxies), as the Login admission sees them.
export {
  createClientAddressResolver,
  parseTrustedProxies,
  peerAddressKey,
  peerContextValues,
  socketAddressKey,
  UNKNOWN_PEER,
} from "../connect/peer.js";
export type { ClientAddressOptions, ForwardedHeader, PeerRequest } from "../connect/peer.js";
export { listen } from "./transport/listen.js";
export type { Listening, ListenOptions } from "./transport/listen.js";
export { CONNECTION_LIMIT_DEFAULTS } from "./transport/limits.js";
export type { ConnectionLimits } from "./transport/limits.js";
export type { TlsOptions } from "./transport/tls.js";
export { ServerError } from "./transport/errors.js";
export type { ServerErrorCode } from "./transport/errors.js";
export { withCors } from "./cors.js";
export type { CorsOptions } from "./cors.js";
export { createHealth, HEALTH_WATCH_DEFAULTS, healthConnectionKey } from "./services/health.js";
export type { HealthOptions, HealthService, ServingStatus } from "./services/health.js";
export { fileRegistryOf, registerReflection } from "./services/reflection.js";
export type { ReflectionOptions } from "./services/reflection.js";
export { createObservability } from "./observe/observability.js";
export type { Observability, ObservabilityOptions } from "./observe/observability.js";

// pool19: new exports
export {
  DATABASE_HEALTH_DEFAULTS,
  DATABASE_HEALTH_SERVICE,
  NOTIFICATIONS_HEALTH_SERVICE,
} from "./services/database-health.js";
export type { DatabaseHealthOptions } from "./services/database-health.js";
