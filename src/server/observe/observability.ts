/**
 * What the server tells operators: one structured log line per auth
 * decision (pino) and Prometheus metrics (prom-client), both fed from
 * `createAuth`'s `onDecision` hook.
 *
 * Only what a decision is made of is recorded: the method, the user id, the
 * outcome, the reason code, the stage and the latency. Never a header, a
 * token, a password or a one-time code: the hook does not even receive them.
 *
 * This file puts the two together; the log lines are `decision-log.ts`'s,
 * the metrics `metrics.ts`'s.
 */
import type { DescService } from "@bufbuild/protobuf";
import type { DestinationStream, Logger } from "pino";
import { collectDefaultMetrics, Registry } from "prom-client";
import type { DecisionEvent } from "../../decide/event.js";
import { createDecisionLog, createLogger } from "./decision-log.js";
import { createDecisionMetrics } from "./metrics.js";

/** Options of {@link createObservability}. */
export interface ObservabilityOptions {
  /** Logger to write to. Default: a new pino logger at `level` writing to `destination`. */
  logger?: Logger;
  /** Level of the default logger (pino's names: trace, debug, info, warn, error, silent). Default "info". */
  level?: string;
  /** Where the default logger writes. Default: standard output. */
  destination?: DestinationStream;
  /**
   * Registry to put the metrics in. Default: a new registry, so that two
   * servers in one process (tests) never collide on metric names.
   */
  registry?: Registry;
  /** Also collect prom-client's default process metrics (CPU, memory, event loop, GC). Default true. */
  defaultMetrics?: boolean;
  /**
   * Most log lines per second, as a whole, for refusals and anonymous calls (whatever their
   * method and reason). A flood of forged or missing tokens would otherwise cost a log line
   * each and bury everything else; past the limit they are only counted, and one line per
   * second, `msg: "auth decisions suppressed"`, gives their counts by outcome and reason.
   * Metrics always count every decision; decisions about an identified caller and refusals of
   * a revoked token or an inactive user are always logged. 0 means no limit. Default 100.
   */
  maxRefusalLogsPerSecond?: number;
  /**
   * The services the server routes, so metric label values stay within them: a decision
   * about any other method is counted under `method="unknown"`. Default: not given, and at most
   * 1024 distinct methods get a label value of their own.
   */
  services?: readonly DescService[];
  /** Clock in milliseconds, for tests. Default `Date.now`. */
  now?: () => number;
}

/** Logs and metrics of one server; see {@link createObservability}. */
export interface Observability {
  readonly logger: Logger;
  readonly registry: Registry;
  /** Pass as `createAuth({ onDecision })`. Cheap and never throws. */
  readonly onDecision: (event: DecisionEvent) => void;
}

/**
 * Creates the decision logger and metrics:
 *
 * - a log line per decision, `msg: "auth decision"`, with `method`,
 *   `userId` and `principalKind` (user or service; when known), `outcome` (allow, deny, unavailable), `reason`
 *   (the stable reason code, absent when allowed), `stage` (prefilter, gate,
 *   interceptor, or recheck when an open stream is decided again) and
 *   `latencyMs` (and `shadow: "would_deny"` with `shadowReason` when a
 *   shadow rule would have refused the call); denials and allows at info, unavailable at error with the
 *   backend's error message; refusals and anonymous calls are capped as a
 *   whole at `maxRefusalLogsPerSecond` lines per second, the rest summarised
 *   once a second in one `"auth decisions suppressed"` line;
 * - counter `protoguard_auth_decisions_total{method,outcome,reason}`,
 *   counter `protoguard_auth_principal_decisions_total{principal_kind,outcome}`
 *   (principal_kind user, service or anonymous), histogram
 *   `protoguard_auth_decision_seconds{outcome}`, counter
 *   `protoguard_auth_shadow_would_deny_total{method,reason}`, plus the
 *   default process metrics.
 *
 * @example
 * ```ts
 * const observability = createObservability({ level: "info" });
 * const auth = createAuth({ verifier, principals, services, onDecision: observability.onDecision });
 * const text = await observability.registry.metrics();
 * ```
 */
export function createObservability(options: ObservabilityOptions = {}): Observability {
  const logger = options.logger ?? createLogger({ level: options.level, destination: options.destination });
  const registry = options.registry ?? new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const count = createDecisionMetrics(registry, { services: options.services });
  const log = createDecisionLog(logger, { maxRefusalLogsPerSecond: options.maxRefusalLogsPerSecond, now: options.now });
  return {
    logger,
    registry,
    onDecision(event) {
      // The hook runs on the request path: a failure here must not fail the call.
      try {
        count(event);
        log(event);
      } catch {
        // Metrics and logs are best effort; the decision stands.
      }
    },
  };
}
