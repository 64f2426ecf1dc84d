// The user cache counts what it answers (hits) and what it asks the
// database (misses), and calls that arrive together with a token it has
// not seen share one database lookup instead of making one each: the hit
// rates the bench reports (README "Performance") come from these totals.
import assert from "node:assert/strict";
import { it } from "node:test";
import { createPrincipalSource, createUser, setUserActive } from "../src/exports/store.js";
import { createTestDatabase } from "../src/testing/database.js";

it("counts hits and misses, and concurrent lookups of one new token share a round trip", async () => {
  const database = await createTestDatabase();
  const principals = await createPrincipalSource({ database });
  try {
    const alice = await createUser(database.db, { username: "alice", email: "alice@example.com" });
    const token = { jti: "jti-1", issuedAt: Date.now() / 1000 };
    const together = await Promise.all([1, 2, 3].map(() => principals.load(alice.id, token)));
    assert.deepEqual(
      together.map((lookup) => lookup.status),
      ["ok", "ok", "ok"],
    );
    assert.equal(principals.misses, 1, "three calls with one new token made one database lookup");
    assert.equal(principals.hits, 2);
    assert.equal(principals.peek(alice.id, token)?.status, "ok");
    assert.equal(principals.hits, 3);

    // The same jti claimed for another user is not that lookup's answer.
    const bob = await createUser(database.db, { username: "bob", email: "bob@example.com" });
    const other = { jti: "jti-2", issuedAt: Date.now() / 1000 };
    const [forAlice, forBob] = await Promise.all([principals.load(alice.id, other), principals.load(bob.id, other)]);
    assert.equal(forAlice.status === "ok" && forAlice.principal.username, "alice");
    assert.equal(forBob.status === "ok" && forBob.principal.username, "bob");
    assert.equal(principals.misses, 3);

    // A change between two concurrent calls: the later call does not join
    // the lookup that started before it.
    const fresh = { jti: "jti-3", issuedAt: Date.now() / 1000 };
    const before = principals.load(alice.id, fresh);
    await setUserActive(database.db, "alice", false);
    principals.invalidate({ kind: "user", userId: alice.id });
    const after = await principals.load(alice.id, fresh);
    await before;
    assert.equal(after.status, "inactive");
    assert.equal(principals.misses, 5);
  } finally {
    await principals.close();
    await database.close();
  }
});
