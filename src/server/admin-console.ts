/**
 * The admin console at `/admin/`: the few files `npm run build` bundles
 * into the package's `dist/console/`, read once at start-up and served with
 * headers that confine the page to its own origin. The console is a client
 * of AdminService like any other, so serving it grants nothing: every
 * action it offers is a call the auth layer checks against admin.proto's
 * rules. Off unless `startServer({ adminConsole })` (or
 * `PROTOGUARD_ADMIN_CONSOLE=1` for `protoguard serve`) turns it on.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { endBody, isRead, pathOf, type NodeHandler, type NodeResponse } from "./http.js";
import { ServerError } from "./transport/errors.js";

/** Where the console is served. `/admin` redirects here. */
export const ADMIN_CONSOLE_PATH = "/admin/";

/**
 * Headers of every answer under {@link ADMIN_CONSOLE_PATH}, errors included:
 * script, style and fetches from this origin only (no inline script or
 * style, no eval), never framed (clickjacking), no `<base>` rewriting, forms
 * posting only here; no MIME sniffing; no Referer carrying the console's URL
 * elsewhere.
 */
export const ADMIN_CONSOLE_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  // A new release must not run next to a cached old script.
  "cache-control": "no-cache",
};

/** Options of the console, for `startServer({ adminConsole })`. */
export interface AdminConsoleOptions {
  /**
   * The directory of a built console (index.html, console.js, console.css),
   * as `buildConsole` in scripts/build-console.js writes it. Default: the
   * package's own `dist/console/`.
   */
  directory?: string;
}

/** The console's files, read once, by URL path. */
export interface AdminConsoleFiles {
  readonly directory: string;
  readonly files: ReadonlyMap<string, { readonly body: Buffer; readonly type: string }>;
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".map": "application/json",
};

/**
 * The package's built console: `dist/console/` beside the compiled
 * `dist/src/server/`, or, running from source, the repository's
 * `dist/console/` (after `npm run build` or `npm run build:console`).
 */
function defaultDirectories(): string[] {
  return [
    fileURLToPath(new URL("../../console/", import.meta.url)),
    fileURLToPath(new URL("../../dist/console/", import.meta.url)),
  ];
}

/**
 * Reads the console's files, once, before the port opens.
 *
 * @throws {ServerError} `ADMIN_CONSOLE_NOT_BUILT` when the directory holds no `index.html`.
 */
export async function loadAdminConsole(options: true | AdminConsoleOptions): Promise<AdminConsoleFiles> {
  const candidates =
    options === true || options.directory === undefined ? defaultDirectories() : [resolve(options.directory)];
  for (const directory of candidates) {
    const index = await stat(join(directory, "index.html")).catch(() => undefined);
    if (!index?.isFile()) continue;
    const files = new Map<string, { body: Buffer; type: string }>();
    for (const entry of await readdir(directory, { withFileTypes: true })) {
      const type = CONTENT_TYPES[extname(entry.name).toLowerCase()];
      if (!entry.isFile() || type === undefined) continue;
      files.set(`${ADMIN_CONSOLE_PATH}${entry.name}`, { body: await readFile(join(directory, entry.name)), type });
    }
    files.set(ADMIN_CONSOLE_PATH, files.get(`${ADMIN_CONSOLE_PATH}index.html`)!);
    return { directory, files };
  }
  throw new ServerError(
    "ADMIN_CONSOLE_NOT_BUILT",
    `the admin console is turned on but not built: no index.html in ${candidates.join(" or ")} (run npm run build)`,
  );
}

function answer(res: NodeResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  const body = `${text}\n`;
  res.writeHead(status, {
    ...ADMIN_CONSOLE_HEADERS,
    "content-type": "text/plain; charset=utf-8",
    "content-length": String(Buffer.byteLength(body)),
    ...headers,
  });
  res.end(body);
}

/**
 * Serves the console's files under {@link ADMIN_CONSOLE_PATH} (GET and
 * HEAD, each with {@link ADMIN_CONSOLE_HEADERS}) and hands every other
 * request to `next`. Only the files read at start-up exist: no path is ever
 * joined to the file system per request.
 */
export function serveAdminConsole(site: AdminConsoleFiles, next: NodeHandler): NodeHandler {
  return (req, res) => {
    const path = pathOf(req.url);
    if (path === "/admin") return answer(res, 308, "moved", { location: ADMIN_CONSOLE_PATH });
    if (!path.startsWith(ADMIN_CONSOLE_PATH)) return next(req, res);
    if (!isRead(req.method)) return answer(res, 405, "method not allowed", { allow: "GET, HEAD" });
    const file = site.files.get(path);
    if (file === undefined) return answer(res, 404, "not found");
    res.writeHead(200, {
      ...ADMIN_CONSOLE_HEADERS,
      "content-type": file.type,
      "content-length": String(file.body.length),
    });
    endBody(res, req.method, file.body);
  };
}
