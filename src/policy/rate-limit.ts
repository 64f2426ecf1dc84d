/**
 * The `rate_limit` field of a rule, validated and planned: how many calls
 * one principal (or one anonymous client address) may make to a method per
 * window. Only the plan lives here; counting is the Connect adapters' job
 * (src/connect/rate-limit.ts), so the decision stays free of I/O.
 */
import type { RateLimit } from "../../gen/protoguard/v1/options_pb.js";

/**
 * A rate limit after validation.
 *
 * @example
 * ```ts
 * // rate_limit: {requests: 60, per: "60s", burst: 10}
 * const limit: PlannedRateLimit = { requests: 60, per: "60s", windowSeconds: 60, burst: 10 };
 * ```
 */
export interface PlannedRateLimit {
  /** Calls allowed per window, at least 1. */
  readonly requests: number;
  /** The window as written in the rule (`"60s"`, `"1m"`, `"1h30m"`). */
  readonly per: string;
  /** The window in whole seconds, from 1 to {@link MAX_RATE_LIMIT_WINDOW_SECONDS}. */
  readonly windowSeconds: number;
  /**
   * Calls allowed beyond `requests` once a window's are spent, from a pool
   * that refills once every {@link BURST_REFILL_WINDOWS} windows. 0: none.
   */
  readonly burst: number;
}

/** The plain-object form of a rate limit, for `RuleInit` (server default and tests). */
export interface RateLimitInit {
  /** Calls allowed per window. Required, at least 1. */
  requests: number;
  /** The window: `"60s"`, `"1m"`, `"1h"`, `"1d"` or a sum such as `"1m30s"`. Required. */
  per: string;
  /** Calls allowed above `requests` in a burst. Default 0. */
  burst?: number;
}

/** The longest window a rule may declare: one day (counts live in memory or Redis that long). */
export const MAX_RATE_LIMIT_WINDOW_SECONDS = 86_400;

/** The most calls a rule may allow per window, or in its burst: beyond it the limit limits nothing. */
export const MAX_RATE_LIMIT_REQUESTS = 1_000_000;

/**
 * The burst pool refills once every this many windows, so a burst is an
 * occasional allowance above the steady rate, not a second steady rate.
 */
export const BURST_REFILL_WINDOWS = 10;

/**
 * A burst may be at most this many times `requests`: a larger one is the
 * steady rate misdeclared (raise `requests` or shorten `per` instead).
 */
export const MAX_BURST_FACTOR = 10;

const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3_600, d: 86_400 };

/**
 * The seconds of a rate-limit window written as one or more `<integer><unit>`
 * parts (units `s`, `m`, `h`, `d`, each at most once, largest first), or
 * undefined when it is not written so: `"60s"` → 60, `"1h30m"` → 5400.
 */
export function parseRateLimitWindow(text: string): number | undefined {
  const match = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (match === null || text === "") return undefined;
  const [, d, h, m, s] = match;
  const parts: [string | undefined, string][] = [
    [d, "d"],
    [h, "h"],
    [m, "m"],
    [s, "s"],
  ];
  let seconds = 0;
  for (const [digits, unit] of parts) {
    if (digits !== undefined) seconds += Number(digits) * UNIT_SECONDS[unit]!;
  }
  return Number.isSafeInteger(seconds) ? seconds : undefined;
}

/**
 * Validates a rule's `rate_limit` and plans it. Returns `{}` when the rule
 * has none, `{ rateLimit }` when it is well formed, else the problems found
 * (short sentences, as `planRule` reports them).
 */
export function planRateLimit(
  limit: RateLimit | RateLimitInit | undefined,
): { rateLimit?: PlannedRateLimit } | { problems: string[] } {
  if (limit === undefined) return {};
  const { requests, per } = limit;
  const burst = limit.burst ?? 0;
  const problems: string[] = [];
  if (!Number.isSafeInteger(requests) || requests < 1) {
    problems.push(`rate_limit.requests must be at least 1, got ${String(requests)}`);
  } else if (requests > MAX_RATE_LIMIT_REQUESTS) {
    problems.push(`rate_limit.requests must be at most ${MAX_RATE_LIMIT_REQUESTS}, got ${requests}`);
  }
  const windowSeconds = typeof per === "string" ? parseRateLimitWindow(per) : undefined;
  if (per === "" || per === undefined) {
    problems.push('rate_limit.per is required: a duration such as "60s", "1m" or "1h"');
  } else if (windowSeconds === undefined) {
    problems.push(`rate_limit.per "${per}" is not a duration such as "60s", "1m", "1h" or "1m30s"`);
  } else if (windowSeconds < 1 || windowSeconds > MAX_RATE_LIMIT_WINDOW_SECONDS) {
    problems.push(`rate_limit.per "${per}" must be from 1s to 1d`);
  }
  if (!Number.isSafeInteger(burst) || burst < 0) {
    problems.push(`rate_limit.burst must be a non-negative integer, got ${String(burst)}`);
  } else if (Number.isSafeInteger(requests) && requests >= 1 && burst > requests * MAX_BURST_FACTOR) {
    problems.push(
      `rate_limit.burst ${burst} is more than ${MAX_BURST_FACTOR} times requests ${requests}: raise requests or shorten per instead`,
    );
  }
  if (problems.length > 0 || windowSeconds === undefined) return { problems };
  return { rateLimit: Object.freeze({ requests, per, windowSeconds, burst }) };
}

/** A planned limit written the way the .proto option reads: `rate_limit: 60/60s burst 10`. */
export function describeRateLimit(limit: PlannedRateLimit): string {
  return `rate_limit: ${limit.requests}/${limit.per}${limit.burst > 0 ? ` burst ${limit.burst}` : ""}`;
}
