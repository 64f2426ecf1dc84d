/**
 * Counting the calls a rule's `rate_limit` allows, per method and per
 * principal (per client address for anonymous calls). The decision stays
 * free of I/O: the Connect adapters (src/connect/auth.ts) ask this limiter
 * once a call is allowed, and only a call the whole decision admitted is
 * counted, so refused calls never spend a caller's budget.
 *
 * Counting is rate-limiter-flexible's: in this process's memory by default,
 * or in a Redis every instance and worker shares when a URL is given.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import {
  BurstyRateLimiter,
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
  type RateLimiterAbstract,
} from "rate-limiter-flexible";
import type { Redis } from "ioredis";
import { BURST_REFILL_WINDOWS, type PlannedRateLimit } from "../policy/rate-limit.js";
import { principalKind, type Principal } from "../principal.js";
import { addressKey } from "../util/ip-address.js";
import { rateLimitedError, rateLimitUnavailableError } from "./errors.js";
import { UNKNOWN_PEER } from "./peer.js";

/** What the limiter does when the shared counter (Redis) cannot answer. */
export type RateLimitStoreFailure = "open" | "closed";

/** Options of {@link createRateLimiter}. */
export interface RateLimiterOptions {
  /**
   * A Redis URL (`redis://host:6379/0`, `rediss://` for TLS): every instance
   * and worker given the same URL and {@link RateLimiterOptions.keyPrefix}
   * shares one count per method and caller. Default: none, so each process
   * counts in its own memory (with N workers a caller gets N times the limit).
   */
  redisUrl?: string | undefined;
  /**
   * What a call is answered when Redis cannot be reached or does not answer
   * within {@link RateLimiterOptions.redisTimeoutMs}: `"open"` admits it
   * uncounted (availability over the limit; counted in `storeErrors` and
   * reported to `onStoreError`), `"closed"` refuses it UNAVAILABLE with reason
   * `RATE_LIMIT_UNAVAILABLE`. Default `"open"`.
   */
  onRedisError?: RateLimitStoreFailure | undefined;
  /** Bound on one Redis round trip, in milliseconds. Default 250. */
  redisTimeoutMs?: number | undefined;
  /**
   * Prefix of every Redis key, so applications (or tests) sharing a Redis
   * keep apart. Default `"protoguard:rl"`.
   */
  keyPrefix?: string | undefined;
  /**
   * IPv6 anonymous callers are counted per network of this many bits (one
   * subscriber usually holds a whole /64); 128 counts each address alone.
   * Default 64.
   */
  ipv6PrefixLength?: number | undefined;
  /**
   * Called when Redis fails a count (the call is then admitted or refused as
   * `onRedisError` says). Must not throw; `startServer` logs at most one line
   * every 10 s from it. Default: none.
   */
  onStoreError?: ((error: unknown, outcome: RateLimitStoreFailure) => void) | undefined;
}

/** The defaults of {@link RateLimiterOptions}. */
export const RATE_LIMITER_DEFAULTS = Object.freeze({
  onRedisError: "open" as RateLimitStoreFailure,
  redisTimeoutMs: 250,
  keyPrefix: "protoguard:rl",
  ipv6PrefixLength: 64,
});

/** Totals of a limiter since it was created, for metrics. */
export interface RateLimitCounts {
  /** Calls refused RESOURCE_EXHAUSTED, by method. */
  readonly limited: ReadonlyMap<DescMethod, number>;
  /** Counts Redis failed, by what the call was then answered. */
  readonly storeErrors: Readonly<Record<RateLimitStoreFailure, number>>;
}

/** The caller a call is counted for. */
export interface RateLimitCaller {
  /** The identified caller; undefined when anonymous. */
  readonly principal: Principal | undefined;
  /** The client address (`peerAddressKey`), for anonymous callers; undefined when unknown. */
  readonly peer: string | undefined;
}

/** Counts calls against the rules' limits; see {@link createRateLimiter}. */
export interface RateLimiter {
  /**
   * Takes one call of `caller` from `method`'s budget under `limit`.
   * Resolves when the call may proceed; rejects with the ConnectError to
   * answer: RESOURCE_EXHAUSTED `RATE_LIMITED` with a `google.rpc.RetryInfo`
   * detail, or UNAVAILABLE `RATE_LIMIT_UNAVAILABLE` when failing closed.
   */
  take(method: DescMethod, limit: PlannedRateLimit, caller: RateLimitCaller): Promise<void>;
  /** Whether counts are shared through Redis. */
  readonly shared: boolean;
  /** Totals since creation. */
  counts(): RateLimitCounts;
  /** Closes the Redis connection, if any. Idempotent. */
  close(): Promise<void>;
}

/**
 * Creates the limiter. Each limited method gets its own counters, created
 * on its first call: `requests` per `per` window, then (with `burst`) up to
 * `burst` more from a pool that refills every {@link BURST_REFILL_WINDOWS}
 * windows. Windows are fixed (they start at a caller's first call), as
 * rate-limiter-flexible counts them.
 *
 * @throws {RangeError} for out-of-range options or a URL that is not `redis://` or `rediss://`.
 * @example
 * ```ts
 * const limiter = createRateLimiter({ redisUrl: "redis://127.0.0.1:6379", onRedisError: "closed" });
 * ```
 */
export function createRateLimiter(options: RateLimiterOptions = {}): RateLimiter {
  const onRedisError = options.onRedisError ?? RATE_LIMITER_DEFAULTS.onRedisError;
  const redisTimeoutMs = options.redisTimeoutMs ?? RATE_LIMITER_DEFAULTS.redisTimeoutMs;
  const keyPrefix = options.keyPrefix ?? RATE_LIMITER_DEFAULTS.keyPrefix;
  const ipv6PrefixLength = options.ipv6PrefixLength ?? RATE_LIMITER_DEFAULTS.ipv6PrefixLength;
  const { redisUrl, onStoreError } = options;
  if (onRedisError !== "open" && onRedisError !== "closed") {
    throw new RangeError(`rateLimits.onRedisError must be "open" or "closed", got ${JSON.stringify(onRedisError)}`);
  }
  if (!Number.isSafeInteger(redisTimeoutMs) || redisTimeoutMs < 1) {
    throw new RangeError("rateLimits.redisTimeoutMs must be a positive integer");
  }
  if (!Number.isSafeInteger(ipv6PrefixLength) || ipv6PrefixLength < 1 || ipv6PrefixLength > 128) {
    throw new RangeError("rateLimits.ipv6PrefixLength must be an integer from 1 to 128");
  }
  if (redisUrl !== undefined) assertRedisUrl(redisUrl);

  // Loaded only when a Redis is configured: an in-memory server never loads the client.
  const redis: Promise<Redis> | undefined = redisUrl === undefined ? undefined : connectRedis(redisUrl, redisTimeoutMs);
  // Failing to load or reach Redis is answered per call, never as an unhandled rejection.
  redis?.catch(() => {});
  const limiters = new Map<DescMethod, Promise<CallLimiter>>();
  const limited = new Map<DescMethod, number>();
  const storeErrors: Record<RateLimitStoreFailure, number> = { open: 0, closed: 0 };
  let closed = false;

  function limiterFor(method: DescMethod, limit: PlannedRateLimit): Promise<CallLimiter> {
    let limiter = limiters.get(method);
    if (limiter === undefined) {
      // The limit is part of the key: a deploy that changes it starts fresh counts rather than
      // reading another limit's.
      const prefix = `${keyPrefix}:${method.parent.typeName}/${method.name}:${limit.requests}-${limit.windowSeconds}`;
      limiter = buildLimiter(prefix, limit, redis);
      limiters.set(method, limiter);
    }
    return limiter;
  }

  function keyOf(caller: RateLimitCaller): string {
    const { principal } = caller;
    if (principal !== undefined) return `${principalKind(principal)}:${principal.id}`;
    return `peer:${addressKey(caller.peer ?? UNKNOWN_PEER, ipv6PrefixLength)}`;
  }

  return {
    shared: redis !== undefined,
    async take(method, limit, caller) {
      try {
        const limiter = await limiterFor(method, limit);
        await limiter.consume(keyOf(caller));
      } catch (error) {
        if (error instanceof RateLimiterRes) {
          limited.set(method, (limited.get(method) ?? 0) + 1);
          throw rateLimitedError(limit, error.msBeforeNext);
        }
        storeErrors[onRedisError]++;
        onStoreError?.(error, onRedisError);
        if (onRedisError === "closed") throw rateLimitUnavailableError(error);
      }
    },
    counts: () => ({ limited: new Map(limited), storeErrors: { ...storeErrors } }),
    async close() {
      if (closed || redis === undefined) return;
      closed = true;
      const client = await redis.catch(() => undefined);
      client?.disconnect();
    },
  };
}

type CallLimiter = Pick<RateLimiterAbstract, "consume">;

/** One method's counters: the steady limit, with a burst pool behind it when the rule has one. */
async function buildLimiter(
  prefix: string,
  limit: PlannedRateLimit,
  redis: Promise<Redis> | undefined,
): Promise<CallLimiter> {
  const client = redis === undefined ? undefined : await redis;
  const make = (keyPrefix: string, points: number, duration: number): RateLimiterAbstract =>
    client === undefined
      ? new RateLimiterMemory({ keyPrefix, points, duration })
      : // Not ready (down, reconnecting) fails the count at once rather than queueing it.
        new RateLimiterRedis({ storeClient: client, keyPrefix, points, duration, rejectIfRedisNotReady: true });
  const steady = make(prefix, limit.requests, limit.windowSeconds);
  if (limit.burst === 0) return steady;
  const burst = make(`${prefix}:burst`, limit.burst, limit.windowSeconds * BURST_REFILL_WINDOWS);
  return new BurstyRateLimiter(steady, burst);
}

/** An ioredis client that fails commands fast while Redis is away instead of queueing them. */
async function connectRedis(url: string, timeoutMs: number): Promise<Redis> {
  const { Redis } = await import("ioredis");
  const client = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: timeoutMs,
    connectTimeout: Math.max(timeoutMs, 1_000),
    // Keep trying to reconnect, at most every 2 s, for as long as the server runs.
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
    lazyConnect: false,
  });
  // Connection errors are reported per call (onStoreError); an 'error' event without a
  // listener would crash the process.
  client.on("error", () => {});
  // The first calls wait for the connection (or its first failure, or the connect timeout)
  // rather than failing as "not ready" while it is being made.
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      client.off("ready", done);
      client.off("error", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(timeoutMs, 1_000));
    timer.unref();
    client.once("ready", done);
    client.once("error", done);
  });
  return client;
}

function assertRedisUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new RangeError(`rateLimits.redisUrl is not a URL: ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new RangeError(`rateLimits.redisUrl must be a redis:// or rediss:// URL, got ${parsed.protocol}//…`);
  }
}
