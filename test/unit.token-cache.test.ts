// The verified-token cache: expired entries are never returned, and are
// swept from the cold end as new tokens arrive (a few per insert).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { VerifiedTokenCache } from "../src/token/cache.js";
import { LruMap } from "../src/util/lru.js";

describe("LruMap.peekOldest", () => {
  it("shows the least recently used entry without making it recent", () => {
    const lru = new LruMap<string, number>(3);
    assert.equal(lru.peekOldest(), undefined);
    lru.set("a", 1);
    lru.set("b", 2);
    assert.deepEqual(lru.peekOldest(), ["a", 1]);
    assert.deepEqual(lru.peekOldest(), ["a", 1]);
    lru.get("a");
    assert.deepEqual(lru.peekOldest(), ["b", 2]);
  });
});

describe("VerifiedTokenCache", () => {
  it("never returns an entry at or past dropAfter", () => {
    const cache = new VerifiedTokenCache<{ dropAfter: number }>(10);
    cache.set("t", { dropAfter: 100 }, 50);
    assert.deepEqual(cache.get("t", 99.999), { dropAfter: 100 });
    assert.equal(cache.get("t", 100), undefined);
    assert.equal(cache.size, 0);
  });

  it("sweeps expired entries from the cold end on insert, a few at a time", () => {
    const cache = new VerifiedTokenCache<{ dropAfter: number }>(100);
    for (let i = 0; i < 10; i++) cache.set(`old${i}`, { dropAfter: 100 }, 50);
    assert.equal(cache.size, 10);
    cache.set("new", { dropAfter: 1000 }, 200); // 4 swept, 1 added
    assert.equal(cache.size, 7);
    cache.set("new2", { dropAfter: 1000 }, 200);
    cache.set("new3", { dropAfter: 1000 }, 200);
    assert.equal(cache.size, 3); // the rest of the old ones gone; live ones kept
    assert.ok(cache.get("new", 200) && cache.get("new2", 200) && cache.get("new3", 200));
  });

  it("stops at the first live entry, so a live token is never dropped for age", () => {
    const cache = new VerifiedTokenCache<{ dropAfter: number }>(100);
    cache.set("live", { dropAfter: 1000 }, 0);
    cache.set("expired-later", { dropAfter: 100 }, 0);
    cache.set("x", { dropAfter: 1000 }, 500);
    assert.ok(cache.get("live", 500));
    assert.equal(cache.size, 3);
  });
});
