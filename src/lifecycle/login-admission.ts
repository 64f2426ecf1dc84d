/**
 * Per-client admission of Login attempts: a token bucket per client address,
 * checked before any database write or password hashing, so one address
 * flooding Login with made-up usernames spends its own budget and not the
 * server's. Kept in memory per instance: it guards this process's CPU.
 */
import { addressKey } from "../util/ip-address.js";

/** Options of the per-client Login admission (`createAuthService({ loginAdmission })`). */
export interface LoginAdmissionOptions {
  /**
   * Attempts one client address may start at once with a full budget. Default 20: a
   * household or office behind one address logging in together is not refused.
   */
  burst?: number;
  /**
   * Attempts per minute a client regains, up to `burst`. A successful login also gives its
   * attempt back, so only failed logins wear a budget down (ServiceToken exchanges, which share
   * the budget, are never given back). Default 30.
   */
  perMinute?: number;
  /**
   * Most client addresses remembered; beyond it the least recently seen is forgotten (it
   * would have a full budget again by then, or soon). Bounds the memory to about 100 bytes
   * per entry. Default 10000.
   */
  maxPeers?: number;
  /**
   * IPv6 clients are counted per network of this many bits, since one subscriber is usually
   * given a whole /64. 128 counts each address alone. Default 64.
   */
  ipv6PrefixLength?: number;
}

/** The defaults of {@link LoginAdmissionOptions}. */
export const DEFAULT_LOGIN_ADMISSION: Readonly<Required<LoginAdmissionOptions>> = Object.freeze({
  burst: 20,
  perMinute: 30,
  maxPeers: 10_000,
  ipv6PrefixLength: 64,
});

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date, in milliseconds. */
  at: number;
}

/** Token buckets per client, bounded in number; see {@link LoginAdmissionOptions}. */
export interface LoginAdmission {
  /** The key `peer` is counted under (its IPv6 network, for IPv6). */
  keyOf(peer: string): string;
  /** Takes one attempt from `key`'s budget; false when it has none left. */
  take(key: string, nowMs: number): boolean;
  /** Gives an attempt back (after a successful login), up to the burst. */
  giveBack(key: string, nowMs: number): void;
}

/**
 * Creates the per-client admission.
 *
 * @throws {RangeError} for out-of-range options.
 */
export function createLoginAdmission(options: LoginAdmissionOptions = {}): LoginAdmission {
  const burst = options.burst ?? DEFAULT_LOGIN_ADMISSION.burst;
  const perMinute = options.perMinute ?? DEFAULT_LOGIN_ADMISSION.perMinute;
  const maxPeers = options.maxPeers ?? DEFAULT_LOGIN_ADMISSION.maxPeers;
  const ipv6PrefixLength = options.ipv6PrefixLength ?? DEFAULT_LOGIN_ADMISSION.ipv6PrefixLength;
  if (!Number.isSafeInteger(burst) || burst < 1)
    throw new RangeError("loginAdmission.burst must be a positive integer");
  if (!Number.isFinite(perMinute) || perMinute < 0)
    throw new RangeError("loginAdmission.perMinute must be a non-negative number");
  if (!Number.isSafeInteger(maxPeers) || maxPeers < 1)
    throw new RangeError("loginAdmission.maxPeers must be a positive integer");
  if (!Number.isSafeInteger(ipv6PrefixLength) || ipv6PrefixLength < 1 || ipv6PrefixLength > 128) {
    throw new RangeError("loginAdmission.ipv6PrefixLength must be an integer from 1 to 128");
  }
  const perMs = perMinute / 60_000;
  // Insertion order is recency order: a key is moved to the end when used,
  // so the first key is the least recently seen.
  const buckets = new Map<string, Bucket>();

  function current(key: string, nowMs: number): Bucket {
    let bucket = buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: burst, at: nowMs };
      if (buckets.size >= maxPeers) buckets.delete(buckets.keys().next().value!);
    } else {
      buckets.delete(key);
      // A clock stepping back must not mint tokens, nor take them.
      const elapsed = Math.max(nowMs - bucket.at, 0);
      bucket.tokens = Math.min(burst, bucket.tokens + elapsed * perMs);
      bucket.at = Math.max(nowMs, bucket.at);
    }
    buckets.set(key, bucket);
    return bucket;
  }

  return {
    keyOf: (peer) => addressKey(peer, ipv6PrefixLength),
    take(key, nowMs) {
      const bucket = current(key, nowMs);
      if (bucket.tokens < 1) return false;
      bucket.tokens -= 1;
      return true;
    },
    giveBack(key, nowMs) {
      const bucket = current(key, nowMs);
      bucket.tokens = Math.min(burst, bucket.tokens + 1);
    },
  };
}
