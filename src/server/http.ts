/**
 * The Node request handler every part of the server speaks (HTTP/1.1 and
 * HTTP/2 alike), and the few small answers the server writes itself.
 */
import type { connectNodeAdapter } from "@connectrpc/connect-node";

/**
 * A Node request handler that serves both HTTP/1.1 and HTTP/2 requests, such
 * as the result of `connectNodeAdapter()`, `createPrefilter()` or `withCors()`.
 */
export type NodeHandler = ReturnType<typeof connectNodeAdapter>;
/** The request a {@link NodeHandler} receives (HTTP/1.1 or HTTP/2). */
export type NodeRequest = Parameters<NodeHandler>[0];
/** The response a {@link NodeHandler} writes (HTTP/1.1 or HTTP/2). */
export type NodeResponse = Parameters<NodeHandler>[1];

/** The URL path without the query string. */
export function pathOf(url: string | undefined): string {
  if (url === undefined) return "/";
  const query = url.indexOf("?");
  return query === -1 ? url : url.slice(0, query);
}

/** Whether an HTTP method only reads (GET or HEAD). */
export function isRead(method: string | undefined): boolean {
  return method === "GET" || method === "HEAD";
}

/** Ends with `body`, or with no body for HEAD (the headers already describe it). */
export function endBody(res: NodeResponse, method: string | undefined, body: string | Uint8Array): void {
  if (method === "HEAD") res.end();
  else res.end(body);
}

/** Answers `status` with a one-line plain-text body. */
export function plain(res: NodeResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  const body = `${text}\n`;
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": String(Buffer.byteLength(body)),
    ...headers,
  });
  res.end(body);
}
