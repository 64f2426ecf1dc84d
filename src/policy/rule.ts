import type { Rule } from "../../gen/protoguard/v1/options_pb.js";
import { isPermissionString } from "../permission.js";

/**
 * A rule after validation, in the shape the decision function consumes.
 *
 * - `public`: anyone may call; a valid token still identifies the caller.
 * - `user`: a valid token of an active user is required, and every listed
 *   requirement must hold.
 */
export type PlannedRule =
  | ({ readonly kind: "public" } & RuleCondition)
  | ({
      readonly kind: "user";
      /** Every permission the caller must hold (`app_label.codename`). */
      readonly permissions: readonly string[];
      readonly staff: boolean;
      readonly superuser: boolean;
    } & RuleCondition);

/**
 * The CEL condition of a rule, as written; the policy compiles it against
 * each method's request message (see `MethodPlan.condition`).
 */
export interface RuleCondition {
  /** The CEL expression that must be true, when the rule has one. */
  readonly condition?: string;
  /** What a caller refused by the condition is told, when the rule says. */
  readonly conditionMessage?: string;
}

/** Where the rule in force for a method came from. */
export type RuleSource = "method" | "service" | "default";

/**
 * The plain-object form of a rule, for the server default and for tests:
 * the same fields as `protoguard.v1.Rule`, all optional.
 *
 * @example
 * ```ts
 * const defaultRule: RuleInit = { authenticated: true };
 * ```
 */
export interface RuleInit {
  public?: boolean;
  authenticated?: boolean;
  permissions?: readonly string[];
  staff?: boolean;
  superuser?: boolean;
  /** A CEL expression over `principal`, `request` and `resource` that must be true. */
  condition?: string;
  /** What a caller refused by `condition` is told. */
  conditionMessage?: string;
}

/**
 * Validates a rule and turns it into a {@link PlannedRule}, or returns the
 * problems found, each a short sentence. Returning problems rather than
 * throwing lets the caller report every bad method at once.
 */
export function planRule(rule: Rule | RuleInit): PlannedRule | { problems: string[] } {
  const permissions = rule.permissions ?? [];
  const isPublic = rule.public === true;
  const staff = rule.staff === true;
  const superuser = rule.superuser === true;
  const condition = rule.condition ?? "";
  const conditionMessage = rule.conditionMessage ?? "";
  const problems: string[] = [];
  // A condition alone implies authenticated (see options.proto).
  if (
    !isPublic &&
    rule.authenticated !== true &&
    permissions.length === 0 &&
    !staff &&
    !superuser &&
    condition === ""
  ) {
    problems.push("the rule is empty: set public, authenticated, permissions, staff or superuser");
  }
  if (conditionMessage !== "" && condition.trim() === "") {
    problems.push("condition_message is set but condition is not");
  }
  if (condition !== "" && condition.trim() === "") problems.push("condition is blank");
  if (isPublic && (rule.authenticated === true || permissions.length > 0 || staff || superuser)) {
    problems.push("public cannot be combined with authenticated, permissions, staff or superuser");
  }
  for (const permission of permissions) {
    if (!isPermissionString(permission)) {
      problems.push(`permission "${permission}" is not of the form app_label.codename`);
    }
  }
  if (new Set(permissions).size !== permissions.length) {
    problems.push("a permission is listed twice");
  }
  if (problems.length > 0) return { problems };
  const withCondition: RuleCondition =
    condition === "" ? {} : { condition, ...(conditionMessage !== "" && { conditionMessage }) };
  if (isPublic) return condition === "" ? PUBLIC : Object.freeze({ kind: "public", ...withCondition });
  return Object.freeze({
    kind: "user",
    permissions: Object.freeze([...permissions]),
    staff,
    superuser,
    ...withCondition,
  });
}

const PUBLIC: PlannedRule = Object.freeze({ kind: "public" });

/** A rule written out the way a .proto option would read, for reports and logs. */
export function describeRule(rule: PlannedRule): string {
  const parts: string[] = [];
  if (rule.kind === "public") parts.push("public");
  else {
    if (rule.superuser) parts.push("superuser");
    if (rule.staff) parts.push("staff");
    if (rule.permissions.length > 0) parts.push(`permissions: ${rule.permissions.join(", ")}`);
    if (parts.length === 0) parts.push("authenticated");
  }
  if (rule.condition !== undefined) parts.push(`condition: ${rule.condition}`);
  return parts.join("; ");
}
