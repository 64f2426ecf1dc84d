/**
 * The audit log: the hash chain (append, verify, tamper, prune) on PGlite and
 * PostgreSQL, concurrent appends from two postgres.js pools, and the events
 * that the public API and the CLI record.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { eq, sql } from "drizzle-orm";
import postgres from "postgres";
import type { AuditContext } from "../src/audit-event.js";
import {
  appendAuditEvent,
  listAuditEvents,
  pruneAuditEvents,
  recordAuditEvent,
  verifyAuditChain,
} from "../src/exports/store.js";
import { postgresDatabase } from "../src/store/database-handle.js";
import { auditChain, auditEvents } from "../src/store/schema.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/database.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";

const SUITE_TIMEOUT = 120_000;
const CLI_CONTEXT: AuditContext = { actor: { kind: "cli", osUser: "tester" } };

function chainSuite(open: () => Promise<TestDatabase>): void {
  let database: TestDatabase;
  before(async () => {
    database = await open();
  });
  after(() => database.close());

  async function reset(): Promise<void> {
    await database.db.delete(auditEvents);
    await database.db
      .update(auditChain)
      .set({ headId: 0, headHash: "0".repeat(64), anchorId: 0, anchorHash: "0".repeat(64) })
      .where(eq(auditChain.id, 1));
  }

  async function fill(n: number, start = Date.now()): Promise<number[]> {
    const ids: number[] = [];
    for (let i = 0; i < n; i += 1) {
      ids.push(
        await appendAuditEvent(
          database.db,
          {
            type: "user.created",
            subject: `user:u${i}`,
            detail: { i, nested: { b: 1, a: [1, "x"] } },
            context: CLI_CONTEXT,
          },
          new Date(start + i * 1000),
        ),
      );
    }
    return ids;
  }

  it("verifies an empty chain and a written one", async () => {
    await reset();
    assert.deepEqual(await verifyAuditChain(database.db), { ok: true, rows: 0, anchorId: 0, headId: 0 });
    const ids = await fill(5);
    const result = await verifyAuditChain(database.db);
    assert.equal(result.ok, true);
    assert.equal(result.rows, 5);
    const rows = await listAuditEvents(database.db);
    assert.deepEqual(
      rows.map((r) => r.id),
      ids,
    );
    assert.equal(rows[0]!.prevHash, "0".repeat(64));
    for (let i = 1; i < rows.length; i += 1) assert.equal(rows[i]!.prevHash, rows[i - 1]!.hash);
    assert.equal(rows[0]!.actor, "cli:tester");
    assert.equal(rows[0]!.actorUsername, "tester");
  });

  it("names the row whose content was altered", async () => {
    await reset();
    const ids = await fill(4);
    await database.db.execute(sql`update audit_events set subject = 'user:mallory' where id = ${ids[2]!}`);
    const result = await verifyAuditChain(database.db);
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.id, ids[2]);
    assert.equal(!result.ok && result.problem, "altered");
  });

  it("names the row after one that was removed", async () => {
    await reset();
    const ids = await fill(4);
    await database.db.execute(sql`delete from audit_events where id = ${ids[1]!}`);
    const result = await verifyAuditChain(database.db);
    assert.equal(!result.ok && result.id, ids[2]);
    assert.equal(!result.ok && result.problem, "unlinked");
  });

  it("notices the last rows removed", async () => {
    await reset();
    const ids = await fill(3);
    await database.db.execute(sql`delete from audit_events where id = ${ids[2]!}`);
    const result = await verifyAuditChain(database.db);
    assert.equal(!result.ok && result.id, ids[2]);
    assert.equal(!result.ok && result.problem, "missing");
  });

  it("names the first of two rows whose contents were swapped", async () => {
    await reset();
    const ids = await fill(4);
    // Swap every column but the id: the rows are now out of chain order.
    await database.db.execute(sql`
      with a as (select * from audit_events where id = ${ids[1]!}), b as (select * from audit_events where id = ${ids[2]!})
      update audit_events e set time = s.time, type = s.type, actor = s.actor, actor_username = s.actor_username,
        subject = s.subject, detail = s.detail, prev_hash = s.prev_hash, hash = s.hash
      from (select ${ids[1]!}::bigint as target, b.* from b union all select ${ids[2]!}::bigint, a.* from a) s
      where e.id = s.target`);
    const result = await verifyAuditChain(database.db);
    assert.equal(!result.ok && result.id, ids[1]);
  });

  it("prunes old rows and still verifies, recording the pruning", async () => {
    await reset();
    const now = Date.now();
    const ids = await fill(6, now - 10 * 86_400_000);
    // Rows 0..2 are 10, 10-1s, 10-2s days old … all six are older than 5 days: keep the last two by time.
    const cutoff = new Date(now - 10 * 86_400_000 + 3500);
    const pruned = await pruneAuditEvents(database.db, cutoff, CLI_CONTEXT);
    assert.deepEqual(pruned, { deleted: 4, anchorId: ids[3] });
    const rows = await listAuditEvents(database.db);
    assert.deepEqual(
      rows.map((r) => r.type),
      ["user.created", "user.created", "audit.pruned"],
    );
    assert.equal(rows[2]!.detail["deleted"], 4);
    const result = await verifyAuditChain(database.db);
    assert.equal(result.ok, true);
    assert.equal(result.ok && result.anchorId, ids[3]);
    // Nothing more to prune: no second audit.pruned row.
    assert.deepEqual(await pruneAuditEvents(database.db, cutoff), { deleted: 0, anchorId: ids[3] });
    // Tampering with the first kept row is still found.
    await database.db.execute(sql`update audit_events set detail = '{"i": 99}' where id = ${ids[4]!}`);
    const tampered = await verifyAuditChain(database.db);
    assert.equal(!tampered.ok && tampered.id, ids[4]);
  });

  it("records inside the caller's transaction, and not at all when it rolls back", async () => {
    await reset();
    await assert.rejects(
      database.db.transaction(async (tx) => {
        await recordAuditEvent(tx, { type: "user.deleted", subject: "user:gone", context: CLI_CONTEXT });
        throw new Error("roll back");
      }),
      /roll back/,
    );
    assert.equal((await listAuditEvents(database.db)).length, 0);
    await recordAuditEvent(database.db, { type: "user.deleted", subject: "user:gone", context: CLI_CONTEXT });
    assert.equal((await verifyAuditChain(database.db)).ok, true);
  });

  it("stores odd strings and detail values so that they verify", async () => {
    await reset();
    await recordAuditEvent(database.db, {
      type: "login.failed",
      subject: "user:a\u0000b\uD800",
      detail: {
        username: "x".repeat(1000),
        n: 1.5,
        big: 10n,
        skip: undefined,
        when: new Date(0),
        list: [undefined, "\u0000"],
      },
      context: { actor: { kind: "anonymous" }, userAgent: "u".repeat(2000), peerAddress: "203.0.113.9" },
    });
    const [row] = await listAuditEvents(database.db);
    assert.equal(row!.subject, "user:a\uFFFDb\uFFFD");
    assert.equal(row!.userAgent!.length, 512);
    assert.deepEqual(row!.detail, {
      username: "x".repeat(1000),
      n: 1.5,
      big: "10",
      when: new Date(0).toISOString(),
      list: [null, "\uFFFD"],
    });
    assert.equal((await verifyAuditChain(database.db)).ok, true);
  });

  it("filters by type, time and user", async () => {
    await reset();
    const start = Date.now() - 60_000;
    await appendAuditEvent(
      database.db,
      { type: "user.created", subject: "user:alice", context: CLI_CONTEXT },
      new Date(start),
    );
    await appendAuditEvent(
      database.db,
      {
        type: "login.succeeded",
        subject: "user:alice",
        context: { actor: { kind: "user", id: 7, username: "alice" } },
      },
      new Date(start + 10_000),
    );
    await appendAuditEvent(
      database.db,
      { type: "login.failed", detail: { username: "bob" }, context: { actor: { kind: "anonymous" } } },
      new Date(start + 20_000),
    );
    assert.equal((await listAuditEvents(database.db, { types: ["login.succeeded", "login.failed"] })).length, 2);
    assert.equal((await listAuditEvents(database.db, { since: new Date(start + 5_000) })).length, 2);
    assert.equal((await listAuditEvents(database.db, { username: "alice" })).length, 2);
    assert.equal((await listAuditEvents(database.db, { username: "bob" })).length, 1);
    assert.equal((await listAuditEvents(database.db, { username: "tester" })).length, 0);
  });
}

describe("audit chain on PGlite", { timeout: SUITE_TIMEOUT }, () => {
  chainSuite(() => createTestDatabase({ driver: "pglite" }));
});

describeOr(skipWithoutPostgres, "audit chain on PostgreSQL", { timeout: SUITE_TIMEOUT }, () => {
  chainSuite(() => createTestDatabase({ url: postgresUrl! }));

  it("keeps one chain while two pools append at once", async () => {
    await using database = await createTestDatabase({ url: postgresUrl! });
    const second = postgresDatabase(postgres(database.url!, { max: 4, onnotice: () => {} }));
    try {
      const writers = [database, second].flatMap((d, w) =>
        Array.from({ length: 4 }, (_, k) =>
          (async () => {
            for (let i = 0; i < 25; i += 1) {
              await d.db.transaction(async (tx) => {
                await recordAuditEvent(tx, {
                  type: "token.refreshed",
                  subject: `session:${w}-${k}-${i}`,
                  context: { actor: { kind: "user", id: w * 100 + k } },
                });
              });
            }
          })(),
        ),
      );
      await Promise.all(writers);
      const result = await verifyAuditChain(second.db);
      assert.deepEqual(result.ok && result.rows, 200);
    } finally {
      await second.close();
    }
  });
});
