// The in-memory revoked set: entries leave exactly at their token's expiry,
// whatever order they arrive in; an entry whose expiry is not known yet stays
// (revoked) until it is known or its row turns out not to exist.
import assert from "node:assert/strict";
import { it } from "node:test";
import { RevokedTokenSet } from "../src/principals/revoked-set.js";

it("prunes exactly the expired entries, in any arrival order", () => {
  const set = new RevokedTokenSet();
  // A deterministic shuffle of 1000 expiries.
  const expiries = Array.from({ length: 1000 }, (_, i) => ((i * 7919) % 1000) + 1);
  expiries.forEach((at, i) => set.add(`jti-${i}`, at));
  assert.equal(set.size, 1000);
  for (const now of [0, 1, 250, 250, 777, 999, 1000]) {
    set.prune(now);
    assert.equal(set.size, 1000 - now, `at ${now}`);
    expiries.forEach((at, i) => assert.equal(set.has(`jti-${i}`), at > now));
  }
});

it("keeps the later expiry of a jti added twice, and pending entries until known", () => {
  const set = new RevokedTokenSet();
  set.add("a", 10);
  set.add("a", 30);
  set.add("a", 20);
  set.prune(25);
  assert.equal(set.has("a"), true, "the later expiry wins");
  set.prune(30);
  assert.equal(set.has("a"), false);

  set.add("p");
  assert.equal(set.pending("p"), true);
  set.prune(Number.MAX_SAFE_INTEGER);
  assert.equal(set.has("p"), true, "a pending entry is never pruned");
  set.add("p", 50);
  assert.equal(set.pending("p"), false);
  set.dropPending("p");
  assert.equal(set.has("p"), true, "a known entry is not dropped as pending");
  set.prune(50);
  assert.equal(set.has("p"), false);

  set.add("q");
  set.dropPending("q");
  assert.equal(set.has("q"), false, "a pending entry whose row does not exist is not revoked");
});
