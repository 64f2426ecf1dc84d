/**
 * The condition and shadow-rule part of a method's plan, made once per
 * method descriptor together with the rest of it (see `createAuthPolicy`).
 */
import type { DescMethod } from "@bufbuild/protobuf";
import type { Rule } from "../../gen/protoguard/v1/options_pb.js";
import { planRule, type PlannedRule } from "./rule.js";
import { compileCondition, type CompiledCondition } from "../conditions/compile.js";

/**
 * A rule being rolled out (`method_shadow_rule`, else `service_shadow_rule`):
 * calls the rule in force admits are checked against it too, and those it
 * would refuse are reported as `would_deny`.
 */
export interface ShadowPlan {
  readonly rule: PlannedRule;
  readonly source: "method" | "service";
  readonly condition?: CompiledCondition;
}

/** What {@link planConditions} adds to a method's plan. */
export interface ConditionPlans {
  condition?: CompiledCondition;
  shadow?: ShadowPlan;
}

/**
 * Compiles the condition of `rule` (the rule in force, described by `where`)
 * and validates and compiles the declared shadow rule, or returns every
 * problem, each naming the method and the expression.
 */
export function planConditions(
  method: DescMethod,
  where: string,
  rule: PlannedRule,
  shadow: { rule: Rule; source: "method" | "service" } | undefined,
): ConditionPlans | { problems: string[] } {
  const problems: string[] = [];
  const result: ConditionPlans = {};
  const condition = compileFor(method, rule);
  if (condition !== undefined && "problems" in condition) {
    problems.push(...condition.problems.map((p) => `${where}: ${p}`));
  } else if (condition !== undefined) result.condition = condition;
  if (shadow !== undefined) {
    const shadowWhere =
      shadow.source === "method"
        ? `method ${method.parent.typeName}/${method.name} (shadow rule)`
        : `service ${method.parent.typeName} (shadow rule of method ${method.name})`;
    const planned = planRule(shadow.rule);
    if ("problems" in planned) {
      problems.push(...planned.problems.map((p) => `${shadowWhere}: ${p}`));
    } else {
      const shadowCondition = compileFor(method, planned);
      if (shadowCondition !== undefined && "problems" in shadowCondition) {
        problems.push(...shadowCondition.problems.map((p) => `${shadowWhere}: ${p}`));
      } else {
        result.shadow = Object.freeze({
          rule: planned,
          source: shadow.source,
          ...(shadowCondition !== undefined && { condition: shadowCondition }),
        });
      }
    }
  }
  return problems.length > 0 ? { problems } : result;
}

function compileFor(method: DescMethod, rule: PlannedRule): CompiledCondition | { problems: string[] } | undefined {
  if (rule.condition === undefined) return undefined;
  return compileCondition(rule.condition, rule.conditionMessage, method);
}
