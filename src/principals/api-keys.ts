/**
 * The store-backed {@link ApiKeyPrincipalSource}: `api_keys` rows resolved
 * to their owners, the owner's permissions intersected with the key's scopes
 * at every load. Answers are cached per key id in the principal cache,
 * indexed by the owner, so whatever announces the owner (a lost permission,
 * deactivation, deletion, and the key's own revocation, expiry or scope
 * change: migration `api_keys_sql`) drops the key's answer on every instance.
 *
 * Unknown ids cost no more than a forged token: one look-up, then a cached
 * "unknown" (a bounded LRU of its own, so a flood of made-up ids cannot push
 * real keys out of the cache). The secret is checked against the cached hash
 * in constant time on every call.
 */
import {
  apiKeySecretMatches,
  scopedPrincipal,
  type ApiKeyCredential,
  type ApiKeyLookup,
  type ApiKeyPrincipalSource,
} from "../credential/api-key.js";
import type { InvalidationEvent } from "../invalidation-event.js";
import type { PrincipalLookup } from "../principal.js";
import { findApiKey, touchApiKey, type ApiKeyRecord } from "../store/api-keys.js";
import type { Database } from "../store/database-handle.js";
import { loadPrincipal } from "../store/principal-query.js";
import { LruMap } from "../util/lru.js";
import { PrincipalCache, resolveCacheLimits } from "./cache.js";

/** Options of {@link createApiKeySource}. */
export interface ApiKeySourceOptions {
  /** The store holding `api_keys`. Required. */
  database: Database;
  /**
   * Where invalidations come from: the principal source's `onInvalidation`,
   * which follows the database's notifications. Without it, answers are
   * trusted for `maxAgeMs`: pass it in any server.
   */
  onInvalidation?: (listener: (event: InvalidationEvent) => void) => () => void;
  /** Most keys whose answer is cached; 0 disables the cache. Default 10000. */
  maxEntries?: number;
  /** Longest time a cached answer is trusted, in milliseconds. Default 30000. */
  maxAgeMs?: number;
  /**
   * Most unknown key ids remembered (each answered without a look-up until
   * `maxAgeMs` passes); 0 remembers none. Default 10000.
   */
  maxUnknownEntries?: number;
  /**
   * Least time between two writes of a key's `last_used_at`, in
   * milliseconds; the statement itself also skips a row written less than
   * this long ago, so all instances together write at most once per
   * interval. Default 60000.
   */
  lastUsedIntervalMs?: number;
  /** Clock in milliseconds, for tests. Default `Date.now`. */
  now?: () => number;
}

/** An {@link ApiKeyPrincipalSource} with caches; `close` stops following invalidations. */
export interface CachedApiKeySource extends ApiKeyPrincipalSource {
  peek(key: ApiKeyCredential): ApiKeyLookup | undefined;
  /** Database look-ups made since creation (a key row and its owner count as one). */
  readonly lookups: number;
  /** Writes of `last_used_at` attempted since creation. */
  readonly touches: number;
  close(): void;
}

/** What is cached for a key id that exists. */
interface KnownKey {
  readonly secretHash: string;
  readonly revoked: boolean;
  /** Milliseconds since the epoch, or undefined when the key does not expire. */
  readonly expiresAtMs: number | undefined;
  /** The owner limited to the key's scopes, as found when loaded. */
  readonly answer: ApiKeyLookup;
}

/**
 * Creates the source. Cheap: no I/O until the first key arrives.
 *
 * @example
 * ```ts
 * const principals = await createPrincipalSource({ database });
 * const apiKeys = createApiKeySource({ database, onInvalidation: (l) => principals.onInvalidation(l) });
 * const auth = createAuth({ verifier, principals, apiKeys, services });
 * ```
 * @throws {RangeError} for negative or non-integer bounds.
 */
export function createApiKeySource(options: ApiKeySourceOptions): CachedApiKeySource {
  const db = options.database.db;
  const limits = resolveCacheLimits(options, { maxEntries: 10_000, maxAgeMs: 30_000 });
  const { now, maxAgeMs } = limits;
  const cache = new PrincipalCache<string, KnownKey>(limits);
  const maxUnknown = options.maxUnknownEntries ?? 10_000;
  const lastUsedIntervalMs = options.lastUsedIntervalMs ?? 60_000;
  if (!Number.isSafeInteger(maxUnknown) || maxUnknown < 0) {
    throw new RangeError(`maxUnknownEntries must be an integer >= 0, got ${String(maxUnknown)}`);
  }
  if (!(lastUsedIntervalMs >= 0)) {
    throw new RangeError(`lastUsedIntervalMs must be a number >= 0, got ${String(lastUsedIntervalMs)}`);
  }
  // Unknown ids, with when they were found unknown. Never dropped by invalidations: a new
  // key's id is 60 fresh random bits, so no cached unknown id ever becomes a key.
  const unknown = new LruMap<string, number>(maxAgeMs > 0 ? maxUnknown : 0);
  // When this instance last wrote each key's last_used_at.
  const touched = new LruMap<string, number>(Math.max(limits.maxEntries, 1000));
  const pending = new Map<string, { generation: number; found: Promise<KnownKey | undefined> }>();
  let lookups = 0;
  let touches = 0;
  const stop = options.onInvalidation?.((event) => cache.invalidate(event));

  /** The answer for a call presenting `key`, given what is known of its id. */
  function answer(key: ApiKeyCredential, known: KnownKey | undefined): ApiKeyLookup {
    // The secret first: an unknown id and a wrong secret are one answer, and a revoked or
    // expired key is reported only to whoever holds its secret.
    if (known === undefined || !apiKeySecretMatches(key.secret, known.secretHash)) return INVALID;
    if (known.revoked) return REVOKED;
    const at = now();
    if (known.expiresAtMs !== undefined && at >= known.expiresAtMs) return EXPIRED;
    if (known.answer.status === "ok") touch(key.id, at);
    return known.answer;
  }

  /** Writes last_used_at in the background, at most once per interval from this instance. */
  function touch(id: string, at: number): void {
    const last = touched.get(id);
    if (last !== undefined && at - last < lastUsedIntervalMs) return;
    touched.set(id, at);
    touches++;
    // Best effort: a failed write loses one "last used" mark, never the call.
    touchApiKey(db, id, new Date(at), lastUsedIntervalMs).catch(() => touched.delete(id));
  }

  function cachedUnknown(id: string): boolean {
    const at = unknown.get(id);
    if (at === undefined) return false;
    if (now() - at < maxAgeMs) return true;
    unknown.delete(id);
    return false;
  }

  async function fetch(id: string): Promise<KnownKey | undefined> {
    lookups++;
    const started = cache.start();
    const record = await findApiKey(db, id);
    if (record === undefined) {
      unknown.set(id, started.storedAt);
      return undefined;
    }
    const known = record.revokedAt !== null ? revokedKey(record) : await resolveOwner(record);
    cache.store(id, known, record.ownerId, started);
    return known;
  }

  async function resolveOwner(record: ApiKeyRecord): Promise<KnownKey> {
    const owner = await loadPrincipal(db, record.ownerId);
    return {
      secretHash: record.secretHash,
      revoked: false,
      expiresAtMs: record.expiresAt?.getTime(),
      answer: ownerAnswer(record, owner),
    };
  }

  function load(id: string): Promise<KnownKey | undefined> {
    // Calls arriving together with one key share a look-up, within one invalidation
    // generation (none gets an answer from before a change it came after).
    const inFlight = pending.get(id);
    if (inFlight !== undefined && inFlight.generation === cache.generation) return inFlight.found;
    const found = fetch(id);
    const entry = { generation: cache.generation, found };
    pending.set(id, entry);
    const settled = () => {
      if (pending.get(id) === entry) pending.delete(id);
    };
    found.then(settled, settled);
    return found;
  }

  function peek(key: ApiKeyCredential): ApiKeyLookup | undefined {
    if (cachedUnknown(key.id)) return INVALID;
    const known = cache.fresh(key.id);
    return known === undefined ? undefined : answer(key, known);
  }

  return {
    peek,
    async load(key) {
      const cached = peek(key);
      if (cached !== undefined) return cached;
      return answer(key, await load(key.id));
    },
    get lookups() {
      return lookups;
    },
    get touches() {
      return touches;
    },
    close() {
      stop?.();
    },
  };
}

const INVALID: ApiKeyLookup = Object.freeze({ status: "invalid" });
const REVOKED: ApiKeyLookup = Object.freeze({ status: "revoked" });
const EXPIRED: ApiKeyLookup = Object.freeze({ status: "expired" });

function revokedKey(record: ApiKeyRecord): KnownKey {
  return { secretHash: record.secretHash, revoked: true, expiresAtMs: undefined, answer: REVOKED };
}

/** The owner's lookup turned into the key's: the principal limited to the scopes. */
function ownerAnswer(record: ApiKeyRecord, owner: PrincipalLookup): ApiKeyLookup {
  if (owner.status !== "ok") return owner;
  return Object.freeze({
    status: "ok" as const,
    principal: scopedPrincipal(owner.principal, record.id, record.scopes),
    createdAt: Math.floor(record.createdAt.getTime() / 1000),
    ...(record.expiresAt !== null && { expiresAt: record.expiresAt.getTime() / 1000 }),
  });
}
