// A known user's new token is decided in memory: the user cache is keyed by
// user, and every instance keeps the revoked, unexpired jtis, loaded at start
// and kept current by the invalidation notifications. Query counts come from
// the source's public `misses` total (a miss is one database round trip),
// never from timing.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { sql } from "drizzle-orm";
import { createPrincipalSource, createUser, setUserActive, type CachedPrincipalSource } from "../src/exports/store.js";
import { insertRefreshToken, revokeFamily, revokeUserSessions } from "../src/store/refresh-tokens.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/database.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";

/** A new access token's facts: fresh jti, issued now, expiring in five minutes (seconds). */
function token(at = Date.now()) {
  return { jti: randomUUID(), issuedAt: at / 1000, expiresAt: at / 1000 + 300 };
}

/** Writes a revocation straight into the table, as any writer (psql, another tool) may. */
async function revokeInSql(database: TestDatabase, jti: string, userId: number, expiresAtMs: number): Promise<void> {
  await database.db.execute(
    sql`insert into revoked_tokens (jti, user_id, expires_at) values (${jti}, ${userId}, ${new Date(expiresAtMs).toISOString()}::timestamptz)`,
  );
}

async function eventually(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`not within ${ms} ms: ${what}`);
    await sleep(5);
  }
}

/**
 * Creates a user and waits until the source has heard of it: on PostgreSQL
 * the insert's notification arrives after the write returns, and would drop
 * a lookup cached before it (the counts below would then count a re-lookup).
 */
async function settledUser(principals: CachedPrincipalSource, database: TestDatabase, username: string) {
  let heard: number | undefined;
  const stop = principals.onInvalidation((event) => {
    if (event.kind === "user") heard = event.userId;
  });
  try {
    const user = await createUser(database.db, { username, email: `${username}@example.com` });
    await eventually(`the creation of ${username} is announced`, () => heard === user.id);
    return user;
  } finally {
    stop();
  }
}

function suite(open: () => Promise<TestDatabase>) {
  let database: TestDatabase;
  let principals: CachedPrincipalSource;
  before(async () => {
    database = await open();
    principals = await createPrincipalSource({ database });
  });
  after(async () => {
    await principals?.close();
    await database?.close();
  });

  it("a second fresh token of a cached user makes no database query", async () => {
    assert.equal(principals.revocationsInMemory, true);
    const user = await settledUser(principals, database, "repeat");
    const misses = principals.misses;
    assert.equal((await principals.load(user.id, token())).status, "ok");
    assert.equal(principals.misses, misses + 1, "the first token looks the user up");
    for (let i = 0; i < 5; i++) {
      const fresh = token();
      assert.equal(principals.peek(user.id, fresh)?.status, "ok", "peek answers a new token without I/O");
      assert.equal((await principals.load(user.id, token())).status, "ok");
    }
    assert.equal(principals.misses, misses + 1, "no new token after the first asked the database");
    // A token without exp (or past it) is not judged in memory: it is looked up.
    await principals.load(user.id, { jti: randomUUID(), issuedAt: Date.now() / 1000 });
    assert.equal(principals.misses, misses + 2);
  });

  it("revocations reach the in-memory judgement: by jti (logout), by credentials change, by deactivation", async () => {
    const user = await settledUser(principals, database, "revokee");
    const issued = Date.now();
    const access = token(issued);
    assert.equal((await principals.load(user.id, access)).status, "ok");
    // Logout: the family's access token is revoked by jti. On PGlite the
    // trigger's notification is delivered in-process before the write returns.
    const familyId = randomUUID();
    await insertRefreshToken(database.db, {
      jti: randomUUID(),
      familyId,
      userId: user.id,
      tokenHash: randomUUID().replaceAll("-", "").padEnd(64, "0"),
      issuedAt: new Date(issued),
      expiresAt: new Date(issued + 86_400_000),
      accessJti: access.jti,
      accessExpiresAt: new Date(access.expiresAt * 1000),
    });
    await revokeFamily(database.db, familyId, new Date());
    await eventually("the logout reaches the set", () => principals.peek(user.id, access)?.status === "revoked");
    const misses = principals.misses;
    assert.equal((await principals.load(user.id, access)).status, "revoked");
    assert.equal((await principals.load(user.id, token())).status, "ok", "another token of the user still works");
    assert.equal(principals.misses, misses, "judged in memory");
    assert.ok(principals.revokedTokens >= 1);

    // A credentials change (password change, "log out everywhere"): every
    // token issued before it is revoked, those issued after are not.
    const before = token();
    await principals.load(user.id, before);
    await sleep(5);
    await revokeUserSessions(database.db, user.id, new Date());
    await eventually("the change reaches the cache", () => principals.peek(user.id, token()) === undefined);
    assert.equal((await principals.load(user.id, before)).status, "revoked");
    await sleep(5);
    const after = token();
    // (For a few seconds after this process's own credentials change, the
    // user's new tokens are looked up one by one: the change may not have
    // been committed when it was announced.)
    assert.equal((await principals.load(user.id, after)).status, "ok");
    assert.equal((await principals.load(user.id, before)).status, "revoked");
    assert.equal((await principals.load(user.id, token(Date.now() - 1000))).status, "revoked");

    await setUserActive(database.db, "revokee", false);
    await eventually("deactivation reaches the cache", () => principals.peek(user.id, token()) === undefined);
    assert.equal((await principals.load(user.id, token())).status, "inactive");
    assert.equal((await principals.load(user.id, token())).status, "inactive");
  });

  it("the revoked set is loaded at start and shrinks when its tokens expire", async () => {
    const user = await settledUser(principals, database, "expiring");
    let now = Date.now();
    const jti = randomUUID();
    await revokeInSql(database, jti, user.id, now + 60_000);
    const live = await database.db.execute(
      sql`select count(*)::int as n from revoked_tokens where expires_at > ${new Date(now).toISOString()}::timestamptz`,
    );
    const [{ n: held }] = (Array.isArray(live) ? live : (live as { rows: unknown[] }).rows) as [{ n: number }];
    // Created after the row was written: it must come from the start-up load.
    const clocked = await createPrincipalSource({ database, now: () => now, maxAgeMs: 3_600_000 });
    try {
      assert.equal(clocked.revokedTokens, held, "every unexpired revocation is loaded at start");
      const revoked = { jti, issuedAt: now / 1000, expiresAt: now / 1000 + 60 };
      await clocked.load(user.id, token(now));
      const misses = clocked.misses;
      assert.equal((await clocked.load(user.id, revoked)).status, "revoked");
      assert.equal(clocked.misses, misses, "the loaded set answered");
      now += 61_000;
      assert.equal(clocked.revokedTokens, held - 1, "the entry left at its token's exp");
      // Past its exp the token is not judged in memory (the verifier's
      // leeway may still let it through): the database answers.
      assert.equal((await clocked.load(user.id, revoked)).status, "revoked");
      assert.equal(clocked.misses, misses + 1);
    } finally {
      await clocked.close();
    }
  });
}

describe("in-memory revocation on PGlite", { timeout: 60_000 }, () => suite(() => createTestDatabase()));

describeOr(skipWithoutPostgres, "in-memory revocation on PostgreSQL", { timeout: 120_000 }, () => {
  suite(() => createTestDatabase({ driver: "postgres", url: postgresUrl! }));

  it("a revocation on instance A is refused on instance B within the bound, from B's memory", async () => {
    const database = await createTestDatabase({ driver: "postgres", url: postgresUrl! });
    const a = await createPrincipalSource({ database });
    const b = await createPrincipalSource({ database });
    try {
      const user = await settledUser(b, database, "traveller");
      const access = token();
      assert.equal((await b.load(user.id, access)).status, "ok");
      const misses = b.misses;
      // Another process's logout: written in SQL, so nothing reaches B but
      // the database's notification (this process's own writes also tell its
      // sources at once; see below).
      await a.load(user.id, access);
      const started = Date.now();
      await revokeInSql(database, access.jti, user.id, access.expiresAt * 1000);
      await eventually("B refuses the token", () => b.peek(user.id, access)?.status === "revoked", 1000);
      console.log(`a revocation by another writer reached B's revoked set after ${Date.now() - started} ms`);
      assert.equal(b.misses, misses, "B decided from its set, without a lookup");
      assert.equal((await b.load(user.id, token())).status, "ok");
      assert.equal(b.misses, misses);

      // This process's own logout is refused at once, before its
      // notification can have come back: read-your-writes on one instance.
      const second = token();
      assert.equal((await b.load(user.id, second)).status, "ok");
      const family2 = randomUUID();
      await insertRefreshToken(database.db, {
        jti: randomUUID(),
        familyId: family2,
        userId: user.id,
        tokenHash: randomUUID().replaceAll("-", "").padEnd(64, "0"),
        issuedAt: new Date(),
        expiresAt: new Date(Date.now() + 86_400_000),
        accessJti: second.jti,
        accessExpiresAt: new Date(second.expiresAt * 1000),
      });
      await revokeFamily(database.db, family2, new Date());
      assert.equal(b.peek(user.id, second)?.status, "revoked");
      assert.equal(a.peek(user.id, second)?.status, "revoked");
      // And a credentials change: an older token that B never saw is refused at once.
      const older = token(Date.now() - 1000);
      await revokeUserSessions(database.db, user.id, new Date());
      assert.equal((await b.load(user.id, older)).status, "revoked");
    } finally {
      await a.close();
      await b.close();
      await database.close();
    }
  });

  it("while notifications are down each new token is looked up, so a revocation written meanwhile is honoured", async () => {
    const database = await createTestDatabase({ driver: "postgres", url: postgresUrl! });
    // A long retry keeps the listener down for the length of the test's middle part.
    const principals = await createPrincipalSource({ database, subscribe: { retryMinMs: 3000, retryMaxMs: 3000 } });
    try {
      const user = await settledUser(principals, database, "unheard");
      assert.equal((await principals.load(user.id, token())).status, "ok");
      const killed = await database.db.execute(sql`
          select pg_terminate_backend(pid) as ok from pg_stat_activity
          where datname = current_database() and query ilike 'listen%'`);
      const rows = (Array.isArray(killed) ? killed : (killed as { rows: unknown[] }).rows) as { ok: boolean }[];
      assert.equal(rows.length, 1, "exactly one listening connection");
      await eventually("notifications are down", () => principals.notifications === "down");
      assert.equal(principals.revocationsInMemory, false);

      // Written while nobody listens: its notification is lost.
      const unheard = token();
      const unseen = token();
      await revokeInSql(database, unheard.jti, user.id, unheard.expiresAt * 1000);
      await revokeInSql(database, unseen.jti, user.id, unseen.expiresAt * 1000);
      const misses = principals.misses;
      assert.equal((await principals.load(user.id, unheard)).status, "revoked", "the per-token lookup honours it");
      assert.equal((await principals.load(user.id, token())).status, "ok");
      assert.equal(principals.misses, misses + 2, "each new token cost its own lookup");

      // Back up: the set is reloaded before it is trusted again, so the
      // revocation nobody announced (and nobody presented) is in it.
      await eventually("the set is trusted again", () => principals.revocationsInMemory, 15_000);
      await principals.load(user.id, token());
      const missesAfter = principals.misses;
      assert.equal((await principals.load(user.id, unseen)).status, "revoked");
      assert.equal((await principals.load(user.id, token())).status, "ok");
      assert.equal(principals.misses, missesAfter, "judged in memory again");
    } finally {
      await principals.close();
      await database.close();
    }
  });
});
