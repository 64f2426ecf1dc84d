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
import { createKeyring } from "../src/token/keys.js";
import { createTokenIssuer } from "../src/token/issuer.js";
import { createTokenVerifier } from "../src/token/verifier.js";

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --expose-gc");
const users = JSON.parse(await text(process.stdin)) as number[];
/** Live heap after full collections, with turns of the event loop between them so V8's concurrent sweeping is done. */
const heap = async () => {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return process.memoryUsage().heapUsed;
};

const keyring = await createKeyring([{ alg: "HS256", secret: process.env.BENCH_SECRET! }]);
const issuer = createTokenIssuer({ keyring, accessTtlSeconds: 3600 });
/** Trials per figure: a single heap delta strays by megabytes from run to run; the median does not. */
const TRIALS = 3;

async function tokenTrial(): Promise<number> {
  const verifier = createTokenVerifier({
    keyring,
    cache: { maxEntries: users.length + 1 },
    maxLifetimeSeconds: 3600,
  });
  let tokens: string[] = [];
  for (const user of users) tokens.push((await issuer.issueAccess(user)).token);
  // Flat copies, as a server gets them from the HTTP/2 parser (the issuer's
  // strings are concatenation trees, bigger until V8 flattens them).
  tokens = tokens.map((token) => Buffer.from(token, "latin1").toString("latin1"));
  const before = await heap();
  for (const token of tokens) {
    const result = await verifier.verify(token, "access");
    if (!result.ok) throw new Error(`token of a bench user refused: ${result.reason}`);
  }
  // The strings were ours until now; from here on only the cache holds them,
  // as it alone would in a server (the request that carried one is gone).
  // The baseline held them, the second measure does not: add them back.
  const strings = tokens.reduce((sum, t) => sum + t.length + 16, 0);
  tokens.length = 0;
  const after = await heap();
  if (verifier.cacheSize !== users.length) throw new Error(`the token cache holds ${verifier.cacheSize} entries`);
  return (after - before + strings) / users.length;
}

const tokenTrials: number[] = [];
for (let trial = 0; trial < TRIALS; trial++) tokenTrials.push(await tokenTrial());

// Imported only now, so loading them is not part of a token trial.
const { openDatabase } = await import("../src/store/database.js");
const { createPrincipalSource } = await import("../src/principals/source.js");
const database = await openDatabase({ url: process.env.DATABASE_URL! });
let permissions = 0;

async function principalTrial(): Promise<number> {
  // As a server runs it: listening, so a known user's tokens are judged in memory and the cache
  // holds one entry per user (a token with `exp` is not cached by itself).
  const principals = await createPrincipalSource({ database, maxEntries: users.length + 1 });
  for (let waited = 0; !principals.revocationsInMemory; waited += 10) {
    if (waited > 10_000) throw new Error("the principal source never judged tokens in memory");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const facts = () => ({ jti: randomUUID(), issuedAt: Date.now() / 1000, expiresAt: Date.now() / 1000 + 300 });
  await principals.load(users[0]!, facts());
  const before = await heap();
  for (let i = 0; i < users.length; i += 50) {
    const batch = users.slice(i, i + 50);
    const lookups = await Promise.all(batch.map((user) => principals.load(user, facts())));
    for (const lookup of lookups) {
      if (lookup.status !== "ok") throw new Error(`bench user not found: ${lookup.status}`);
      permissions = lookup.principal.permissions.size;
    }
  }
  const bytes = ((await heap()) - before) / users.length;
  // One entry per user: the warm-up's user is loaded again in the loop (a new token, the same entry).
  if (principals.size !== users.length) throw new Error(`the user cache holds ${principals.size} entries`);
  await principals.close();
  return bytes;
}

const principalTrials: number[] = [];
for (let trial = 0; trial < TRIALS; trial++) principalTrials.push(await principalTrial());
await database.close();
const median = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)]!;
process.stdout.write(
  JSON.stringify({
    entries: users.length,
    tokenBytes: median(tokenTrials),
    principalBytes: median(principalTrials),
    permissionsPerUser: permissions,
    trials: { token: tokenTrials.map(Math.round), principal: principalTrials.map(Math.round) },
  }),
);
