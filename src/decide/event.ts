/** One authorization decision as logs and metrics see it. */
import type { DescMethod } from "@bufbuild/protobuf";
import type { ShadowOutcome } from "./access.js";
import type { Verdict } from "./verdict.js";

/**
 * Where a decision was made: before Connect (`prefilter`), in the request
 * gate or the interceptor when a call starts, again while a streaming call
 * is open (`recheck`), or once the request body is decoded (`body`: for
 * methods with a condition, a resource loader or a shadow rule, and for
 * every method when an `authorize` fallback is set; the earlier stage then
 * reports only refusals, so each call is reported once).
 */
export type DecisionStage = "prefilter" | "gate" | "interceptor" | "recheck" | "body";

/** One authorization decision, for logs and metrics. Holds no secret. */
export interface DecisionEvent {
  readonly method: DescMethod;
  readonly verdict: Verdict;
  readonly stage: DecisionStage;
  /** Time spent deciding, in milliseconds. */
  readonly durationMs: number;
  /**
   * What the method's shadow rule says about a call the rule in force
   * admitted (stage `body` only): `would_deny` with a reason when the shadow
   * rule would have refused it. Never changes the verdict.
   */
  readonly shadow?: ShadowOutcome;
}
