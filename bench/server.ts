/**
 * One benchmark variant as its own server process. The orchestrator
 * (bench/run.ts) starts it, reads the `READY <port>` line, drives it with a
 * load generator from another process, and reads its CPU time and memory
 * from /proc.
 *
 * The protoguard variants are `protoguard serve` itself (bench/run.ts starts
 * the CLI); this file serves only what the CLI cannot be asked for:
 *
 * Variants (BENCH_VARIANT):
 * - ceiling:     the example AccountService/GetProfile with no auth layer,
 *                on the same listener (`listen`); a fixed caller is put in
 *                the context, so the handler runs exactly the same code.
 * - no-prefilter: `startServer` with the options `protoguard serve` passes,
 *                the example app's routes, and the HTTP pre-filter off, to
 *                show what the pre-filter saves; decision logs go to the
 *                file BENCH_LOG_FILE as the CLI's go to its standard output.
 * - handwritten: what a user writes without us: an interceptor calling
 *                `jsonwebtoken.verify`, then two queries per call (the user,
 *                then its permissions) on PostgreSQL.
 * - bare-h2:     a bare Node http2 server answering every stream with the
 *                trailers-only UNAUTHENTICATED error straight from the
 *                headers: the floor for a refusal in Node.
 */
import * as http2 from "node:http2";
import { createContextValues, Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import jwt from "jsonwebtoken";
import { pino } from "pino";
import postgres from "postgres";
import { exampleRoutes } from "../example/services.js";
import exampleApp from "../example/app.js";
import { appAccess } from "../src/cli/app.js";
import { servedRoutes } from "../src/cli/serve.js";
import { type Principal } from "../src/exports/protoguard.js";
import { principalKey } from "../src/exports/core.js";
import { loadConfig } from "../src/runtime/config.js";
import { openRuntime } from "../src/runtime/runtime.js";
import { listen } from "../src/server/transport/listen.js";
import { startServer } from "../src/server/serve.js";
import { openDatabase } from "../src/store/database.js";

const variant = process.env.BENCH_VARIANT;
const env = { ...process.env, PORT: "0" };

function ready(port: number): void {
  process.stdout.write(`READY ${port}\n`);
}

async function main(): Promise<void> {
  switch (variant) {
    case "ceiling": {
      // The example routes need a database handle; GetProfile never touches it.
      const database = await openDatabase({});
      const caller: Principal = {
        id: 1,
        username: "bench",
        email: "bench@example.com",
        isStaff: false,
        isSuperuser: false,
        permissions: new Set(["shop.view_order", "products.change_product"]),
      };
      const handler = connectNodeAdapter({
        routes: exampleRoutes({ database }),
        contextValues: () => createContextValues().set(principalKey, caller),
      });
      ready((await listen({ handler, port: 0 })).port);
      return;
    }
    case "no-prefilter": {
      const config = loadConfig(env);
      const runtime = await openRuntime(config, { migrate: false });
      const server = await startServer({
        runtime,
        routes: servedRoutes(runtime, exampleApp),
        // The example's resource loaders, as `protoguard serve` passes them.
        ...appAccess(exampleApp, runtime),
        port: 0,
        host: config.host,
        principalCacheEntries: config.cacheEntries,
        principalCacheMaxAgeMs: config.cacheMaxAgeMs,
        prefilter: false,
        // What `protoguard serve` writes to its standard output, synchronously.
        logger: pino(
          { level: config.logLevel, base: { name: "protoguard" } },
          pino.destination({ dest: process.env.BENCH_LOG_FILE ?? "/dev/null", sync: true }),
        ),
      });
      ready(server.port);
      return;
    }
    case "handwritten": {
      const secret = process.env.PROTOGUARD_JWT_SECRET!;
      const sql = postgres(process.env.DATABASE_URL!, { max: 10, onnotice: () => {} });
      // The interceptor most services start with: verify, load the user,
      // load its permissions, put it in the context.
      const auth: Interceptor = (next) => async (req) => {
        const header = req.header.get("authorization") ?? "";
        if (!header.startsWith("Bearer ")) throw new ConnectError("authentication required", Code.Unauthenticated);
        let claims: jwt.JwtPayload;
        try {
          claims = jwt.verify(header.slice(7), secret, { algorithms: ["HS256"] }) as jwt.JwtPayload;
        } catch {
          throw new ConnectError("invalid token", Code.Unauthenticated);
        }
        const [user] =
          await sql`select id, username, email, is_active, is_staff, is_superuser from users where id = ${claims.user_id}`;
        if (user === undefined || !user.is_active) throw new ConnectError("invalid user", Code.Unauthenticated);
        const rows = await sql`
          select p.app_label || '.' || p.codename as name from user_permissions up join permissions p on p.id = up.permission_id where up.user_id = ${user.id}
          union
          select p.app_label || '.' || p.codename from user_groups ug join group_permissions gp on gp.group_id = ug.group_id join permissions p on p.id = gp.permission_id where ug.user_id = ${user.id}`;
        req.contextValues.set(principalKey, {
          id: user.id,
          username: user.username,
          email: user.email,
          isStaff: user.is_staff,
          isSuperuser: user.is_superuser,
          permissions: new Set(rows.map((r) => r.name as string)),
        });
        return next(req);
      };
      const database = await openDatabase({});
      const handler = connectNodeAdapter({ routes: exampleRoutes({ database }), interceptors: [auth] });
      ready((await listen({ handler, port: 0 })).port);
      return;
    }
    case "bare-h2": {
      const server = http2.createServer();
      server.on("stream", (stream) => {
        stream.on("error", () => {});
        stream.respond(
          {
            ":status": 200,
            "content-type": "application/grpc",
            "grpc-status": "16",
            "grpc-message": "authentication required",
          },
          { endStream: true },
        );
        if (!stream.readableEnded) stream.close(http2.constants.NGHTTP2_NO_ERROR);
      });
      server.listen(0, "127.0.0.1", () => {
        const address = server.address();
        ready(typeof address === "object" && address !== null ? address.port : 0);
      });
      return;
    }
    default:
      throw new Error(`unknown BENCH_VARIANT ${String(variant)}`);
  }
}

// Exit cleanly on SIGTERM so `node --cpu-prof` writes its profile when the
// orchestrator (or a person profiling a variant) stops the server.
process.once("SIGTERM", () => process.exit(0));

main().catch((error: unknown) => {
  process.stderr.write(`bench server ${variant}: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
