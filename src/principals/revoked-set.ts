/**
 * The revoked, not-yet-expired access tokens, by `jti`, in memory: what lets
 * a principal source judge a cached user's new token without a database
 * round trip. Bounded by time, not by count: an entry leaves when its token
 * expires (a min-heap on expiry, pruned from the top). An entry whose expiry
 * is not known yet (a notification named the `jti`; its row is being read)
 * counts as revoked until it is known.
 */

/** Expiry of an entry whose row has not been read yet: never pruned. */
const UNKNOWN = Number.POSITIVE_INFINITY;

/** See the module comment. */
export class RevokedTokenSet {
  readonly #expiries = new Map<string, number>();
  // [expiresAtMs, jti]; stale pairs (a jti re-added with another expiry, or
  // removed) are skipped when they reach the top.
  readonly #heap: [number, string][] = [];

  /** Entries held (pending ones included); call {@link prune} first for an exact count. */
  get size(): number {
    return this.#expiries.size;
  }

  /** Whether `jti` is revoked (pending entries included). */
  has(jti: string): boolean {
    return this.#expiries.has(jti);
  }

  /** Whether `jti` is held with an expiry not known yet. */
  pending(jti: string): boolean {
    return this.#expiries.get(jti) === UNKNOWN;
  }

  /** Records `jti` as revoked until `expiresAtMs` (the later expiry wins); omitted: until known. */
  add(jti: string, expiresAtMs: number = UNKNOWN): void {
    const held = this.#expiries.get(jti);
    // Held already: "unknown" never replaces anything; a known expiry replaces
    // "unknown"; of two known ones the later is kept.
    if (held !== undefined && (expiresAtMs === UNKNOWN || (held !== UNKNOWN && held >= expiresAtMs))) return;
    this.#expiries.set(jti, expiresAtMs);
    if (expiresAtMs !== UNKNOWN) this.#push([expiresAtMs, jti]);
  }

  /** Forgets a pending `jti` (its row does not exist); a known entry stays until it expires. */
  dropPending(jti: string): void {
    if (this.#expiries.get(jti) === UNKNOWN) this.#expiries.delete(jti);
  }

  /** Removes every entry that expired at or before `nowMs`. Cheap when none did. */
  prune(nowMs: number): void {
    const heap = this.#heap;
    while (heap.length > 0 && heap[0]![0] <= nowMs) {
      const [expiresAtMs, jti] = this.#pop();
      if (this.#expiries.get(jti) === expiresAtMs) this.#expiries.delete(jti);
    }
  }

  #push(item: [number, string]): void {
    const heap = this.#heap;
    heap.push(item);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]![0] <= item[0]) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = item;
  }

  #pop(): [number, string] {
    const heap = this.#heap;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= heap.length) break;
        const right = left + 1;
        const child = right < heap.length && heap[right]![0] < heap[left]![0] ? right : left;
        if (heap[child]![0] >= last[0]) break;
        heap[i] = heap[child]!;
        i = child;
      }
      heap[i] = last;
    }
    return top;
  }
}
