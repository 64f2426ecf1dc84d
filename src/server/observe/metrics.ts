/**
 * The Prometheus side of observability: a counter of decisions by method,
 * outcome and reason, and a histogram of decision latency by outcome.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Counter, Histogram, type Registry } from "prom-client";
import type { DecisionEvent } from "../../decide/event.js";
import type { Verdict } from "../../decide/verdict.js";
import { principalKind } from "../../principal.js";
import type { DenyReason } from "../../reasons.js";

/**
 * Latency buckets in seconds. A decision is microseconds when nothing needs
 * I/O (public methods, rejected tokens, cache hits) and a database round
 * trip otherwise, so the buckets start far below a millisecond.
 */
const DECISION_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5];

/** Label value of `reason` for allowed calls: Prometheus treats "" as an absent label. */
const NO_REASON = "none";

/** Key prefix of the shadow counter's children in the per-method cache (not a decision outcome). */
const WOULD_DENY = "would_deny";

/** Label value of `method` for a method outside the server's services, and of `reason` for one outside {@link KNOWN_REASONS}. */
export const UNKNOWN_LABEL = "unknown";

/**
 * Every reason code a decision may carry (src/reasons.ts), as a value: a label value outside it
 * is written `unknown`, so no caller (nor an application callback) can add series at will.
 * `satisfies` keeps it complete when a reason is added.
 */
const KNOWN_REASONS: ReadonlySet<string> = new Set(
  Object.keys({
    TOKEN_MISSING: true,
    TOKEN_MALFORMED: true,
    TOKEN_INVALID: true,
    TOKEN_EXPIRED: true,
    TOKEN_LIFETIME_EXCEEDED: true,
    TOKEN_WRONG_TYPE: true,
    TOKEN_REVOKED: true,
    USER_INACTIVE: true,
    UNKNOWN_ISSUER: true,
    IDENTITY_NOT_LINKED: true,
    GATEWAY_UNTRUSTED: true,
    API_KEY_NOT_ALLOWED: true,
    PERMISSION_MISSING: true,
    STAFF_REQUIRED: true,
    SUPERUSER_REQUIRED: true,
    PRINCIPAL_KIND: true,
    CONDITION_FAILED: true,
    CONDITION_ERROR: true,
    AUTHORIZE_DENIED: true,
    AUTH_BACKEND_UNAVAILABLE: true,
    RESOURCE_UNAVAILABLE: true,
    AUTHORIZE_UNAVAILABLE: true,
  } satisfies Record<DenyReason, true>),
);

/** Most distinct `method` label values when the server's services are not given; the rest are `unknown`. */
const MAX_METHOD_LABELS = 1024;

/** Options of {@link createDecisionMetrics}. */
export interface DecisionMetricsOptions {
  /**
   * The services the server routes: a decision about any other method is counted under
   * `method="unknown"`. Default: none given, and then at most 1024 distinct methods get a
   * label value of their own, the rest `unknown`.
   */
  services?: readonly DescService[] | undefined;
}

/** Counts one decision; see {@link createDecisionMetrics}. */
export type DecisionMetrics = (event: DecisionEvent) => void;

/**
 * Registers in `registry` and feeds, one decision at a time:
 * counter `protoguard_auth_decisions_total{method,outcome,reason}`,
 * counter `protoguard_auth_principal_decisions_total{principal_kind,outcome}`,
 * histogram `protoguard_auth_decision_seconds{outcome}`, and counter
 * `protoguard_auth_shadow_would_deny_total{method,reason}` of admitted
 * calls a shadow rule would have refused. Label values are bounded to what
 * the server knows: `method` is `unknown` for a method outside
 * `options.services`, `reason` is `unknown` for a code not in src/reasons.ts.
 */
export function createDecisionMetrics(registry: Registry, options: DecisionMetricsOptions = {}): DecisionMetrics {
  const known =
    options.services === undefined ? undefined : new Set(options.services.flatMap((service) => service.methods));
  let labelled = 0;
  /** The `method` label value: the path of a method the server knows, else `unknown`. */
  const methodLabel = (method: DescMethod): string => {
    if (known !== undefined) return known.has(method) ? methodPath(method) : UNKNOWN_LABEL;
    if (labelled >= MAX_METHOD_LABELS) return UNKNOWN_LABEL;
    labelled++;
    return methodPath(method);
  };
  const reasonLabel = (reason: string): string => (KNOWN_REASONS.has(reason) ? reason : UNKNOWN_LABEL);
  const decisions = new Counter({
    name: "protoguard_auth_decisions_total",
    help: "Authorization decisions by method, outcome (allow, deny, unavailable) and reason code.",
    labelNames: ["method", "outcome", "reason"] as const,
    registers: [registry],
  });
  // A counter of its own rather than a label on the one above: adding a
  // label would rename every existing series that dashboards query.
  const byKind = new Counter({
    name: "protoguard_auth_principal_decisions_total",
    help: "Authorization decisions by principal kind (user, service, anonymous for no identified caller) and outcome.",
    labelNames: ["principal_kind", "outcome"] as const,
    registers: [registry],
  });
  const kindCounters = new Map<string, Counter.Internal>();
  const kindCounterFor = (kind: string, outcome: string): Counter.Internal => {
    const key = `${kind}/${outcome}`;
    let child = kindCounters.get(key);
    if (child === undefined) kindCounters.set(key, (child = byKind.labels(kind, outcome)));
    return child;
  };
  const latency = new Histogram({
    name: "protoguard_auth_decision_seconds",
    help: "Time to reach an authorization decision, in seconds.",
    labelNames: ["outcome"] as const,
    buckets: DECISION_BUCKETS,
    registers: [registry],
  });
  const wouldDeny = new Counter({
    name: "protoguard_auth_shadow_would_deny_total",
    help: "Calls admitted by the rule in force that the method's shadow rule would refuse, by method and reason code.",
    labelNames: ["method", "reason"] as const,
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
  const byMethod = new Map<DescMethod, { label: string; children: Map<string, Counter.Internal> }>();
  const counterFor = (method: DescMethod, outcome: string, reason: string): Counter.Internal => {
    let counters = byMethod.get(method);
    if (counters === undefined) {
      counters = { label: methodLabel(method), children: new Map() };
      byMethod.set(method, counters);
    }
    const key = `${outcome}/${reason}`;
    let child = counters.children.get(key);
    if (child === undefined) {
      const label = reason === NO_REASON ? reason : reasonLabel(reason);
      child =
        outcome === WOULD_DENY
          ? wouldDeny.labels(counters.label, label)
          : decisions.labels(counters.label, outcome, label);
      // Children are kept per known reason only: an unknown one is looked up each time.
      if (label === reason) counters.children.set(key, child);
    }
    return child;
  };

  return (event) => {
    const { verdict } = event;
    const reason = verdict.outcome === "allow" ? NO_REASON : verdict.reason;
    counterFor(event.method, verdict.outcome, reason).inc();
    kindCounterFor(principalKindLabel(verdict), verdict.outcome).inc();
    byOutcome[verdict.outcome].observe(event.durationMs / 1000);
    if (event.shadow?.outcome === "would_deny") counterFor(event.method, WOULD_DENY, event.shadow.reason).inc();
  };
}

/**
 * The kind of the caller a verdict concerns: `user` or `service` once
 * identified, `anonymous` otherwise (no credential, or one refused before
 * the caller was known).
 */
export function principalKindLabel(verdict: Verdict): "user" | "service" | "anonymous" {
  if (verdict.outcome === "allow")
    return verdict.principal === undefined ? "anonymous" : principalKind(verdict.principal);
  if (verdict.outcome === "deny" && verdict.principalKind !== undefined) return verdict.principalKind;
  return "anonymous";
}

/** `/package.Service/Method`, the form gRPC and Connect put in the URL path. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** A cache's running totals, read at each scrape. */
export interface CacheCounts {
  readonly hits: number;
  readonly misses: number;
}

/**
 * Registers counters `protoguard_cache_hits_total{cache}` and
 * `protoguard_cache_misses_total{cache}`, read from the caches' own totals at
 * each scrape (nothing is added to the request path): `token` is the
 * verified-token cache (a miss is a signature check), `principal` the user
 * cache (a miss is a database lookup).
 */
export function registerCacheMetrics(registry: Registry, caches: Readonly<Record<string, () => CacheCounts>>): void {
  const read = (which: keyof CacheCounts) =>
    function collect(this: Counter<"cache">) {
      this.reset();
      for (const [cache, counts] of Object.entries(caches)) this.inc({ cache }, counts()[which]);
    };
  new Counter({
    name: "protoguard_cache_hits_total",
    help: "Lookups answered by a cache (token: verified tokens; principal: users and permissions).",
    labelNames: ["cache"] as const,
    registers: [registry],
    collect: read("hits"),
  });
  new Counter({
    name: "protoguard_cache_misses_total",
    help: "Lookups a cache could not answer (token: a signature check; principal: a database lookup).",
    labelNames: ["cache"] as const,
    registers: [registry],
    collect: read("misses"),
  });
}
