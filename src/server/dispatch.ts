/**
 * Which part of the server answers a request, by its path: the public keys,
 * the metrics, the server's own services (health, reflection), or the
 * application behind the auth layer.
 */
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { jwksDocument } from "../token/jwks.js";
import type { Keyring } from "../token/keys.js";
import { endBody, isRead, pathOf, plain, type NodeHandler } from "./http.js";
import { SERVER_SERVICES } from "./services/server-services.js";

/** Path of the public keys of an RS256/ES256 keyring, for other services that verify our tokens. */
export const JWKS_PATH = "/.well-known/jwks.json";
/**
 * Path of the Prometheus metrics. Served to anyone who reaches the port, like
 * most exporters: bind to a private interface (the default 127.0.0.1) or
 * keep the path off the public side of the proxy.
 */
export const METRICS_PATH = "/metrics";

/** The handlers {@link createDispatch} chooses between. */
export interface DispatchOptions {
  /** Whose public keys {@link JWKS_PATH} serves (none for a shared secret). */
  readonly keyring: Keyring;
  /** The metrics {@link METRICS_PATH} serves: a registry, or a worker pool's summed metrics. */
  readonly registry: Pick<Registry, "metrics" | "contentType">;
  /** Where a failure to render the metrics is logged. */
  readonly logger: Logger;
  /** Serves {@link SERVER_SERVICES}. */
  readonly serverServices: NodeHandler;
  /** Serves everything else: the application behind the auth layer. */
  readonly app: NodeHandler;
}

/** Routes each request by its path to one of the handlers of `options`. */
export function createDispatch(options: DispatchOptions): NodeHandler {
  const { registry, logger, serverServices, app } = options;
  const serverServiceNames = new Set(SERVER_SERVICES.map((s) => s.typeName));
  const jwks = options.keyring.publicJwks().keys.length > 0 ? jwksDocument(options.keyring) : undefined;

  return (req, res) => {
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
    if (service !== undefined && serverServiceNames.has(service)) return serverServices(req, res);
    app(req, res);
  };
}

/** "pkg.Service" of an RPC path "/pkg.Service/Method", else undefined. */
function serviceOfPath(path: string): string | undefined {
  const slash = path.indexOf("/", 1);
  return slash === -1 ? undefined : path.slice(1, slash);
}
