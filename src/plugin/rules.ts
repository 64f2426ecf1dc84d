import { getOption, hasOption, type DescMethod, type DescService } from "@bufbuild/protobuf";
import {
  method_rule,
  method_shadow_rule,
  PrincipalKind,
  service_rule,
  service_shadow_rule,
  type Rule,
} from "../../gen/protoguard/v1/options_pb.js";
import { compileCondition } from "../conditions/compile.js";
import { planRule } from "../policy/rule.js";
import { describeRateLimit, planRateLimit, type PlannedRateLimit } from "../policy/rate-limit.js";
import type { PrincipalKindName } from "../principal.js";
import type { ConformanceCase, ConformanceMethod } from "../policy/conformance-table.js";

/**
 * The rule of one method as the generator sees it, read straight from the
 * descriptor's options: the same fields `createAuth` enforces, including the
 * ones the planner of this version may not model yet (`principal_kind`,
 * `condition`, shadow rules).
 */
export interface GeneratedRule {
  /** Whether a caller must be identified (every rule but `public`). */
  readonly principalRequired: boolean;
  readonly permissions: readonly string[];
  readonly staff: boolean;
  readonly superuser: boolean;
  /** Only principals of this kind are admitted; undefined admits both. */
  readonly kind: PrincipalKindName | undefined;
  readonly condition: string | undefined;
  /** What a caller sees when the condition is false; undefined for the generic message. */
  readonly conditionMessage: string | undefined;
  /** `method`, `service`, or `default` (`{authenticated: true}`, the server default). */
  readonly source: "method" | "service" | "default";
  /** The shadow rule being rolled out, described. */
  readonly shadow: string | undefined;
  /** The rule's `rate_limit`, planned; undefined when it has none. */
  readonly rateLimit?: PlannedRateLimit | undefined;
}

/**
 * PERMISSION_DENIED reason for a principal of the wrong kind. Matches the
 * reason the decision function gives when it checks `principal_kind`.
 */
const PRINCIPAL_KIND_REASON = "PRINCIPAL_KIND";

/** Largest `requests + burst` the generator writes an over-the-limit row for. */
const MAX_CONFORMANCE_BUDGET = 1000;

/** Whether `service` carries any protoguard rule, i.e. whether the generator writes a file for it. */
export function isAnnotated(service: DescService): boolean {
  return (
    hasOption(service, service_rule) ||
    hasOption(service, service_shadow_rule) ||
    service.methods.some((m) => hasOption(m, method_rule) || hasOption(m, method_shadow_rule))
  );
}

/**
 * The rule in force for `method`: its own, else its service's, else the
 * server default `{authenticated: true}` (a server configured with another
 * default makes the generated cases for such methods wrong: give them rules).
 *
 * @throws {Error} naming the method when the rule is malformed, the way the server would refuse to start.
 */
export function readRule(method: DescMethod): GeneratedRule {
  const own = hasOption(method, method_rule);
  const ofService = !own && hasOption(method.parent, service_rule);
  const source = own ? "method" : ofService ? "service" : "default";
  const rule: Rule | { authenticated: true } = own
    ? getOption(method, method_rule)
    : ofService
      ? getOption(method.parent, service_rule)
      : { authenticated: true };
  const problems = problemsOf(rule);
  // The condition is type-checked against the request as start-up does (the same compiler):
  // a typo such as `request.pagesize` stops `buf generate`, not the server later.
  if ("condition" in rule && rule.condition !== "") {
    const compiled = compileCondition(rule.condition, rule.conditionMessage || undefined, method);
    if ("problems" in compiled) problems.push(...compiled.problems);
  }
  if (problems.length > 0) {
    throw new Error(
      `${method.parent.file.proto.name}: ${method.parent.typeName}/${method.name}: invalid protoguard rule: ${problems.join("; ")}`,
    );
  }
  const shadowRule = hasOption(method, method_shadow_rule)
    ? getOption(method, method_shadow_rule)
    : hasOption(method.parent, service_shadow_rule)
      ? getOption(method.parent, service_shadow_rule)
      : undefined;
  const full = "principalKind" in rule ? rule : undefined;
  return {
    principalRequired: full?.public !== true,
    permissions: full?.permissions ?? [],
    staff: full?.staff === true,
    superuser: full?.superuser === true,
    kind: kindName(full?.principalKind),
    condition: full?.condition ? full.condition : undefined,
    conditionMessage: full?.conditionMessage ? full.conditionMessage : undefined,
    source,
    shadow: shadowRule && describe(shadowRule),
    rateLimit: rateLimitOf(full),
  };
}

/** The planned `rate_limit` of a rule already validated (undefined for none). */
function rateLimitOf(rule: Rule | undefined): PlannedRateLimit | undefined {
  const planned = planRateLimit(rule?.rateLimit);
  return "rateLimit" in planned ? planned.rateLimit : undefined;
}

function problemsOf(rule: Rule | { authenticated: true }): string[] {
  const planned = planRule(rule);
  if ("problems" in planned) return [...planned.problems];
  // The planner reports these itself once it models principal kinds; until then, the plugin does.
  const problems: string[] = [];
  if ("principalKind" in rule && rule.principalKind !== PrincipalKind.UNSPECIFIED) {
    if (rule.public) problems.push("principal_kind cannot be combined with public");
    if (rule.principalKind === PrincipalKind.SERVICE && (rule.staff || rule.superuser)) {
      problems.push("PRINCIPAL_KIND_SERVICE cannot be combined with staff or superuser");
    }
  }
  return problems;
}

function kindName(kind: PrincipalKind | undefined): PrincipalKindName | undefined {
  if (kind === PrincipalKind.USER) return "user";
  if (kind === PrincipalKind.SERVICE) return "service";
  return undefined;
}

/** A rule written out as `protoguard policy` does, plus the fields this version's planner does not describe. */
export function describe(rule: Rule | GeneratedRule): string {
  const r = "principalRequired" in rule ? rule : fromRule(rule);
  const limit = r.rateLimit === undefined ? "" : `; ${describeRateLimit(r.rateLimit)}`;
  if (!r.principalRequired) return (r.condition ? `public; condition: ${r.condition}` : "public") + limit;
  const parts: string[] = [];
  if (r.superuser) parts.push("superuser");
  if (r.staff) parts.push("staff");
  if (r.permissions.length > 0) parts.push(`permissions: ${r.permissions.join(", ")}`);
  if (r.kind) parts.push(`principal kind: ${r.kind}`);
  if (parts.length === 0) parts.push("authenticated");
  if (r.condition) parts.push(`condition: ${r.condition}`);
  return parts.join("; ") + limit;
}

function fromRule(rule: Rule): GeneratedRule {
  return {
    principalRequired: !rule.public,
    permissions: rule.permissions,
    staff: rule.staff,
    superuser: rule.superuser,
    kind: kindName(rule.principalKind),
    condition: rule.condition || undefined,
    conditionMessage: rule.conditionMessage || undefined,
    source: "method",
    shadow: undefined,
    rateLimit: rateLimitOf(rule),
  };
}

/**
 * The conformance cases `rule` demands. Each refused case lacks exactly one
 * requirement, so the reason is unambiguous whatever order the checks run
 * in. A superuser holds every permission, so a rule requiring both has no
 * "missing permission" case.
 */
export function conformanceMethod(method: DescMethod, rule: GeneratedRule): ConformanceMethod {
  const everything = {
    kind: rule.kind ?? "user",
    permissions: rule.permissions,
    staff: rule.staff,
    superuser: rule.superuser,
  } as const;
  const cases: ConformanceCase[] = [];
  if (!rule.principalRequired) {
    cases.push({ name: "anonymous", caller: { anonymous: true }, expect: { outcome: "allow" } });
  } else {
    const denied = (reason: string) => ({ outcome: "deny", code: "permission_denied", reason }) as const;
    cases.push({
      name: "anonymous",
      caller: { anonymous: true },
      expect: { outcome: "deny", code: "unauthenticated", reason: "TOKEN_MISSING" },
    });
    if (!rule.superuser) {
      for (const permission of rule.permissions) {
        cases.push({
          name: `missing ${permission}`,
          caller: { ...everything, permissions: rule.permissions.filter((p) => p !== permission) },
          expect: denied("PERMISSION_MISSING"),
        });
      }
    }
    if (rule.staff) {
      cases.push({ name: "not staff", caller: { ...everything, staff: false }, expect: denied("STAFF_REQUIRED") });
    }
    if (rule.superuser) {
      cases.push({
        name: "not superuser",
        caller: { ...everything, superuser: false },
        expect: denied("SUPERUSER_REQUIRED"),
      });
    }
    if (rule.kind !== undefined) {
      const other = rule.kind === "user" ? "service" : "user";
      cases.push({
        name: `a ${other} principal`,
        caller: { ...everything, kind: other },
        expect: denied(PRINCIPAL_KIND_REASON),
      });
    }
  }
  cases.push({ name: "has everything", caller: everything, expect: { outcome: "allow" } });
  const limit = rule.rateLimit;
  // The budget is spent call by call on the in-memory transport: a row only for budgets that are
  // cheap to spend (a fresh caller each run, so it never meets another case's count).
  if (limit !== undefined && limit.requests + limit.burst <= MAX_CONFORMANCE_BUDGET) {
    cases.push({
      name: `over ${describeRateLimit(limit)}`,
      caller: everything,
      precedingCalls: limit.requests + limit.burst,
      expect: { outcome: "deny", code: "resource_exhausted", reason: "RATE_LIMITED" },
    });
  }
  return {
    method: method.localName,
    rule: describe(rule),
    ...(rule.condition === undefined ? {} : { condition: rule.condition }),
    ...(rule.shadow === undefined ? {} : { shadowRule: rule.shadow }),
    ...(limit === undefined ? {} : { rateLimit: { requests: limit.requests, per: limit.per, burst: limit.burst } }),
    cases,
  };
}
