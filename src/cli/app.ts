/**
 * What `protoguard serve --routes MODULE` and `protoguard policy --routes
 * MODULE` import: the application's services, how to register them over the
 * runtime the CLI opened, and what to do once before serving.
 */
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import type { Message } from "@bufbuild/protobuf";
import type { Runtime } from "../runtime/runtime.js";
import type {
  AccessCall,
  AuthorizeCall,
  AuthorizeFallback,
  AuthorizeResult,
  ResourceLoader,
  ResourceLoaders,
} from "../decide/app-callbacks.js";
import { CliError } from "./errors.js";

/** What {@link ServeApp.prepare} may return. */
export interface ServeAppStart {
  /**
   * Lines printed after the server's URL (demo users, how to try it), given
   * that URL; they replace the generic "log in" hint. Default: the hint.
   */
  readonly banner?: (url: string) => readonly string[];
}

/**
 * An application that `protoguard serve` runs: export one as the default
 * export of a module (or export `services`, `routes` and optionally
 * `prepare` and `staticDir` by name) and pass its path with `--routes`.
 * `protoguard.v1.AuthService` is served beside it.
 *
 * @example
 * ```ts
 * // dist/app.js, served with: npx protoguard serve --routes dist/app.js
 * import { defineServeApp } from "protoguard/server";
 * import { ProductService } from "./gen/shop/v1/product_pb.js";
 *
 * export default defineServeApp({
 *   services: [ProductService],
 *   routes(router, runtime) {
 *     router.service(ProductService, createProductService(runtime.database));
 *   },
 * });
 * ```
 */
export interface ServeApp {
  /** Every service `routes` registers: their rules are validated at start-up and listed by `policy`. Required. */
  readonly services: readonly DescService[];
  /** Registers the services; `runtime` holds the database, keys and password hasher. Required. */
  routes(router: ConnectRouter, runtime: Runtime): void;
  /**
   * Runs once after the database is migrated and before the port opens: your
   * own migrations, seed data. With worker processes (`serve --workers`) it
   * runs in the primary only, before the workers start. A failure stops the
   * server. Default: none.
   */
  prepare?(runtime: Runtime): Promise<ServeAppStart | void>;
  /** A directory of static files served under `/` (a browser page). Default: none. */
  readonly staticDir?: string;
  /**
   * Loaders of what rule conditions call `resource`, keyed
   * `"package.Service/Method"`, as `createAuth`'s `resources`, also given the
   * runtime (for its database). `protoguard policy --routes` lists which
   * methods have one. Default: none.
   */
  readonly resources?: Readonly<Record<string, ServeResourceLoader>>;
  /** The `authorize` code fallback, as `createAuth`'s, also given the runtime. Default: none. */
  authorize?(call: AuthorizeCall, runtime: Runtime): AuthorizeResult | Promise<AuthorizeResult>;
}

/**
 * A resource loader of a {@link ServeApp}: a `ResourceLoader` that is also
 * given the runtime the CLI opened.
 */
export type ServeResourceLoader = {
  // A method signature, so loaders may declare their own request type.
  load(request: Message, call: AccessCall, runtime: Runtime): unknown;
}["load"];

/** The `resources` and `authorize` options of `startServer` for `app`, bound to `runtime`. */
export function appAccess(
  app: ServeApp | undefined,
  runtime: Runtime,
): { resources?: ResourceLoaders; authorize?: AuthorizeFallback } {
  const access: { resources?: ResourceLoaders; authorize?: AuthorizeFallback } = {};
  if (app?.resources !== undefined) {
    access.resources = Object.fromEntries(
      Object.entries(app.resources).map(([key, load]): [string, ResourceLoader] => [
        key,
        (request, call) => load(request, call, runtime),
      ]),
    );
  }
  if (app?.authorize !== undefined) {
    const authorize = app.authorize.bind(app);
    access.authorize = (call) => authorize(call, runtime);
  }
  return access;
}

/** Identity function that type-checks a {@link ServeApp}. */
export function defineServeApp(app: ServeApp): ServeApp {
  return app;
}

/**
 * Imports `specifier` (a path relative to `cwd`, or a package name) and
 * reads a {@link ServeApp} from it.
 *
 * @throws {CliError} when the module cannot be loaded or does not export one.
 */
export async function loadServeApp(specifier: string, cwd: string = process.cwd()): Promise<ServeApp> {
  const isPath = specifier.startsWith(".") || specifier.startsWith("/") || /\.[cm]?[jt]s$/.test(specifier);
  const url = isPath ? pathToFileURL(resolve(cwd, specifier)).href : specifier;
  let loaded: Record<string, unknown>;
  try {
    loaded = (await import(url)) as Record<string, unknown>;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const reason =
      code === "ERR_MODULE_NOT_FOUND" || code === "ERR_UNKNOWN_FILE_EXTENSION" ? String(code) : describe(error);
    throw new CliError(`--routes ${specifier} cannot be loaded: ${reason}`, { cause: error });
  }
  const candidate = (isServeApp(loaded["default"]) ? loaded["default"] : loaded) as Partial<ServeApp>;
  if (!isServeApp(candidate)) {
    throw new CliError(
      `--routes ${specifier} must export a ServeApp (default export, or named "services" and "routes")`,
    );
  }
  return candidate;
}

function isServeApp(value: unknown): value is ServeApp {
  if (typeof value !== "object" || value === null) return false;
  const { services, routes } = value as Partial<ServeApp>;
  return Array.isArray(services) && services.every((s) => s?.kind === "service") && typeof routes === "function";
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message.split("\n")[0]! : String(error);
}
