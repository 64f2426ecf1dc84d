/**
 * `protoguard serve`: the application named by `--routes` (or the CLI's
 * default application, none in the package) on the one-port server, with
 * `protoguard.v1.AuthService` handing out tokens. Configured by the
 * environment (see `loadConfig`).
 */
import { stat, readFile } from "node:fs/promises";
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { pino, type Logger } from "pino";
import { AuthService } from "../../gen/protoguard/v1/auth_pb.js";
import { createAuthService } from "../lifecycle/auth-service.js";
import { ConfigError, loadConfig, parseWorkers, type ProtoguardConfig } from "../runtime/config.js";
import { openRuntime, type Runtime } from "../runtime/runtime.js";
import { startServer, type RunningServer } from "../server/serve.js";
import { onShutdownSignals } from "../server/shutdown.js";
import { isServerWorker, resolveWorkers, type WorkersOption } from "../server/workers.js";
import { appAccess, loadServeApp, type ServeApp } from "./app.js";
import { parseArgs } from "./args.js";
import { PROGRAM, type Command } from "./io.js";
import { EXIT_OK, UsageError } from "./errors.js";
import { simplejwtAdoptionFromConfig } from "./simplejwt-adoption.js";

const USAGE = [
  `usage: ${PROGRAM} serve [--routes MODULE] [--port N] [--workers N|auto]`,
  "  Serves your services and protoguard.v1.AuthService on one port (Connect, gRPC, gRPC-Web),",
  "  with gRPC health and reflection, /metrics and /.well-known/jwks.json.",
  "  --routes MODULE  a module exporting a ServeApp (see defineServeApp in protoguard/server);",
  "                   without it, only AuthService is served (a token service)",
  "  --port N         TCP port; 0 picks a free one. Default: PORT, else 8080.",
  "  --workers N|auto server processes sharing the port (auto: one per core). Default:",
  "                   PROTOGUARD_WORKERS, else auto; always 1 on the embedded database.",
  "  Stops gracefully on SIGTERM or SIGINT.",
];

/** The services `serve` registers for `app`: the app's, then AuthService unless the app has it. */
export function servedServices(app: ServeApp | undefined): readonly DescService[] {
  const own = app?.services ?? [];
  return own.some((s) => s.typeName === AuthService.typeName) ? own : [...own, AuthService];
}

/**
 * Registers the services of `app` over `runtime`, and the AuthService
 * sharing its database, keys and password hasher, with the Login admission
 * of its configuration.
 */
export function servedRoutes(
  runtime: Runtime,
  app: ServeApp | undefined,
  logger?: Pick<Logger, "warn">,
): (router: ConnectRouter) => void {
  const ownsAuthService = app?.services.some((s) => s.typeName === AuthService.typeName) ?? false;
  const auth = ownsAuthService
    ? undefined
    : createAuthService({
        database: runtime.database,
        issuer: runtime.issuer,
        verifier: runtime.verifier,
        passwordHasher: runtime.passwordHasher,
        serviceTokenTtlSeconds: runtime.config.serviceTokenTtlSeconds,
        refreshReuseGraceSeconds: runtime.config.refreshReuseGraceSeconds,
        simplejwt: simplejwtAdoptionFromConfig(runtime.config),
        loginAdmission: {
          burst: runtime.config.loginPeerBurst,
          perMinute: runtime.config.loginPeerPerMinute,
          maxPeers: runtime.config.loginMaxPeers,
        },
        // Never budgeted like refusals: each one is written in full.
        ...(logger !== undefined && { onSecurityEvent: (event) => logger.warn(event, "security event") }),
      });
  return (router) => {
    app?.routes(router, runtime);
    if (auth !== undefined) router.service(AuthService, auth);
  };
}

/**
 * The application `serve` and `policy` use: the module named by `--routes`,
 * else the CLI's default (the repository's example wires one in), else none.
 */
export async function resolveApp(
  routesFlag: string | undefined,
  defaultApp: (() => Promise<ServeApp>) | undefined,
): Promise<ServeApp | undefined> {
  if (routesFlag !== undefined) return loadServeApp(routesFlag);
  return defaultApp?.();
}

/**
 * `protoguard serve [--port N]`. Resolves with 0 once a SIGTERM or SIGINT
 * has shut the server down gracefully. Start-up failures (configuration,
 * keys, database, rules, port) are thrown after everything opened so far is
 * closed; the CLI runner prints them as one line and exits 1.
 */
export const serveCommand: Command = async (args, env, io, options) => {
  const parsed = parseArgs(args, { port: "string", routes: "string", workers: "string" });
  if (parsed.help) {
    for (const line of USAGE) io.out(line);
    return EXIT_OK;
  }
  if (parsed.positionals.length > 0) {
    throw usage(`unexpected argument ${JSON.stringify(parsed.positionals[0])}`);
  }
  const portFlag = parsed.flags.port === undefined ? undefined : parsePort(parsed.flags.port);
  const workersFlag = parsed.flags.workers === undefined ? undefined : parseWorkersFlag(parsed.flags.workers);

  const config = loadConfig(env);
  const workers = servedWorkers(workersFlag ?? config.workers, config);
  // Checked before the database opens: pino would only fail later, with a
  // message that does not name the variable.
  if (!Object.hasOwn(pino.levels.values, config.logLevel) && config.logLevel !== "silent") {
    const levels = [...Object.keys(pino.levels.values), "silent"].join(", ");
    throw new ConfigError(`PROTOGUARD_LOG_LEVEL must be one of ${levels}, got "${config.logLevel}"`);
  }
  const app = await resolveApp(parsed.flags.routes, options?.defaultApp);
  // A worker runs this same command: the primary has migrated already.
  const worker = isServerWorker();
  const runtime = await openRuntime(config, {
    warn: (message) => io.err(`${PROGRAM}: warning: ${message}`),
    migrate: !worker,
  });
  let started: Started;
  try {
    started = await start(runtime, config, app, portFlag ?? config.port, workers);
  } catch (error) {
    await runtime.close();
    throw error;
  }
  const { server } = started;

  // The primary speaks for all; a worker closes when the primary tells it to.
  if (!worker) for (const line of banner(server.url, config, started)) io.out(line);
  await new Promise<void>((resolve, reject) => {
    const stopListening = onShutdownSignals(async (signal) => {
      io.out(`${PROGRAM}: ${signal} received, finishing in-flight calls`);
      try {
        await server.close();
        resolve();
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      } finally {
        stopListening();
      }
    });
  });
  return EXIT_OK;
};

/** What a successful start produced, for the banner. */
interface Started {
  server: RunningServer;
  /** What the application asked to print after the URL. */
  banner: ((url: string) => readonly string[]) | undefined;
}

async function start(
  runtime: Runtime,
  config: ProtoguardConfig,
  app: ServeApp | undefined,
  port: number,
  workers: number,
): Promise<Started> {
  const logger = pino({ level: config.logLevel, base: { name: "protoguard" } }, pino.destination(1));
  // Once per server, not per worker: migrations and seed data.
  const prepared = isServerWorker() ? undefined : ((await app?.prepare?.(runtime)) ?? undefined);
  const tls =
    config.tlsCertPath !== undefined && config.tlsKeyPath !== undefined
      ? {
          cert: await readConfigFile("PROTOGUARD_TLS_CERT", config.tlsCertPath),
          key: await readConfigFile("PROTOGUARD_TLS_KEY", config.tlsKeyPath),
          ...(config.tlsClientCaPath !== undefined && {
            clientCa: await readConfigFile("PROTOGUARD_TLS_CLIENT_CA", config.tlsClientCaPath),
          }),
        }
      : undefined;
  const staticDir = app?.staticDir;
  const hasPage =
    staticDir !== undefined &&
    (await stat(staticDir).then(
      (info) => info.isDirectory(),
      () => false,
    ));
  const server = await startServer({
    runtime,
    routes: servedRoutes(runtime, app, logger),
    port,
    host: config.host,
    tls,
    corsOrigins: config.corsOrigins,
    logger,
    principalCacheEntries: config.cacheEntries,
    principalCacheMaxAgeMs: config.cacheMaxAgeMs,
    clientAddress: { trustedProxies: config.trustedProxies, forwardedHeader: config.forwardedHeader },
    headersTimeoutMs: config.headersTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
    keepAliveTimeoutMs: config.keepAliveTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    maxConcurrentStreams: config.maxConcurrentStreams,
    maxConnections: config.maxConnections,
    maxConnectionsPerPeer: config.maxConnectionsPerPeer,
    maxWatchStreams: config.maxWatchStreams,
    maxWatchStreamsPerConnection: config.maxWatchStreamsPerConnection,
    auditRetentionDays: config.auditRetentionDays,
    rateLimits: {
      redisUrl: config.rateLimitRedisUrl,
      onRedisError: config.rateLimitOnRedisError,
      redisTimeoutMs: config.rateLimitRedisTimeoutMs,
      keyPrefix: config.rateLimitKeyPrefix,
    },
    ...appAccess(app, runtime),
    ...(config.gatewayHeader !== undefined && {
      gateway: {
        header: config.gatewayHeader,
        trustedPeers: config.gatewayTrustedPeers,
        // Claims of the trusted issuers arrive by gateway too: mapped the same way (the runtime
        // read and validated PROTOGUARD_TRUSTED_ISSUERS once already).
        trustedIssuers: runtime.trustedIssuers ?? [],
        ...(config.gatewayUserIdClaim !== undefined && { userIdClaim: config.gatewayUserIdClaim }),
        ...(config.issuer !== undefined && { issuer: config.issuer }),
        ...(config.audience !== undefined && { audience: config.audience }),
        leewaySeconds: config.leewaySeconds,
      },
    }),
    workers,
    adminService: config.adminService,
    ...(hasPage && { staticDir }),
    adminConsole: config.adminConsole,
  });
  return { server, banner: prepared?.banner };
}

async function readConfigFile(variable: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new ConfigError(`${variable} (${path}) cannot be read: ${reason}`);
  }
}

function parseWorkersFlag(raw: string): WorkersOption {
  try {
    return parseWorkers(raw, "--workers");
  } catch (error) {
    throw usage((error as Error).message);
  }
}

/**
 * How many processes serve: `auto` is one per core on PostgreSQL and 1 on
 * the embedded database, which one process holds; more than one asked for
 * explicitly there is refused before anything opens.
 */
function servedWorkers(requested: WorkersOption, config: ProtoguardConfig): number {
  if (config.databaseUrl !== undefined) return resolveWorkers(requested);
  if (requested === "auto" || requested === 1) return 1;
  throw new ConfigError(
    `--workers ${requested} (or PROTOGUARD_WORKERS) needs DATABASE_URL: the embedded database (PROTOGUARD_DATA_DIR) is held by one process; use PostgreSQL or one worker`,
  );
}

function parsePort(raw: string): number {
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port > 65_535) throw usage(`--port must be an integer from 0 to 65535, got "${raw}"`);
  return port;
}

function usage(message: string): UsageError {
  const error = new UsageError(message);
  error.command = "serve";
  return error;
}

/** What an operator needs to start calling. */
function banner(url: string, config: ProtoguardConfig, started: Started): string[] {
  const workers = started.server.workers;
  const processes = workers === undefined ? "" : `, ${workers.count} worker processes`;
  const lines = [
    `${PROGRAM}: serving on ${url} (Connect, gRPC and gRPC-Web; health, reflection, /metrics${processes})`,
  ];
  if (config.adminConsole) lines.push(`${PROGRAM}: admin console at ${url}/admin/`);
  if (started.banner !== undefined) return [...lines, "", ...started.banner(url), ""];
  if (config.databaseUrl === undefined) {
    lines.push("", `Create a user with: ${PROGRAM} user create <username> --password <password>`);
  }
  lines.push(
    "",
    'Log in, then call your services with -H "Authorization: Bearer $TOKEN" (TOKEN: the answer\'s accessToken):',
    `  npx buf curl --protocol connect -d '{"username":"<username>","password":"<password>"}' ${url}/protoguard.v1.AuthService/Login`,
    "",
  );
  return lines;
}
