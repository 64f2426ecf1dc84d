/**
 * A server behind PgBouncer says what its database path is doing: health and /metrics show a
 * stalled query path and notifications that stopped arriving, decisions stay within the
 * heartbeat bound meanwhile, and a failed lookup logs the driver's reason without the query's
 * parameters.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { pino } from "pino";
import { exampleResources, exampleRoutes } from "../example/services.js";
import { AccountService } from "../gen/example/v1/account_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/grpc/health/v1/health_pb.js";
import { createKeyring, createTokenIssuer, createTokenVerifier } from "../src/exports/protoguard.js";
import { startServer } from "../src/exports/server.js";
import { createUser, openDatabase, setUserActive } from "../src/exports/store.js";
import { createTestDatabase } from "../src/exports/testing.js";
import { bearer } from "./helpers/connect.js";
import { postgresUrl } from "./helpers/env.js";
import { databaseName, skipWithoutPgbouncer, startPgbouncer } from "./helpers/pgbouncer.js";
import { TEST_SECRET } from "./helpers/secrets.js";

/** Polls `check` until it returns true, failing after `ms`. */
async function within(ms: number, what: string, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > ms) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

it("health, /metrics and logs follow the database path behind PgBouncer", {
  skip: skipWithoutPgbouncer,
  timeout: 90_000,
}, async (t) => {
  const fixture = await createTestDatabase({ driver: "postgres", url: postgresUrl! });
  const name = databaseName(fixture.url!);
  const queries = await startPgbouncer({ poolMode: "transaction", poolSize: 4 });
  const listens = await startPgbouncer({ poolMode: "session", poolSize: 2 });
  const database = await openDatabase({ url: queries.url(name), listenUrl: listens.url(name), max: 4 });
  const keyring = await createKeyring([{ alg: "HS256", secret: TEST_SECRET }]);
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const server = await startServer({
    runtime: { database, keyring, verifier: createTokenVerifier({ keyring }) },
    routes: exampleRoutes({ database }),
    resources: exampleResources({ database }),
    port: 0,
    logger,
    invalidation: { heartbeatMs: 200, heartbeatTimeoutMs: 400 },
    databaseHealth: { probeIntervalMs: 200, probeTimeoutMs: 500 },
  });
  const session = new Http2SessionManager(server.url);
  const transport = createGrpcTransport({ baseUrl: server.url, sessionManager: session });
  const health = createClient(Health, transport);
  const accounts = createClient(AccountService, transport);
  const status = async (service: string) => (await health.check({ service })).status;
  const gauge = async (metric: string) => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const match = new RegExp(`^${metric} (\\S+)$`, "m").exec(text);
    return match === null ? undefined : Number(match[1]);
  };
  try {
    const issuer = createTokenIssuer({ keyring });
    const user = await createUser(fixture.db, { username: "watched" });
    const token = (await issuer.issueAccess(user.id)).token;
    await accounts.getProfile({}, bearer(token));

    assert.equal(await status("protoguard.notifications"), Status.SERVING);
    assert.equal(await status("protoguard.database"), Status.SERVING);
    assert.equal(await gauge("protoguard_invalidation_listening"), 1);
    assert.equal(await gauge("protoguard_database_up"), 1);

    // The LISTEN path freezes: its connection stays open, nothing arrives on it.
    listens.pause();
    const downMs = await within(3_000, "notifications reported down", async () => {
      return (
        (await status("protoguard.notifications")) === Status.NOT_SERVING &&
        (await gauge("protoguard_invalidation_listening")) === 0
      );
    });
    assert.equal(await status(""), Status.SERVING, "decisions are still right: the server keeps serving");
    // A change whose notification cannot arrive is still honoured within the heartbeat bound.
    await setUserActive(fixture.db, "watched", false);
    const honouredMs = await within(1_500, "deactivation honoured while notifications are down", async () => {
      try {
        await accounts.getProfile({}, bearer(token));
        return false;
      } catch (error) {
        return ConnectError.from(error).code === Code.Unauthenticated;
      }
    });
    assert.ok(honouredMs < 1_500);
    t.diagnostic(`notifications reported down after ${downMs} ms; deactivation honoured after ${honouredMs} ms`);
    listens.resume();
    await within(
      5_000,
      "notifications back",
      async () => (await status("protoguard.notifications")) === Status.SERVING,
    );
    assert.ok(
      lines.some((line) => line["msg"] === "invalidation notifications down: caches flushed at every heartbeat"),
    );

    // The query path stalls: the whole instance says so.
    queries.pause();
    const stallMs = await within(3_000, "stalled database reported", async () => {
      return (
        (await status("")) === Status.NOT_SERVING &&
        (await status("protoguard.database")) === Status.NOT_SERVING &&
        (await gauge("protoguard_database_up")) === 0
      );
    });
    t.diagnostic(`stalled query path reported after ${stallMs} ms`);
    queries.resume();
    await within(5_000, "database back", async () => (await status("")) === Status.SERVING);

    // The query path goes away: the lookup's log line names the driver's reason, not the query.
    await setUserActive(fixture.db, "watched", true);
    const fresh = (await issuer.issueAccess(user.id)).token;
    const jti = JSON.parse(Buffer.from(fresh.split(".")[1]!, "base64url").toString())["jti"] as string;
    await queries.close();
    lines.length = 0;
    const refused = await accounts.getProfile({}, bearer(fresh)).then(
      () => undefined,
      (error: unknown) => ConnectError.from(error),
    );
    assert.equal(refused?.code, Code.Unavailable);
    const logged = lines.find((line) => line["msg"] === "auth decision" && line["outcome"] === "unavailable");
    assert.ok(logged !== undefined, "the unavailable decision is logged");
    const error = logged["error"] as { code?: string };
    assert.match(String(error.code), /^(ECONN|CONNECTION_|08|57P)/, `driver reason in ${JSON.stringify(logged)}`);
    const text = JSON.stringify(lines);
    assert.ok(!text.includes(jti), "no query parameter (the token's jti) in the logs");
    assert.ok(!text.includes("Failed query"), "no query text in the logs");
  } finally {
    session.abort();
    await server.close();
    await database.close();
    await queries.close();
    await listens.close();
    await fixture.close();
  }
});
