/**
 * Step-up requirements of a rule (`max_auth_age`, `require_totp`): how recently, and with which
 * factors, the caller must have authenticated, read from the token's `auth_time` and `amr`.
 * Planned here rather than in rule.ts so the rule planner only calls one function.
 */
import type { Rule } from "../../gen/protoguard/v1/options_pb.js";

/** What a rule asks of the token's authentication; see `PlannedRule`'s `stepUp`. */
export interface StepUpRequirement {
  /** The longest time since `auth_time`, in whole seconds; absent when the rule sets no `max_auth_age`. */
  readonly maxAuthAgeSeconds?: number;
  /** Whether the token's `amr` must list `otp` (a one-time code was entered). */
  readonly requireTotp: boolean;
}

/** The step-up fields of a rule, as `Rule` and `RuleInit` spell them. */
interface StepUpFields {
  readonly maxAuthAge?: string | undefined;
  readonly requireTotp?: boolean | undefined;
}

// Whole seconds, minutes or hours: "300s", "5m", "1h". Fractions and compound forms ("1h30m")
// are refused so a typo cannot silently mean something else. At most 30 days: an auth age
// longer than any session is a mistake, not a policy.
const DURATION = /^([1-9][0-9]{0,6})(s|m|h)$/;
const UNIT_SECONDS = { s: 1, m: 60, h: 3600 } as const;
const MAX_AUTH_AGE_SECONDS = 30 * 24 * 3600;

/**
 * Parses a step-up duration (`"300s"`, `"5m"`, `"1h"`) into seconds, or undefined when it is
 * not one (empty, zero, a fraction, another unit, above 30 days).
 */
export function parseAuthAge(text: string): number | undefined {
  const match = DURATION.exec(text);
  if (match === null) return undefined;
  const seconds = Number(match[1]) * UNIT_SECONDS[match[2] as keyof typeof UNIT_SECONDS];
  return seconds <= MAX_AUTH_AGE_SECONDS ? seconds : undefined;
}

/**
 * Plans a rule's step-up fields: the requirement (undefined when the rule sets neither), with
 * each problem found appended to `problems`.
 */
export function planStepUp(rule: Rule | StepUpFields, problems: string[]): StepUpRequirement | undefined {
  const text = rule.maxAuthAge ?? "";
  const requireTotp = rule.requireTotp === true;
  let maxAuthAgeSeconds: number | undefined;
  if (text !== "") {
    maxAuthAgeSeconds = parseAuthAge(text);
    if (maxAuthAgeSeconds === undefined) {
      problems.push(
        `max_auth_age "${text}" is not a duration: write whole seconds, minutes or hours ("300s", "5m", "1h"), at most 30 days`,
      );
      return undefined;
    }
  }
  if (maxAuthAgeSeconds === undefined && !requireTotp) return undefined;
  return Object.freeze({ ...(maxAuthAgeSeconds !== undefined && { maxAuthAgeSeconds }), requireTotp });
}

/** The step-up fields written the way a .proto option reads, for `describeRule`. */
export function describeStepUp(stepUp: StepUpRequirement): string[] {
  const parts: string[] = [];
  if (stepUp.maxAuthAgeSeconds !== undefined) parts.push(`max_auth_age: ${stepUp.maxAuthAgeSeconds}s`);
  if (stepUp.requireTotp) parts.push("require_totp");
  return parts;
}
