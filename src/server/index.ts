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
export { JWKS_PATH, METRICS_PATH, SERVER_SERVICES, startServer } from "./serve.js";
export type { RunningServer, ServerRuntime, StartServerOptions } from "./serve.js";
export { onShutdownSignals } from "./shutdown.js";
export type { ShutdownSignalOptions } from "./shutdown.js";

// ---------------------------------------------------------------------------
// Configuration from the environment (what `protoguard serve` uses)
// ---------------------------------------------------------------------------
export { ConfigError, loadConfig } from "../runtime/config.js";
export type { ProtoguardConfig } from "../runtime/config.js";
export { openRuntime } from "../runtime/runtime.js";
export type { OpenRuntimeOptions, Runtime } from "../runtime/runtime.js";
export { defineServeApp } from "../cli/app.js";
export type { ServeApp, ServeAppStart } from "../cli/app.js";

// ---------------------------------------------------------------------------
// The parts, for servers assembled by hand
// ---------------------------------------------------------------------------
export { createPrefilter, createStreamPrefilter, prefilterContextValues } from "./prefilter.js";
export type { NodeHandler, NodeRequest, PrefilterOptions } from "./prefilter.js";
// Client addresses (behind trusted proxies), as the Login admission sees them.
export {
  createClientAddressResolver,
  parseTrustedProxies,
  peerAddressKey,
  peerContextValues,
  UNKNOWN_PEER,
} from "../connect/peer.js";
export type { ClientAddressOptions, ForwardedHeader, PeerRequest } from "../connect/peer.js";
export { CONNECTION_LIMIT_DEFAULTS, listen } from "./listen.js";
export type { ConnectionLimits, Listening, ListenOptions, RequestHandler, TlsOptions } from "./listen.js";
export { withCors } from "./cors.js";
export type { CorsOptions } from "./cors.js";
export { createHealth, HEALTH_WATCH_DEFAULTS, healthConnectionKey } from "./health.js";
export type { HealthOptions, HealthService, ServingStatus } from "./health.js";
export { fileRegistryOf, registerReflection } from "./reflection.js";
export type { ReflectionOptions } from "./reflection.js";
export { createObservability } from "./observability.js";
export type { Observability, ObservabilityOptions } from "./observability.js";
