/**
 * `protoguard serve`: the example application on the one-port server, with
 * the AuthService that hands out tokens. Configured by the environment
 * (see `loadConfig`); on a fresh embedded database it creates demo users and
 * prints how to call it.
 */
import { stat, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { pino } from "pino";
import { AuthService } from "../../gen/protoguard/v1/auth_pb.js";
import { migrateExample } from "../../example/migrate.js";
import { createDemoUsers, seedExample, type DemoUser } from "../../example/seed.js";
import { EXAMPLE_SERVICES, exampleRoutes } from "../../example/services.js";
import { createAuthService } from "../lifecycle/auth-service.js";
import { ConfigError, loadConfig, type ProtoguardConfig } from "../runtime/config.js";
import { openRuntime, type Runtime } from "../runtime/runtime.js";
import { startServer, type RunningServer } from "../server/serve.js";
import { onShutdownSignals } from "../server/shutdown.js";
import { parseArgs } from "./args.js";
import { EXIT_OK, PROGRAM, UsageError, type Command } from "./io.js";

/** Every application service `serve` registers (health and reflection come on top, from the server). */
export const SERVED_SERVICES: readonly DescService[] = [...EXAMPLE_SERVICES, AuthService];

/**
 * The browser page, when it has been built (example/web). Served under `/`
 * if present; the server runs without it.
 */
const PAGE_DIR = fileURLToPath(new URL("../../example/web/dist", import.meta.url));

const USAGE = [
  `usage: ${PROGRAM} serve [--port N]`,
  "  Serves the example services and protoguard.v1.AuthService on one port (Connect, gRPC, gRPC-Web),",
  "  with gRPC health and reflection, /metrics and /.well-known/jwks.json.",
  "  --port N   TCP port; 0 picks a free one. Default: PORT, else 8080.",
  "  Stops gracefully on SIGTERM or SIGINT.",
];

/**
 * Registers {@link SERVED_SERVICES} over `runtime`: the example services and
 * the AuthService sharing its database, keys and password hasher.
 */
export function servedRoutes(runtime: Runtime): (router: ConnectRouter) => void {
  const example = exampleRoutes({ database: runtime.database });
  const auth = createAuthService({
    database: runtime.database,
    issuer: runtime.issuer,
    verifier: runtime.verifier,
    passwordHasher: runtime.passwordHasher,
  });
  return (router) => {
    example(router);
    router.service(AuthService, auth);
  };
}

/**
 * `protoguard serve [--port N]`. Resolves with 0 once a SIGTERM or SIGINT
 * has shut the server down gracefully. Start-up failures (configuration,
 * keys, database, rules, port) are thrown after everything opened so far is
 * closed; the CLI runner prints them as one line and exits 1.
 */
export const serveCommand: Command = async (args, env, io) => {
  const parsed = parseArgs(args, { port: "string" });
  if (parsed.help) {
    for (const line of USAGE) io.out(line);
    return EXIT_OK;
  }
  if (parsed.positionals.length > 0) {
    throw usage(`unexpected argument ${JSON.stringify(parsed.positionals[0])}`);
  }
  const portFlag = parsed.flags.port === undefined ? undefined : parsePort(parsed.flags.port);

  const config = loadConfig(env);
  // Checked before the database opens: pino would only fail later, with a
  // message that does not name the variable.
  if (!Object.hasOwn(pino.levels.values, config.logLevel) && config.logLevel !== "silent") {
    const levels = [...Object.keys(pino.levels.values), "silent"].join(", ");
    throw new ConfigError(`PROTOGUARD_LOG_LEVEL must be one of ${levels}, got "${config.logLevel}"`);
  }
  const runtime = await openRuntime(config, { warn: (message) => io.err(`${PROGRAM}: warning: ${message}`) });
  let started: Started;
  try {
    started = await start(runtime, config, portFlag ?? config.port);
  } catch (error) {
    await runtime.close();
    throw error;
  }
  const { server } = started;

  for (const line of banner(server.url, config, started)) io.out(line);
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
  demoUsers: DemoUser[];
  /** Orders created now, by owner, so the banner can suggest trying someone else's. */
  seededOrders: { username: string; ids: number[] }[];
}

async function start(
  runtime: Runtime,
  config: ProtoguardConfig,
  port: number,
): Promise<Started> {
  const logger = pino({ level: config.logLevel, base: { name: "protoguard" } }, pino.destination(1));
  await migrateExample(runtime.database);
  // Demo accounts with passwords printed to a terminal belong on a local,
  // embedded database only; a shared PostgreSQL gets its users from an admin.
  const demoUsers =
    config.databaseUrl === undefined ? await createDemoUsers(runtime.database.db, runtime.passwordHasher) : [];
  const owners = demoUsers.filter((u) => u.username === "alice" || u.username === "editor");
  const orders = await seedExample(runtime.database.db, { orderOwners: owners.map((u) => u.id) });
  const seededOrders = owners.map((owner) => ({
    username: owner.username,
    ids: orders.filter((o) => o.userId === owner.id).map((o) => o.id),
  }));
  const tls =
    config.tlsCertPath !== undefined && config.tlsKeyPath !== undefined
      ? {
          cert: await readConfigFile("PROTOGUARD_TLS_CERT", config.tlsCertPath),
          key: await readConfigFile("PROTOGUARD_TLS_KEY", config.tlsKeyPath),
        }
      : undefined;
  const hasPage = await stat(PAGE_DIR).then(
    (info) => info.isDirectory(),
    () => false,
  );
  const server = await startServer({
    runtime,
    routes: servedRoutes(runtime),
    port,
    host: config.host,
    ...(tls !== undefined && { tls }),
    corsOrigins: config.corsOrigins,
    logger,
    principalCacheEntries: config.cacheEntries,
    principalCacheMaxAgeMs: config.cacheMaxAgeMs,
    headersTimeoutMs: config.headersTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
    keepAliveTimeoutMs: config.keepAliveTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    maxConcurrentStreams: config.maxConcurrentStreams,
    maxConnections: config.maxConnections,
    maxConnectionsPerPeer: config.maxConnectionsPerPeer,
    maxWatchStreams: config.maxWatchStreams,
    maxWatchStreamsPerConnection: config.maxWatchStreamsPerConnection,
    ...(hasPage && { staticDir: PAGE_DIR }),
  });
  return { server, demoUsers, seededOrders };
}

async function readConfigFile(variable: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new ConfigError(`${variable} (${path}) cannot be read: ${reason}`);
  }
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

/** What an operator (or a newcomer trying the demo) needs to start calling. */
function banner(url: string, config: ProtoguardConfig, { demoUsers, seededOrders }: Started): string[] {
  const lines = [`${PROGRAM}: serving on ${url} (Connect, gRPC and gRPC-Web; health, reflection, /metrics)`];
  const curl = `npx buf curl --schema proto --protocol connect`;
  const alice = demoUsers.find((u) => u.username === "alice");
  if (demoUsers.length > 0) {
    lines.push("", "Demo users (created on this first start; the passwords are not shown again):");
    const width = Math.max(...demoUsers.map((u) => u.username.length));
    for (const user of demoUsers) lines.push(`  ${user.username.padEnd(width)}  ${user.password}  ${user.role}`);
    const owned = seededOrders.filter((o) => o.ids.length > 0).map((o) => `${o.ids.join(", ")} (${o.username})`);
    if (owned.length > 0) {
      lines.push(`Orders: ${owned.join("; ")}: UpdateOrder lets only the owner or staff change one.`);
    }
  } else if (config.databaseUrl === undefined) {
    lines.push("", "Users exist already; create more with: protoguard user create <username> --password <password>");
  }
  const password = alice?.password ?? "<password>";
  const username = alice?.username ?? "<username>";
  lines.push(
    "",
    "Log in:",
    `  ${curl} -d '{"username":"${username}","password":"${password}"}' ${url}/protoguard.v1.AuthService/Login`,
    "Then, with the accessToken of the answer in TOKEN:",
    `  ${curl} -H "Authorization: Bearer $TOKEN" ${url}/example.v1.AccountService/GetProfile`,
    "",
  );
  return lines;
}
