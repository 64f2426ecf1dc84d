/**
 * What the server tells operators: one structured log line per auth
 * decision (pino) and Prometheus metrics (prom-client), both fed from
 * `createAuth`'s `onDecision` hook.
 *
 * Only what a decision is made of is recorded: the method, the user id, the
 * outcome, the reason code, the stage and the latency. Never a header, a
 * token, a password or a one-time code: the hook does not even receive them.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { pino, type DestinationStream, type Logger } from "pino";
import { collectDefaultMetrics, Counter, Histogram, Registry } from "prom-client";
import type { DecisionEvent } from "../connect/auth.js";

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
   * Most log lines per second for refusals of one kind (same method,
   * outcome and reason). A flood of forged or missing tokens would otherwise
   * cost a log line each and bury everything else; past the limit, refusals
   * are only counted, and the next line written for that kind carries
   * `suppressed: N`. Metrics always count every decision, and allowed calls
   * are always logged. 0 means no limit. Default 100.
   */
  maxRefusalLogsPerSecond?: number;
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
 * Latency buckets in seconds. A decision is microseconds when nothing needs
 * I/O (public methods, rejected tokens, cache hits) and a database round
 * trip otherwise, so the buckets start far below a millisecond.
 */
const DECISION_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5];

/** Label value of `reason` for allowed calls: Prometheus treats "" as an absent label. */
const NO_REASON = "none";

interface MethodMetrics {
  /** `/package.Service/Method`, the form gRPC and Connect put in the URL path. */
  readonly path: string;
  /** Counter children and log budgets by `outcome + "/" + reason`. */
  readonly counters: Map<string, DecisionKind>;
}

interface DecisionKind {
  readonly child: Counter.Internal;
  /** Start of the current one-second log window, ms. */
  windowStart: number;
  /** Lines written in the current window. */
  logged: number;
  /** Refusals not logged since the last line of this kind. */
  suppressed: number;
}

/**
 * Creates the decision logger and metrics:
 *
 * - a log line per decision, `msg: "auth decision"`, with `method`,
 *   `userId` (when known), `outcome` (allow, deny, unavailable), `reason`
 *   (the stable reason code, absent when allowed), `stage` (prefilter, gate,
 *   interceptor, or recheck when an open stream is decided again) and
 *   `latencyMs`; denials and allows at info, unavailable at error with the
 *   backend's error message; refusals of one kind are capped
 *   at `maxRefusalLogsPerSecond` lines, the rest counted in `suppressed`;
 * - counter `protoguard_auth_decisions_total{method,outcome,reason}` and
 *   histogram `protoguard_auth_decision_seconds{outcome}`, plus the default
 *   process metrics.
 *
 * @example
 * ```ts
 * const observability = createObservability({ level: "info" });
 * const auth = createAuth({ verifier, principals, services, onDecision: observability.onDecision });
 * const text = await observability.registry.metrics();
 * ```
 */
export function createObservability(options: ObservabilityOptions = {}): Observability {
  const logger =
    options.logger ??
    pino(
      {
        level: options.level ?? "info",
        base: { name: "protoguard" },
        // Not needed by anything we log, but a later `logger.info({ req })`
        // by someone else must not leak credentials either.
        redact: ["req.headers.authorization", "headers.authorization", "password", "otpCode", "token"],
      },
      options.destination ?? pino.destination(1),
    );
  const registry = options.registry ?? new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });

  const decisions = new Counter({
    name: "protoguard_auth_decisions_total",
    help: "Authorization decisions by method, outcome (allow, deny, unavailable) and reason code.",
    labelNames: ["method", "outcome", "reason"] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: "protoguard_auth_decision_seconds",
    help: "Time to reach an authorization decision, in seconds.",
    labelNames: ["outcome"] as const,
    buckets: DECISION_BUCKETS,
    registers: [registry],
  });
  // Label lookups hash the label set on every call; the children are
  // resolved once per (method, outcome, reason) and kept, so the hot path is
  // two Map reads and two increments.
  const byOutcome = {
    allow: latency.labels("allow"),
    deny: latency.labels("deny"),
    unavailable: latency.labels("unavailable"),
  };
  const byMethod = new Map<DescMethod, MethodMetrics>();

  const counterFor = (method: DescMethod, outcome: string, reason: string) => {
    let entry = byMethod.get(method);
    if (entry === undefined) {
      entry = { path: `/${method.parent.typeName}/${method.name}`, counters: new Map() };
      byMethod.set(method, entry);
    }
    const key = `${outcome}/${reason}`;
    let kind = entry.counters.get(key);
    if (kind === undefined) {
      kind = { child: decisions.labels(entry.path, outcome, reason), windowStart: 0, logged: 0, suppressed: 0 };
      entry.counters.set(key, kind);
    }
    return { path: entry.path, kind };
  };
  const maxRefusalLogs = options.maxRefusalLogsPerSecond ?? 100;
  const now = options.now ?? Date.now;
  /** Whether this refusal gets a line of its own, under the per-kind budget. */
  const mayLog = (kind: DecisionKind): boolean => {
    if (maxRefusalLogs === 0) return true;
    const t = now();
    if (t - kind.windowStart >= 1000) {
      kind.windowStart = t;
      kind.logged = 0;
    }
    if (kind.logged >= maxRefusalLogs) {
      kind.suppressed++;
      return false;
    }
    kind.logged++;
    return true;
  };

  return {
    logger,
    registry,
    onDecision(event) {
      // The hook runs on the request path: a failure here must not fail the call.
      try {
        const { verdict } = event;
        const reason = verdict.outcome === "allow" ? NO_REASON : verdict.reason;
        const { path, kind } = counterFor(event.method, verdict.outcome, reason);
        kind.child.inc();
        byOutcome[verdict.outcome].observe(event.durationMs / 1000);

        const level = verdict.outcome === "unavailable" ? "error" : "info";
        if (!logger.isLevelEnabled(level)) return;
        if (verdict.outcome !== "allow" && !mayLog(kind)) return;
        const userId =
          verdict.outcome === "allow"
            ? verdict.principal?.id
            : verdict.outcome === "deny"
              ? verdict.userId
              : undefined;
        const record: Record<string, unknown> = {
          method: path,
          outcome: verdict.outcome,
          stage: event.stage,
          latencyMs: Math.round(event.durationMs * 1000) / 1000,
        };
        if (userId !== undefined) record["userId"] = userId;
        if (verdict.outcome !== "allow") record["reason"] = verdict.reason;
        if (verdict.outcome === "unavailable") record["error"] = errorSummary(verdict.cause);
        if (kind.suppressed > 0) {
          record["suppressed"] = kind.suppressed;
          kind.suppressed = 0;
        }
        logger[level](record, "auth decision");
      } catch {
        // Metrics and logs are best effort; the decision stands.
      }
    },
  };
}

/**
 * Type and message of a backend failure, without stack or properties: a
 * driver error's extra fields may echo query parameters.
 */
function errorSummary(cause: unknown): { type: string; message: string } {
  if (cause instanceof Error) return { type: cause.name, message: cause.message };
  return { type: typeof cause, message: String(cause) };
}
