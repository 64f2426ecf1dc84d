/**
 * CORS for browser clients (Connect and gRPC-Web from a web page on another
 * origin). Kept in front of the Connect handler so that preflights never
 * reach routing, which would answer OPTIONS with 404/405.
 */
import { cors } from "@connectrpc/connect";
import type { NodeHandler } from "./http.js";

/** Options of {@link withCors}. */
export interface CorsOptions {
  /**
   * Origins allowed to call, exactly as browsers send them
   * ("https://app.example.com", scheme and port included, no path), or "*"
   * for any origin. Required: there is no safe default.
   */
  origins: string[];
  /**
   * Request headers allowed besides Connect's and gRPC-Web's own and
   * `authorization`. Default: none.
   */
  allowedHeaders?: string[];
  /**
   * Response headers scripts may read besides Connect's and gRPC-Web's own
   * (grpc-status, grpc-message, grpc-status-details-bin, ...). Default: none.
   */
  exposedHeaders?: string[];
  /**
   * How long browsers may cache a preflight answer, in seconds. Default 7200
   * (Chromium's ceiling; Firefox allows more).
   */
  maxAgeSeconds?: number;
}

/**
 * Wraps a node handler with CORS. A preflight (OPTIONS with
 * Access-Control-Request-Method) from an allowed origin is answered here
 * with 204 and the methods (POST, GET) and headers Connect and gRPC-Web need
 * plus `authorization`; other requests from an allowed origin get
 * Access-Control-Allow-Origin and the exposed headers, then reach `handler`.
 *
 * A disallowed origin gets no CORS headers at all (its preflight is
 * answered 403), so the browser blocks the call; non-browser clients, which
 * send no Origin, pass through untouched. Credentials (cookies) are not
 * allowed: bearer tokens travel in `authorization`, which needs none.
 */
export function withCors(handler: NodeHandler, options: CorsOptions): NodeHandler {
  const anyOrigin = options.origins.includes("*");
  const origins = new Set(options.origins);
  const allowMethods = cors.allowedMethods.join(", ");
  const allowHeaders = unique([...cors.allowedHeaders, "Authorization", ...(options.allowedHeaders ?? [])]).join(", ");
  const exposeHeaders = unique([...cors.exposedHeaders, ...(options.exposedHeaders ?? [])]).join(", ");
  const maxAge = String(options.maxAgeSeconds ?? 7200);

  return (req, res) => {
    const origin = req.headers.origin;
    if (origin === undefined) {
      handler(req, res);
      return;
    }
    // The answer depends on Origin, so caches must key on it, allowed or not.
    res.setHeader("vary", "Origin");
    const allowed = anyOrigin || origins.has(origin);
    const preflight = req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined;
    if (preflight) {
      if (allowed) {
        res.writeHead(204, {
          "access-control-allow-origin": origin,
          "access-control-allow-methods": allowMethods,
          "access-control-allow-headers": allowHeaders,
          "access-control-max-age": maxAge,
          "content-length": "0",
        });
      } else {
        res.writeHead(403, { "content-length": "0" });
      }
      res.end();
      return;
    }
    if (allowed) {
      res.setHeader("access-control-allow-origin", origin);
      res.setHeader("access-control-expose-headers", exposeHeaders);
    }
    handler(req, res);
  };
}

/** Case-insensitive de-duplication keeping the first spelling; header names ignore case. */
function unique(names: string[]): string[] {
  const seen = new Set<string>();
  return names.filter((name) => {
    const key = name.toLowerCase();
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
