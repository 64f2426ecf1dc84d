/**
 * An optional static page beside the RPC routes: files under one directory
 * served for GET and HEAD requests no RPC route matches.
 */
import { readFile, stat } from "node:fs/promises";
import { extname, resolve, sep } from "node:path";
import { endBody, isRead, pathOf, plain, type NodeHandler } from "./http.js";

/**
 * The absolute path of `dir`, checked once at start-up.
 *
 * @throws {Error} when `dir` does not exist or is not a directory.
 */
export async function staticDirectory(dir: string): Promise<string> {
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
 * Serves files under `root` (from {@link staticDirectory}) for GET and HEAD.
 * Paths are resolved and must stay inside `root`, so `..` and encoded
 * variants cannot reach other files. The page is small, so files are read
 * whole rather than streamed.
 */
export function staticFiles(root: string): NodeHandler {
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
