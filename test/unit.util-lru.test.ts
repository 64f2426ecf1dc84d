/** Unit tests for src/util/lru.ts. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LruMap } from "../src/util/lru.js";

describe("LruMap", () => {
  it("evicts the least recently used entry when full, and reports it", () => {
    const evicted: [string, number][] = [];
    const lru = new LruMap<string, number>(2, (key, value) => evicted.push([key, value]));
    lru.set("a", 1);
    lru.set("b", 2);
    assert.equal(lru.get("a"), 1); // a is now the most recent
    lru.set("c", 3);
    assert.deepEqual(evicted, [["b", 2]]);
    assert.equal(lru.get("b"), undefined);
    assert.equal(lru.get("a"), 1);
    assert.equal(lru.get("c"), 3);
    assert.equal(lru.size, 2);
  });

  it("re-setting a key refreshes it without evicting", () => {
    const evicted: string[] = [];
    const lru = new LruMap<string, number>(2, (key) => evicted.push(key));
    lru.set("a", 1);
    lru.set("b", 2);
    lru.set("a", 10);
    assert.deepEqual(evicted, []);
    lru.set("c", 3);
    assert.deepEqual(evicted, ["b"]);
    assert.equal(lru.get("a"), 10);
  });

  it("keeps nothing with a size of 0 (or less), and floors fractions", () => {
    for (const max of [0, -5, 0.9]) {
      const lru = new LruMap<string, number>(max);
      lru.set("a", 1);
      assert.equal(lru.size, 0, String(max));
      assert.equal(lru.get("a"), undefined);
    }
    const lru = new LruMap<string, number>(1.9);
    lru.set("a", 1);
    lru.set("b", 2);
    assert.equal(lru.size, 1);
  });

  it("delete and clear do not call onEvict", () => {
    let calls = 0;
    const lru = new LruMap<string, number>(3, () => calls++);
    lru.set("a", 1);
    lru.set("b", 2);
    assert.equal(lru.delete("a"), true);
    assert.equal(lru.delete("a"), false);
    lru.clear();
    assert.equal(lru.size, 0);
    assert.equal(calls, 0);
  });
});
