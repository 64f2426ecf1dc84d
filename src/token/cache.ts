/** A bounded LRU of successful verifications, so a token seen again skips the signature check. */
import { LruMap } from "../util/lru.js";

/** Expired entries dropped from the cold end per insert, at most. */
const SWEEP_PER_SET = 4;

/** An entry knows when it stops being usable (seconds since the Unix epoch). */
export interface Expiring {
  readonly dropAfter: number;
}

/**
 * The shared {@link LruMap} (the one the principal cache uses too), plus what a token cache needs
 * on top: an entry past its `dropAfter` is never returned, and is dropped when met.
 */
export class VerifiedTokenCache<V extends Expiring> {
  readonly #entries: LruMap<string, V>;

  /** @param maxEntries Most entries kept: a positive integer (RangeError otherwise). */
  constructor(maxEntries: number) {
    // LruMap would quietly round or keep nothing; a verifier asking for that is a bug.
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1)
      throw new RangeError("maxEntries must be a positive integer");
    this.#entries = new LruMap(maxEntries);
  }

  /** Number of entries held, expired ones not yet met included. */
  get size(): number {
    return this.#entries.size;
  }

  /** The entry for `key` if present and not past `dropAfter` at `nowSeconds`. */
  get(key: string, nowSeconds: number): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined || nowSeconds < entry.dropAfter) return entry;
    this.#entries.delete(key);
    return undefined;
  }

  /**
   * Remembers `value` for `key`, forgetting the least recently used entry
   * when full. Expired entries at the cold end go first (a few per call, so
   * the cost stays constant): tokens seen once and never again would
   * otherwise hold their place until the size bound pushes them out.
   */
  set(key: string, value: V, nowSeconds: number): void {
    for (let swept = 0; swept < SWEEP_PER_SET; swept++) {
      const oldest = this.#entries.peekOldest();
      if (oldest === undefined || nowSeconds < oldest[1].dropAfter) break;
      this.#entries.delete(oldest[0]);
    }
    this.#entries.set(key, value);
  }

  /** Forgets every entry. */
  clear(): void {
    this.#entries.clear();
  }
}
