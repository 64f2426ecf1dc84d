/** A bounded LRU of successful verifications, so a token seen again skips the signature check. */

/** An entry knows when it stops being usable (seconds since the Unix epoch). */
export interface Expiring {
  readonly dropAfter: number;
}

/**
 * Least-recently-used map with a hard size bound. A `Map` keeps insertion order, so re-inserting
 * on a hit moves the entry to the back and the first key is always the eviction candidate.
 * Expired entries are dropped when met (on lookup, or when they reach the front on insert);
 * the size bound holds regardless.
 */
export class VerifiedTokenCache<V extends Expiring> {
  readonly #entries = new Map<string, V>();
  readonly #maxEntries: number;

  constructor(maxEntries: number) {
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) throw new RangeError("maxEntries must be a positive integer");
    this.#maxEntries = maxEntries;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The entry for `key` if present and not past `dropAfter` at `nowSeconds`. */
  get(key: string, nowSeconds: number): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    if (nowSeconds >= entry.dropAfter) return undefined;
    this.#entries.set(key, entry);
    return entry;
  }

  set(key: string, value: V, nowSeconds: number): void {
    this.#entries.delete(key);
    while (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
    // Drop a few already-expired entries from the front so idle memory does not sit on dead tokens.
    for (const [k, v] of this.#entries) {
      if (nowSeconds < v.dropAfter) break;
      this.#entries.delete(k);
    }
    this.#entries.set(key, value);
  }

  clear(): void {
    this.#entries.clear();
  }
}
