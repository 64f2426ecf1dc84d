/**
 * The one cache under every principal source (callers by token, external
 * subjects by issuer and subject, services by certificate identity): bounded
 * (LRU), trusted for a maximum age, indexed by the user each entry speaks
 * for so a change to that user drops exactly its entries, and guarded
 * against a lookup that raced with an invalidation storing the answer from
 * before the change.
 */
import type { InvalidationEvent } from "../store/invalidation.js";
import { LruMap } from "../util/lru.js";

/** Bounds of a principal cache, as every source's options spell them. */
export interface PrincipalCacheLimits {
  /** Most entries; 0 disables the cache. */
  maxEntries?: number | undefined;
  /** Longest time an entry is trusted, in milliseconds. */
  maxAgeMs?: number | undefined;
  /** Clock in milliseconds. Default `Date.now`. */
  now?: (() => number) | undefined;
}

/** When a lookup started: pass it back to {@link PrincipalCache.store}. */
export interface LookupStart {
  readonly generation: number;
  readonly storedAt: number;
}

interface Entry<V> {
  readonly value: V;
  /** The user the entry speaks for; undefined for an answer about nobody ("no such account"). */
  readonly userId: number | undefined;
  readonly storedAt: number;
}

/**
 * Validates and resolves a source's cache bounds against its defaults, the
 * same way for every source.
 *
 * @throws {RangeError} for a `maxEntries` that is not an integer ≥ 0 or a
 *   `maxAgeMs` that is not a number ≥ 0.
 */
export function resolveCacheLimits(
  options: PrincipalCacheLimits,
  defaults: { maxEntries: number; maxAgeMs: number },
): { maxEntries: number; maxAgeMs: number; now: () => number } {
  const maxEntries = options.maxEntries ?? defaults.maxEntries;
  const maxAgeMs = options.maxAgeMs ?? defaults.maxAgeMs;
  if (!Number.isSafeInteger(maxEntries) || maxEntries < 0) {
    throw new RangeError(`maxEntries must be an integer >= 0, got ${String(maxEntries)}`);
  }
  if (typeof maxAgeMs !== "number" || Number.isNaN(maxAgeMs) || maxAgeMs < 0) {
    throw new RangeError(`maxAgeMs must be a number >= 0, got ${String(maxAgeMs)}`);
  }
  return { maxEntries, maxAgeMs, now: options.now ?? Date.now };
}

/** See the module comment. Keys are what the source looks up by; values what it answers. */
export class PrincipalCache<K, V> {
  readonly maxEntries: number;
  readonly maxAgeMs: number;
  readonly #now: () => number;
  readonly #entries: LruMap<K, Entry<V>>;
  readonly #byUser = new Map<number, Set<K>>();
  /** Keys of entries about nobody: any user's change may make them wrong. */
  readonly #unowned = new Set<K>();
  readonly #dropUnownedOnUserChange: boolean;
  // Bumped by every invalidation: a lookup that started before one is not stored.
  #generation = 0;

  /**
   * @param dropUnownedOnUserChange Whether entries about nobody go on any
   *   user's change (a service gaining a certificate identity announces only
   *   that service). Default false.
   */
  constructor(limits: { maxEntries: number; maxAgeMs: number; now: () => number }, dropUnownedOnUserChange = false) {
    this.maxEntries = limits.maxEntries;
    this.maxAgeMs = limits.maxAgeMs;
    this.#now = limits.now;
    this.#dropUnownedOnUserChange = dropUnownedOnUserChange;
    this.#entries = new LruMap(this.maxEntries, (key, entry) => this.#unindex(key, entry));
  }

  /** Whether anything is ever kept. */
  get enabled(): boolean {
    return this.maxEntries > 0;
  }

  /** Entries held now (stale ones included until they are looked at or evicted). */
  get size(): number {
    return this.#entries.size;
  }

  /** The invalidation generation: lookups joined across calls must share it. */
  get generation(): number {
    return this.#generation;
  }

  /** Note when a lookup starts, before any I/O. */
  start(): LookupStart {
    return { generation: this.#generation, storedAt: this.#now() };
  }

  /** The value for `key` if it is fresh and `accept` (default: any) takes it. */
  fresh(key: K, accept?: (value: V, userId: number | undefined) => boolean): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (this.#now() - entry.storedAt >= this.maxAgeMs) return undefined;
    if (accept !== undefined && !accept(entry.value, entry.userId)) return undefined;
    return entry.value;
  }

  /**
   * Stores what a lookup that began at `started` found, unless an
   * invalidation came in between (its answer may predate the change) or the
   * cache is off; whether it was stored.
   */
  store(key: K, value: V, userId: number | undefined, started: LookupStart): boolean {
    if (!this.enabled || started.generation !== this.#generation) return false;
    this.delete(key);
    this.#entries.set(key, { value, userId, storedAt: started.storedAt });
    if (userId === undefined) this.#unowned.add(key);
    else {
      let keys = this.#byUser.get(userId);
      if (keys === undefined) this.#byUser.set(userId, (keys = new Set()));
      keys.add(key);
    }
    return true;
  }

  /** Forgets `key`. */
  delete(key: K): void {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    this.#entries.delete(key);
    this.#unindex(key, entry);
  }

  /**
   * Applies a change: `all` empties the cache, `user` drops that user's
   * entries (and those about nobody, when asked to); `token` events name a
   * key only the source knows, so it deletes that itself. Every event
   * advances the generation.
   */
  invalidate(event: InvalidationEvent): void {
    this.#generation++;
    if (event.kind === "all") {
      this.#entries.clear();
      this.#byUser.clear();
      this.#unowned.clear();
    } else if (event.kind === "user") {
      for (const key of this.#byUser.get(event.userId) ?? []) this.#entries.delete(key);
      this.#byUser.delete(event.userId);
      if (this.#dropUnownedOnUserChange) {
        for (const key of this.#unowned) this.#entries.delete(key);
        this.#unowned.clear();
      }
    }
  }

  #unindex(key: K, entry: Entry<V>): void {
    if (entry.userId === undefined) {
      this.#unowned.delete(key);
      return;
    }
    const keys = this.#byUser.get(entry.userId);
    if (keys === undefined) return;
    keys.delete(key);
    if (keys.size === 0) this.#byUser.delete(entry.userId);
  }
}
