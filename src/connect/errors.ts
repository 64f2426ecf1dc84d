import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { Deny, Unavailable } from "../decide/verdict.js";
import type { PlannedRateLimit } from "../policy/rate-limit.js";
import { ERROR_DOMAIN, type DenyReason, type LoginFailureReason, type RateLimitReason } from "../reasons.js";

/**
 * Turns a refusal into the `ConnectError` clients receive: the safe message,
 * the code, and a `google.rpc.ErrorInfo` detail with the machine-readable
 * reason. The underlying error is kept only as `cause`, which Connect never
 * serializes.
 */
export function verdictToConnectError(verdict: Deny | Unavailable): ConnectError {
  return authError(
    verdict.message,
    verdict.code,
    verdict.reason,
    verdict.cause,
    verdict.outcome === "deny" ? verdict.metadata : undefined,
  );
}

/**
 * A ConnectError carrying an ErrorInfo detail with `reason` in protoguard's domain: the one builder
 * of the auth layer's refusals and of Login's failures, so `authErrorReason` reads both.
 */
export function authError(
  message: string,
  code: Deny["code"] | Unavailable["code"] | Code.ResourceExhausted,
  reason: DenyReason | LoginFailureReason | RateLimitReason,
  cause?: unknown,
  metadata?: Readonly<Record<string, string>>,
): ConnectError {
  const info = create(ErrorInfoSchema, { reason, domain: ERROR_DOMAIN, ...(metadata !== undefined && { metadata }) });
  return new ConnectError(message, code, undefined, [{ desc: ErrorInfoSchema, value: info }], cause);
}

/**
 * The ErrorInfo metadata of a protoguard refusal a client received (e.g.
 * `maxLifetimeSeconds` for `TOKEN_LIFETIME_EXCEEDED`), or an empty object.
 */
export function authErrorMetadata(error: ConnectError): Readonly<Record<string, string>> {
  for (const info of error.findDetails(ErrorInfoSchema)) {
    if (info.domain === ERROR_DOMAIN) return { ...info.metadata };
  }
  return {};
}

/**
 * Reads the protoguard reason from an error a client received, or undefined.
 *
 * @example
 * ```ts
 * try { await client.getProfile({}); }
 * catch (e) { if (authErrorReason(ConnectError.from(e)) === "TOKEN_EXPIRED") await refresh(); }
 * ```
 */
export function authErrorReason(error: ConnectError): DenyReason | LoginFailureReason | RateLimitReason | undefined {
  for (const info of error.findDetails(ErrorInfoSchema)) {
    if (info.domain === ERROR_DOMAIN) return info.reason as DenyReason | LoginFailureReason | RateLimitReason;
  }
  return undefined;
}

/**
 * The refusal of a call over its rule's `rate_limit`: RESOURCE_EXHAUSTED,
 * reason `RATE_LIMITED` with the limit in the ErrorInfo metadata (`limit`,
 * `window`, `burst`), a `google.rpc.RetryInfo` detail with the time until the
 * caller's window ends (at least 1 ms), and the same as a `retry-after`
 * header in whole seconds for HTTP clients.
 */
export function rateLimitedError(limit: PlannedRateLimit, retryAfterMs: number): ConnectError {
  const delayMs = Math.max(1, Math.ceil(Number.isFinite(retryAfterMs) ? retryAfterMs : limit.windowSeconds * 1000));
  const info = create(ErrorInfoSchema, {
    reason: "RATE_LIMITED" satisfies RateLimitReason,
    domain: ERROR_DOMAIN,
    metadata: { limit: String(limit.requests), window: limit.per, burst: String(limit.burst) },
  });
  const retry = create(RetryInfoSchema, {
    retryDelay: { seconds: BigInt(Math.floor(delayMs / 1000)), nanos: (delayMs % 1000) * 1_000_000 },
  });
  return new ConnectError(
    "rate limit exceeded, retry later",
    Code.ResourceExhausted,
    { "retry-after": String(Math.ceil(delayMs / 1000)) },
    [
      { desc: ErrorInfoSchema, value: info },
      { desc: RetryInfoSchema, value: retry },
    ],
  );
}

/** The refusal of a call whose limit cannot be counted (Redis down) when failing closed. */
export function rateLimitUnavailableError(cause: unknown): ConnectError {
  return authError("rate limit store unavailable, try again later", Code.Unavailable, "RATE_LIMIT_UNAVAILABLE", cause);
}

/**
 * How long a refused client is told to wait (`google.rpc.RetryInfo`), in
 * milliseconds, or undefined when the error carries no such detail.
 *
 * @example
 * ```ts
 * catch (e) { const ms = retryDelayMs(ConnectError.from(e)); if (ms !== undefined) await sleep(ms); }
 * ```
 */
export function retryDelayMs(error: ConnectError): number | undefined {
  for (const info of error.findDetails(RetryInfoSchema)) {
    if (info.retryDelay !== undefined) {
      return Number(info.retryDelay.seconds) * 1000 + Math.round(info.retryDelay.nanos / 1_000_000);
    }
  }
  return undefined;
}
