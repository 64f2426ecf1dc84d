/**
 * The log side of observability: one structured line per auth decision,
 * with refusals and anonymous calls capped per second as a whole (the rest
 * summarised once a second) so that a flood of bad tokens, however spread
 * over methods and reasons, cannot bury everything else.
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
  /**
   * Most lines per second, as a whole, for the calls an unidentified client can cause at will:
   * refusals and anonymous calls. Past it, such calls are only counted, and one summary line per
   * second (`msg: "auth decisions suppressed"`) gives their counts. Decisions about an identified
   * caller, and refusals of a revoked token or an inactive user, are always logged in full.
   * 0 means no limit. Default 100.
   */
  maxRefusalLogsPerSecond?: number | undefined;
  /** Clock in milliseconds, for tests. Default `Date.now`. */
  now?: (() => number) | undefined;
}

/** Logs one decision; see {@link createDecisionLog}. */
export type DecisionLog = (event: DecisionEvent) => void;

/**
 * Refusals that are security events whoever causes them: they take a genuine token (a revoked
 * one, or one of a user since deactivated), so they are never summarised.
 */
const ALWAYS_LOGGED: ReadonlySet<string> = new Set(["TOKEN_REVOKED", "USER_INACTIVE"]);

/** The one budget of the calls an unidentified client can cause: lines left this second, and what was held back. */
interface FloodBudget {
  /** Start of the current one-second window, ms. */
  windowStart: number;
  /** Lines written in the current window. */
  logged: number;
  /** Calls held back since the last summary. */
  suppressed: number;
  /** Those calls by `outcome/reason` (`allow/none` for anonymous calls): bounded by the reasons. */
  readonly byKind: Map<string, number>;
  /** Methods they concerned: bounded by the server's methods. */
  readonly methods: Set<DescMethod>;
  /** Start of the first window with a call held back, ms. */
  since: number;
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
 * parameters).
 *
 * Refusals and anonymous calls share one budget of `maxRefusalLogsPerSecond` lines per second,
 * whatever their method and reason: past it they are counted, and once the second is over one
 * line at warn, `msg: "auth decisions suppressed"`, says how many (`suppressed`), of which kinds
 * (`byKind`, `"deny/TOKEN_INVALID": N`, `"allow/none"` for anonymous calls), over how many
 * methods (`methods`) and since when (`sinceMs`). So under a flood the log grows by at most
 * that many lines and one summary per second. Decisions about an identified caller (allowed,
 * or refused a permission) and refusals of a revoked token or an inactive user are always
 * written in full.
 */
export function createDecisionLog(logger: Logger, options: DecisionLogOptions = {}): DecisionLog {
  const maxLines = options.maxRefusalLogsPerSecond ?? 100;
  const now = options.now ?? Date.now;
  const paths = new Map<DescMethod, string>();
  const pathOf = (method: DescMethod): string => {
    let path = paths.get(method);
    if (path === undefined) paths.set(method, (path = methodPath(method)));
    return path;
  };
  const budget: FloodBudget = {
    windowStart: Number.NEGATIVE_INFINITY,
    logged: 0,
    suppressed: 0,
    byKind: new Map(),
    methods: new Set(),
    since: 0,
  };
  let timer: ReturnType<typeof setTimeout> | undefined;

  /** Writes the summary of what was held back, if anything was. */
  const summarise = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (budget.suppressed === 0) return;
    if (logger.isLevelEnabled("warn")) {
      logger.warn(
        {
          suppressed: budget.suppressed,
          byKind: Object.fromEntries(budget.byKind),
          methods: budget.methods.size,
          sinceMs: budget.since,
        },
        "auth decisions suppressed",
      );
    }
    budget.suppressed = 0;
    budget.byKind.clear();
    budget.methods.clear();
  };

  /** Whether this call, one an unidentified client can cause, gets a line of its own. */
  const mayLog = (method: DescMethod, kind: string): boolean => {
    if (maxLines === 0) return true;
    const t = now();
    if (t - budget.windowStart >= 1000) {
      summarise();
      budget.windowStart = t;
      budget.logged = 0;
    }
    if (budget.logged < maxLines) {
      budget.logged++;
      return true;
    }
    if (budget.suppressed === 0) {
      budget.since = budget.windowStart;
      // The summary is due when the window ends, even if no call comes then.
      timer = setTimeout(summarise, Math.max(0, budget.windowStart + 1000 - t));
      timer.unref?.();
    }
    budget.suppressed++;
    budget.byKind.set(kind, (budget.byKind.get(kind) ?? 0) + 1);
    budget.methods.add(method);
    return false;
  };

  return (event) => {
    const { verdict } = event;
    const level = verdict.outcome === "unavailable" ? "error" : "info";
    if (!logger.isLevelEnabled(level)) return;
    const userId =
      verdict.outcome === "allow" ? verdict.principal?.id : verdict.outcome === "deny" ? verdict.userId : undefined;
    const reason = verdict.outcome === "allow" ? undefined : verdict.reason;
    const budgeted = userId === undefined && (reason === undefined || !ALWAYS_LOGGED.has(reason));
    if (budgeted && !mayLog(event.method, `${verdict.outcome}/${reason ?? "none"}`)) return;
    const record: Record<string, unknown> = {
      method: pathOf(event.method),
      outcome: verdict.outcome,
      stage: event.stage,
      latencyMs: Math.round(event.durationMs * 1000) / 1000,
    };
    if (userId !== undefined) {
      record["userId"] = userId;
      record["principalKind"] = principalKindLabel(verdict);
    }
    if (reason !== undefined) record["reason"] = reason;
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
    logger[level](record, "auth decision");
  };
}

/** The stable `code` of a refusal's cause (TokenRejectedError, jose's errors), if it has one. */
function causeCode(cause: unknown): string | undefined {
  const code = (cause as { code?: unknown } | null | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}
