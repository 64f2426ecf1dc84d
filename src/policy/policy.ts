import { getOption, hasOption, type DescMethod, type DescService } from "@bufbuild/protobuf";
import {
  method_rule,
  method_shadow_rule,
  service_rule,
  service_shadow_rule,
} from "../../gen/protoguard/v1/options_pb.js";
import type { CompiledCondition } from "../conditions/compile.js";
import { planConditions, type ShadowPlan } from "./conditions.js";
import { planRule, type PlannedRule, type RuleInit, type RuleSource } from "./rule.js";
import { ProtoguardError } from "../errors.js";

/** The rule in force for one method, and where it came from. */
export interface MethodPlan {
  readonly method: DescMethod;
  readonly rule: PlannedRule;
  readonly source: RuleSource;
  /** The rule's condition, compiled against the method's request message. */
  readonly condition?: CompiledCondition;
  /** The method's shadow rule: evaluated and reported, never enforced. */
  readonly shadow?: ShadowPlan;
}

/** Options for {@link createAuthPolicy}. */
export interface AuthPolicyOptions {
  /**
   * The rule for methods whose method and service carry no rule.
   * Default: `{ authenticated: true }` (deny anonymous callers by default).
   */
  defaultRule?: RuleInit;
  /**
   * Services to plan, and so validate, now. A malformed rule in any of them
   * makes {@link createAuthPolicy} throw a {@link PolicyError} naming every
   * offending method. Methods of other services are planned on first use.
   * Default: none.
   */
  services?: readonly DescService[];
}

/**
 * The planned rules of a server: one lookup per call.
 *
 * @example
 * ```ts
 * const policy = createAuthPolicy({ services: [ProductService] });
 * policy.planFor(ProductService.method.updateProduct).rule;
 * // { kind: "user", permissions: ["products.change_product"], staff: false, superuser: false }
 * ```
 */
export interface AuthPolicy {
  /**
   * The plan for `method`; planned from its descriptor on first use and
   * cached. Throws a {@link PolicyError} if the method's rule is malformed.
   */
  planFor(method: DescMethod): MethodPlan;
  /** Plans every method of `services`, throwing one {@link PolicyError} for all problems. */
  planServices(services: readonly DescService[]): MethodPlan[];
  /** The validated server default. */
  readonly defaultRule: PlannedRule;
}

/** A malformed rule in a .proto file or in the server default. */
export class PolicyError extends ProtoguardError<"INVALID_RULE"> {
  /** Each problem, prefixed with the method or service it concerns. */
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super("INVALID_RULE", `invalid protoguard rules:\n  ${problems.join("\n  ")}`);
    this.problems = problems;
  }
}

/** The shadow rule of `method` as declared, and where it was declared. */
function shadowOf(method: DescMethod) {
  if (hasOption(method, method_shadow_rule)) {
    return { rule: getOption(method, method_shadow_rule), source: "method" as const };
  }
  if (hasOption(method.parent, service_shadow_rule)) {
    return { rule: getOption(method.parent, service_shadow_rule), source: "service" as const };
  }
  return undefined;
}

/**
 * Creates the policy: reads `protoguard.v1` options from method and service
 * descriptors (method rule, else service rule, else the default) and caches
 * the result per method descriptor.
 *
 * @throws {PolicyError} if the default rule or a rule of `options.services` is malformed.
 */
export function createAuthPolicy(options: AuthPolicyOptions = {}): AuthPolicy {
  const plannedDefault = planRule(options.defaultRule ?? { authenticated: true });
  if ("problems" in plannedDefault) {
    throw new PolicyError(plannedDefault.problems.map((p) => `server default rule: ${p}`));
  }
  const defaultRule = plannedDefault;
  const plans = new Map<DescMethod, MethodPlan>();

  function planMethod(method: DescMethod): MethodPlan | string[] {
    let planned: ReturnType<typeof planRule>;
    let source: RuleSource;
    if (hasOption(method, method_rule)) {
      planned = planRule(getOption(method, method_rule));
      source = "method";
    } else if (hasOption(method.parent, service_rule)) {
      planned = planRule(getOption(method.parent, service_rule));
      source = "service";
    } else {
      planned = defaultRule;
      source = "default";
    }
    const where =
      source === "method"
        ? `method ${method.parent.typeName}/${method.name}`
        : source === "service"
          ? `service ${method.parent.typeName} (rule of method ${method.name})`
          : `server default rule (for method ${method.parent.typeName}/${method.name})`;
    if ("problems" in planned) return planned.problems.map((p) => `${where}: ${p}`);
    const conditions = planConditions(method, where, planned, shadowOf(method));
    if ("problems" in conditions) return conditions.problems;
    const plan: MethodPlan = Object.freeze({ method, rule: planned, source, ...conditions });
    plans.set(method, plan);
    return plan;
  }

  function planServices(services: readonly DescService[]): MethodPlan[] {
    const problems: string[] = [];
    const result: MethodPlan[] = [];
    for (const service of services) {
      for (const method of service.methods) {
        const plan = plans.get(method) ?? planMethod(method);
        if (Array.isArray(plan)) problems.push(...plan);
        else result.push(plan);
      }
    }
    if (problems.length > 0) throw new PolicyError([...new Set(problems)]);
    return result;
  }

  if (options.services) planServices(options.services);

  return {
    defaultRule,
    planServices,
    planFor(method) {
      const cached = plans.get(method);
      if (cached !== undefined) return cached;
      const plan = planMethod(method);
      if (Array.isArray(plan)) throw new PolicyError(plan);
      return plan;
    },
  };
}
