// /metrics reports the hit and miss totals of the two caches a call goes
// through: the verified-token cache (a miss costs a signature check) and the
// user cache (a miss costs a database lookup). An operator sizes the caches
// by these (README "Performance").
import assert from "node:assert/strict";
import { it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { pino } from "pino";
import { exampleResources, exampleRoutes } from "../example/services.js";
import { AccountService } from "../gen/example/v1/account_pb.js";
import { createKeyring, createTokenIssuer, createTokenVerifier } from "../src/exports/protoguard.js";
import { startServer } from "../src/exports/server.js";
import { createUser } from "../src/exports/store.js";
import { createTestDatabase } from "../src/testing/database.js";
import { bearer } from "./helpers/connect.js";
import { TEST_SECRET } from "./helpers/secrets.js";

/** `protoguard_cache_{hits,misses}_total` by cache, from a scrape. */
async function cacheTotals(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const totals: Record<string, number> = {};
  for (const match of text.matchAll(/^protoguard_cache_(hits|misses)_total\{cache="(\w+)"\} (\d+)$/gm)) {
    totals[`${match[2]} ${match[1]}`] = Number(match[3]);
  }
  return totals;
}

it("/metrics counts cache hits and misses of the token and user caches", async () => {
  const database = await createTestDatabase();
  const keyring = await createKeyring([{ alg: "HS256", secret: TEST_SECRET }]);
  const server = await startServer({
    runtime: { database, keyring, verifier: createTokenVerifier({ keyring }) },
    routes: exampleRoutes({ database }),
    resources: exampleResources({ database }),
    port: 0,
    logger: pino({ level: "silent" }),
  });
  const session = new Http2SessionManager(server.url);
  try {
    const user = await createUser(database.db, { username: "alice", email: "alice@example.com" });
    const issuer = createTokenIssuer({ keyring });
    const [first, second] = [(await issuer.issueAccess(user.id)).token, (await issuer.issueAccess(user.id)).token];
    const client = createClient(AccountService, createGrpcTransport({ baseUrl: server.url, sessionManager: session }));
    assert.deepEqual(await cacheTotals(server.url), {
      "principal hits": 0,
      "principal misses": 0,
      "token hits": 0,
      "token misses": 0,
    });
    for (const token of [first, first, first, second]) await client.getProfile({}, bearer(token));
    // Each token is verified once; the user is looked up once: the second
    // token of a cached user is judged in memory (user cache + revoked set).
    assert.deepEqual(await cacheTotals(server.url), {
      "principal hits": 3,
      "principal misses": 1,
      "token hits": 2,
      "token misses": 2,
    });
    const text = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(text, /^protoguard_revoked_tokens 0$/m);
    assert.match(text, /^protoguard_revocations_in_memory 1$/m);
  } finally {
    session.abort();
    await server.close();
    await database.close();
  }
});
