/**
 * Bytes per cached entry, for sizing the caches: run by bench/run.ts as
 * `node --expose-gc --import tsx bench/memory.ts` with DATABASE_URL (a
 * seeded bench database), BENCH_SECRET, and the user ids to use as JSON on
 * standard input. Fills a token verifier's cache and a principal source's
 * cache with one entry per user and prints, as JSON, the heap each holds
 * per entry after a full garbage collection: what the entries themselves
 * keep alive (the token string, the claims, the user with its permission
 * and group sets, the LRU and index nodes).
 */
import { randomUUID } from "node:crypto";
import { text } from "node:stream/consumers";
import { createPrincipalSource } from "../src/principals/source.js";
import { openDatabase } from "../src/store/database.js";
import { createKeyring } from "../src/token/keys.js";
import { createTokenIssuer } from "../src/token/issuer.js";
import { createTokenVerifier } from "../src/token/verifier.js";

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --expose-gc");
const users = JSON.parse(await text(process.stdin)) as number[];
const heap = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

const keyring = await createKeyring([{ alg: "HS256", secret: process.env.BENCH_SECRET! }]);
const issuer = createTokenIssuer({ keyring, accessTtlSeconds: 3600 });
const verifier = createTokenVerifier({
  keyring,
  cache: { maxEntries: users.length + 1 },
  maxLifetimeSeconds: 3600,
});
// Warm: jose's key import and the code paths, before the baseline.
await verifier.verify((await issuer.issueAccess(users[0]!)).token, "access");
let tokens: string[] = [];
for (const user of users) tokens.push((await issuer.issueAccess(user)).token);
// Flat copies, as a server gets them from the HTTP/2 parser (the issuer's
// strings are concatenation trees, bigger until V8 flattens them).
tokens = tokens.map((token) => Buffer.from(token, "latin1").toString("latin1"));
const beforeTokens = heap();
for (const token of tokens) {
  const result = await verifier.verify(token, "access");
  if (!result.ok) throw new Error(`token of a bench user refused: ${result.reason}`);
}
// The strings were ours until now; from here on only the cache holds them,
// as it alone would in a server (the request that carried one is gone).
const tokenBytesOfStrings = tokens.reduce((sum, t) => sum + t.length + 16, 0);
tokens.length = 0;
const afterTokens = heap();
// The baseline held the strings, the second measure does not: add them back.
const tokenBytes = (afterTokens - beforeTokens + tokenBytesOfStrings) / users.length;

const database = await openDatabase({ url: process.env.DATABASE_URL! });
const principals = await createPrincipalSource({ database, maxEntries: users.length + 1, listen: false });
await principals.load(users[0]!, { jti: randomUUID(), issuedAt: Date.now() / 1000 });
const beforePrincipals = heap();
let permissions = 0;
for (let i = 0; i < users.length; i += 50) {
  const batch = users.slice(i, i + 50);
  const lookups = await Promise.all(
    batch.map((user) => principals.load(user, { jti: randomUUID(), issuedAt: Date.now() / 1000 })),
  );
  for (const lookup of lookups) {
    if (lookup.status !== "ok") throw new Error(`bench user not found: ${lookup.status}`);
    permissions = lookup.principal.permissions.size;
  }
}
const principalBytes = (heap() - beforePrincipals) / users.length;
await principals.close();
await database.close();
process.stdout.write(
  JSON.stringify({ entries: users.length, tokenBytes, principalBytes, permissionsPerUser: permissions }),
);
