/**
 * A bounded map that forgets the least recently used entry when full. Map
 * keeps insertion order, so re-inserting on read makes the first key the
 * least recently used one.
 */
export class LruMap<K, V> {
  readonly #map = new Map<K, V>();
  readonly #max: number;
  readonly #onEvict: ((key: K, value: V) => void) | undefined;

  /**
   * @param maxEntries Most entries kept; 0 keeps nothing.
   * @param onEvict Called for entries dropped to make room (not for `delete`).
   */
  constructor(maxEntries: number, onEvict?: (key: K, value: V) => void) {
    this.#max = Math.max(0, Math.floor(maxEntries));
    this.#onEvict = onEvict;
  }

  /** Number of entries held. */
  get size(): number {
    return this.#map.size;
  }

  /** The value for `key`, or undefined; a hit makes the entry the most recently used. */
  get(key: K): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
    return value;
  }

  /** Stores `value` as the most recently used entry, evicting the least recently used one when full. */
  set(key: K, value: V): void {
    if (this.#max === 0) return;
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next().value as K;
      const evicted = this.#map.get(oldest) as V;
      this.#map.delete(oldest);
      this.#onEvict?.(oldest, evicted);
    }
  }

  /**
   * The least recently used entry, without touching it, or undefined when
   * empty: lets a cache drop stale entries from the cold end.
   */
  peekOldest(): [K, V] | undefined {
    const first = this.#map.entries().next();
    return first.done === true ? undefined : first.value;
  }

  /** Forgets `key` (no `onEvict` call); whether it was there. */
  delete(key: K): boolean {
    return this.#map.delete(key);
  }

  /** Forgets every entry (no `onEvict` calls). */
  clear(): void {
    this.#map.clear();
  }
}
