/**
 * What AdminService shows of the server it is served by: the rule in force for every method
 * (from the same plans the auth layer enforces), who may call one, and the signing keys' status.
 */
import { create, getOption, hasOption, type DescMethod, type DescService } from "@bufbuild/protobuf";
import {
  PolicyEntrySchema,
  SigningKeySchema,
  type PolicyEntry,
  type SigningKey,
} from "../../gen/protoguard/v1/admin_pb.js";
import { method_rule, service_rule, type Rule } from "../../gen/protoguard/v1/options_pb.js";
import type { AuthPolicy, MethodPlan } from "../policy/policy.js";
import { describeRule } from "../policy/rule.js";
import type { Keyring } from "../token/keys.js";

/** The rules of a server: its planned policy and the services it serves. */
export interface ServedPolicy {
  readonly policy: AuthPolicy;
  readonly services: readonly DescService[];
}

/** `/package.Service/Method`, as Connect routes and the decision log name a method. */
export function procedureOf(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/**
 * The method a procedure names among `services`: `/package.Service/Method` or without the
 * leading slash; undefined when the server serves no such method.
 */
export function findProcedure(services: readonly DescService[], procedure: string): DescMethod | undefined {
  const path = procedure.startsWith("/") ? procedure : `/${procedure}`;
  for (const service of services) {
    for (const method of service.methods) if (procedureOf(method) === path) return method;
  }
  return undefined;
}

/**
 * The `Rule` option in force as declared (the method's, else its service's), for the fields
 * the planned rule does not carry yet (`api_keys`, `rate_limit`); undefined under the default.
 */
function declaredRule(method: DescMethod): Rule | undefined {
  if (hasOption(method, method_rule)) return getOption(method, method_rule);
  if (hasOption(method.parent, service_rule)) return getOption(method.parent, service_rule);
  return undefined;
}

/** `60/60s burst 10`, or "" when the rule has no rate limit. */
function describeRateLimit(rule: Rule | undefined): string {
  const limit = rule?.rateLimit;
  if (limit === undefined || limit.requests === 0) return "";
  return `${limit.requests}/${limit.per}${limit.burst > 0 ? ` burst ${limit.burst}` : ""}`;
}

/** One row of GetPolicy. */
export function policyEntry(plan: MethodPlan): PolicyEntry {
  const declared = declaredRule(plan.method);
  return create(PolicyEntrySchema, {
    procedure: procedureOf(plan.method),
    rule: describeRule(plan.rule),
    source: plan.source,
    shadowRule: plan.shadow === undefined ? "" : describeRule(plan.shadow.rule),
    // Unset or true accepts keys (options.proto): only an explicit false refuses them.
    acceptsApiKeys: declared?.apiKeys !== false,
    rateLimit: describeRateLimit(declared),
  });
}

/** Every method the server serves with its rule, in declaration order. */
export function policyTable(served: ServedPolicy): PolicyEntry[] {
  return served.policy.planServices(served.services).map(policyEntry);
}

/**
 * The keyring's keys by kid: `signing` for the one new tokens are signed with, `verifying` for
 * the others. Only the kid and algorithm: never key material.
 */
export function signingKeys(keyring: Keyring): SigningKey[] {
  const signingKid = keyring.signingKey?.kid;
  return [...keyring.keys.values()]
    .map((key) =>
      create(SigningKeySchema, {
        kid: key.kid,
        algorithm: key.alg,
        status: key.kid === signingKid ? "signing" : "verifying",
      }),
    )
    .sort((a, b) => (a.status === b.status ? a.kid.localeCompare(b.kid) : a.status === "signing" ? -1 : 1));
}
