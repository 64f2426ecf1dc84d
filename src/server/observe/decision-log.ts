/**
 * The log side of observability: one structured line per auth decision,
 * with refusals of one kind capped per second so that a flood of bad tokens
 * cannot bury everything else.
 *
 * Only what a decision is made of is recorded: the method, the user id, the
 * outcome, the reason code, the stage and the latency. Never a header, a
 * token, a password or a one-time code: the hook does not even receive them.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { pino, type DestinationStream, type Logger } from "pino";
import type { DecisionEvent } from "../../decide/event.js";
import { describeCause } from "../../util/cause-chain.js";
import { methodPath, principalKindLabel } from "./metrics.js";

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Level (pino's names: trace, debug, info, warn, error, silent). Default "info". */
  level?: string | undefined;
  /** Where it writes. Default: standard output. */
  destination?: DestinationStream | undefined;
}

/** The server's default pino logger, which redacts credentials whoever logs through it. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { name: "protoguard" },
      // Not needed by anything we log, but a later `logger.info({ req })`
      // by someone else must not leak credentials either.
      redact: ["req.headers.authorization", "headers.authorization", "password", "otpCode", "token"],
    },
    options.destination ?? pino.destination(1),
  );
}

/** Options of {@link createDecisionLog}. */
export interface DecisionLogOptions {
  /** Most log lines per second for refusals of one kind; 0 means no limit. Default 100. */
  maxRefusalLogsPerSecond?: number | undefined;
  /** Clock in milliseconds, for tests. Default `Date.now`. */
  now?: (() => number) | undefined;
}

/** Logs one decision; see {@link createDecisionLog}. */
export type DecisionLog = (event: DecisionEvent) => void;

/** Log budget of one kind of refusal (same method, outcome and reason). */
interface RefusalBudget {
  /** Start of the current one-second log window, ms. */
  windowStart: number;
  /** Lines written in the current window. */
  logged: number;
  /** Refusals not logged since the last line of this kind. */
  suppressed: number;
}

interface MethodLog {
  /** `/package.Service/Method`, the form gRPC and Connect put in the URL path. */
  readonly path: string;
  /** Budgets by `outcome + "/" + reason`. */
  readonly budgets: Map<string, RefusalBudget>;
}

/**
 * Writes a line per decision to `logger`, `msg: "auth decision"`, with
 * `method`, `userId` and `principalKind` (`user` or `service`; when
 * known), `outcome`, `reason` (absent when
 * allowed), `stage` and `latencyMs`, plus `shadow: "would_deny"`,
 * `shadowReason` and `shadowSource` when the method's shadow rule would
 * have refused the call; denials and allows at info,
 * unavailable at error with the backend's reason (`error.type`,
 * `error.code` such as `ECONNREFUSED` or `57P01`, `error.message`; never the query or its
 * parameters). Refusals of one
 * kind beyond `maxRefusalLogsPerSecond` are only counted, and the next line
 * written for that kind carries `suppressed: N`. Allowed calls are always
 * logged.
 */
export function createDecisionLog(logger: Logger, options: DecisionLogOptions = {}): DecisionLog {
  const maxRefusalLogs = options.maxRefusalLogsPerSecond ?? 100;
  const now = options.now ?? Date.now;
  const byMethod = new Map<DescMethod, MethodLog>();
  const entryFor = (method: DescMethod): MethodLog => {
    let entry = byMethod.get(method);
    if (entry === undefined) {
      entry = { path: methodPath(method), budgets: new Map() };
      byMethod.set(method, entry);
    }
    return entry;
  };
  const budgetFor = (entry: MethodLog, outcome: string, reason: string): RefusalBudget => {
    const key = `${outcome}/${reason}`;
    let budget = entry.budgets.get(key);
    if (budget === undefined) {
      budget = { windowStart: 0, logged: 0, suppressed: 0 };
      entry.budgets.set(key, budget);
    }
    return budget;
  };
  /** Whether this refusal gets a line of its own, under the per-kind budget. */
  const mayLog = (budget: RefusalBudget): boolean => {
    if (maxRefusalLogs === 0) return true;
    const t = now();
    if (t - budget.windowStart >= 1000) {
      budget.windowStart = t;
      budget.logged = 0;
    }
    if (budget.logged >= maxRefusalLogs) {
      budget.suppressed++;
      return false;
    }
    budget.logged++;
    return true;
  };

  return (event) => {
    const { verdict } = event;
    const level = verdict.outcome === "unavailable" ? "error" : "info";
    if (!logger.isLevelEnabled(level)) return;
    const entry = entryFor(event.method);
    const budget = verdict.outcome === "allow" ? undefined : budgetFor(entry, verdict.outcome, verdict.reason);
    if (budget !== undefined && !mayLog(budget)) return;
    const userId =
      verdict.outcome === "allow" ? verdict.principal?.id : verdict.outcome === "deny" ? verdict.userId : undefined;
    const record: Record<string, unknown> = {
      method: entry.path,
      outcome: verdict.outcome,
      stage: event.stage,
      latencyMs: Math.round(event.durationMs * 1000) / 1000,
    };
    if (userId !== undefined) {
      record["userId"] = userId;
      record["principalKind"] = principalKindLabel(verdict);
    }
    if (verdict.outcome !== "allow") record["reason"] = verdict.reason;
    if (verdict.outcome === "deny") {
      if (verdict.metadata !== undefined) Object.assign(record, verdict.metadata);
      // What exactly was wrong, for the developer (a TokenRejectedError's code such as
      // AUDIENCE_MISMATCH, or jose's): the client sees only the reason.
      const detail = causeCode(verdict.cause);
      if (detail !== undefined) record["detail"] = detail;
    }
    // A shadow rule's opinion rides on the decision it concerns: one line per call.
    if (event.shadow?.outcome === "would_deny") {
      record["shadow"] = "would_deny";
      record["shadowReason"] = event.shadow.reason;
      record["shadowSource"] = event.shadow.source;
    }
    if (verdict.outcome === "unavailable") record["error"] = describeCause(verdict.cause);
    if (budget !== undefined && budget.suppressed > 0) {
      record["suppressed"] = budget.suppressed;
      budget.suppressed = 0;
    }
    logger[level](record, "auth decision");
  };
}

/** The stable `code` of a refusal's cause (TokenRejectedError, jose's errors), if it has one. */
function causeCode(cause: unknown): string | undefined {
  const code = (cause as { code?: unknown } | null | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}
