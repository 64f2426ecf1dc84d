/**
 * The part of a decision that needs the request body: the rule's CEL
 * condition (with the resource its loader returns), the application's
 * `authorize` fallback, and the shadow rule. It runs in the interceptor,
 * after the cheap decision (token, user, permissions) has admitted the call,
 * so a caller refused for a missing token or permission never costs a
 * loader call or a condition evaluation.
 *
 * Every failure fails closed: a false condition or a missing resource is
 * PERMISSION_DENIED `CONDITION_FAILED`; a condition that cannot be evaluated
 * is PERMISSION_DENIED `CONDITION_ERROR` (retrying would not help); a loader
 * or fallback that throws is UNAVAILABLE. The shadow rule never changes the
 * outcome: it only says whether it would have refused.
 */
import { Code, type ContextValues } from "@connectrpc/connect";
import type { DescMethod, DescService, Message } from "@bufbuild/protobuf";
import { authorize as checkRule } from "./decide.js";
import { permissionDenied, type Allow, type Deny, type Unavailable, type Verdict } from "./verdict.js";
import type { AuthPolicy, MethodPlan } from "../policy/policy.js";
import type { ShadowPlan } from "../policy/conditions.js";
import { PolicyError } from "../policy/policy.js";
import type { Principal } from "../principal.js";
import type { DenyReason } from "../reasons.js";
import {
  loaderMap,
  methodKey,
  type AccessCall,
  type AuthorizeFallback,
  type ResourceLoader,
  type ResourceLoaders,
} from "./app-callbacks.js";
import { celPrincipal } from "../conditions/principal.js";
import { DEFAULT_CONDITION_MESSAGE, type CompiledCondition, type ConditionBindings } from "../conditions/compile.js";

/** What the shadow rule of a method says about a call the rule in force admitted. */
export type ShadowOutcome =
  | { readonly outcome: "allow"; readonly source: ShadowPlan["source"] }
  | {
      readonly outcome: "would_deny";
      readonly source: ShadowPlan["source"];
      readonly reason: DenyReason;
      readonly message: string;
      /** Why, for logs only. */
      readonly cause?: unknown;
    };

/** The outcome of the body stage: the verdict that stands, and the shadow rule's opinion. */
export interface AccessResult {
  readonly verdict: Verdict;
  readonly shadow?: ShadowOutcome;
}

/** The parts of an intercepted request a loader or the fallback is shown (see {@link AccessCall}). */
export interface CallSource {
  readonly method: DescMethod;
  readonly header: Headers;
  readonly contextValues: ContextValues;
  readonly signal: AbortSignal;
}

/** What runs after the body is decoded for one method; see {@link AccessStage.planFor}. */
export interface AccessPlan {
  readonly plan: MethodPlan;
  readonly loader: ResourceLoader | undefined;
  /**
   * Whether the enforced condition reads the resource: then a loader that
   * finds nothing refuses the call. Otherwise the fallback (if any) is given
   * `undefined` and decides.
   */
  readonly conditionReadsResource: boolean;
  /**
   * Whether the verdict depends on the resource at all (the enforced
   * condition reads it, or a fallback is given it): then a loader that throws
   * fails the call, since the fallback could not tell "none" from "failed".
   */
  readonly verdictNeedsResource: boolean;
}

/** Options of {@link createAccessStage}. */
export interface AccessStageOptions {
  policy: AuthPolicy;
  /** Resource loaders by method. Default: none. */
  resources?: ResourceLoaders;
  /** The code fallback. Default: none. */
  authorize?: AuthorizeFallback;
}

/** The body stage of one auth layer. */
export interface AccessStage {
  /** What to run for `plan`'s method once its request is decoded, or undefined when nothing. */
  planFor(plan: MethodPlan): AccessPlan | undefined;
  /**
   * Checks the loaders and conditions of `services` against each other:
   * throws a {@link PolicyError} for a condition reading `resource` without
   * a loader, or a loader for a method that is not served.
   */
  validate(services: readonly DescService[]): void;
  /** Decides the admitted call `allowed` given its request. */
  run(
    access: AccessPlan,
    allowed: Allow,
    request: Message | undefined,
    source: CallSource,
  ): AccessResult | Promise<AccessResult>;
  /** The methods with a loader, as `package.Service/Method`. */
  readonly loaderKeys: ReadonlySet<string>;
  /** Whether an `authorize` fallback is set. */
  readonly hasAuthorize: boolean;
}

/**
 * Creates the body stage.
 *
 * @throws {PolicyError} for a loader key that is not `package.Service/Method`.
 */
export function createAccessStage(options: AccessStageOptions): AccessStage {
  const authorize = options.authorize;
  const loaders = loaderMap(options.resources);
  const plans = new Map<DescMethod, AccessPlan | null>();

  function planFor(plan: MethodPlan): AccessPlan | undefined {
    let access = plans.get(plan.method);
    if (access === undefined) {
      const loader = loaders.get(methodKey(plan.method));
      const needed =
        plan.condition !== undefined || plan.shadow !== undefined || authorize !== undefined || loader !== undefined;
      access = needed
        ? Object.freeze({
            plan,
            loader,
            conditionReadsResource: loader !== undefined && plan.condition?.readsResource === true,
            // A loader only the shadow rule reads (the condition in force does not) is the
            // shadow's: its failure never fails the call, even with a fallback, which is then
            // given no resource and the failure as `resourceError`.
            verdictNeedsResource:
              loader !== undefined &&
              (plan.condition?.readsResource === true ||
                (authorize !== undefined && plan.shadow?.condition?.readsResource !== true)),
          })
        : null;
      plans.set(plan.method, access);
    }
    return access ?? undefined;
  }

  function run(
    access: AccessPlan,
    allowed: Allow,
    request: Message | undefined,
    source: CallSource,
  ): AccessResult | Promise<AccessResult> {
    // Without code to call, the stage is synchronous and allocates only the bindings.
    if (access.loader === undefined && authorize === undefined) {
      return finish(access, allowed, bindingsOf(allowed, request, null));
    }
    return runWithCode(access, allowed, request, source);
  }

  async function runWithCode(
    access: AccessPlan,
    allowed: Allow,
    request: Message | undefined,
    source: CallSource,
  ): Promise<AccessResult> {
    const call: AccessCall = {
      method: source.method,
      principal: allowed.principal,
      header: source.header,
      values: source.contextValues,
      signal: source.signal,
    };
    const { plan } = access;
    let resource: unknown = null;
    let resourceFailure: { reason: "RESOURCE_UNAVAILABLE" | "CONDITION_FAILED"; cause: unknown } | undefined;
    if (access.loader !== undefined && request !== undefined) {
      try {
        resource = (await access.loader(request, call)) ?? null;
        if (resource === null)
          resourceFailure = { reason: "CONDITION_FAILED", cause: new Error("the resource loader found nothing") };
      } catch (cause) {
        resourceFailure = { reason: "RESOURCE_UNAVAILABLE", cause };
      }
    }
    const failureEnforced =
      resourceFailure?.reason === "RESOURCE_UNAVAILABLE" ? access.verdictNeedsResource : access.conditionReadsResource;
    if (resourceFailure !== undefined && failureEnforced) {
      const verdict =
        resourceFailure.reason === "RESOURCE_UNAVAILABLE"
          ? unavailable(
              plan,
              "RESOURCE_UNAVAILABLE",
              "the resource could not be loaded, try again later",
              resourceFailure.cause,
            )
          : permissionDenied(
              plan,
              allowed.principal,
              "CONDITION_FAILED",
              plan.condition?.message ?? DEFAULT_CONDITION_MESSAGE,
              resourceFailure.cause,
            );
      return { verdict };
    }
    const bindings = bindingsOf(allowed, request, resource);
    const enforced = condition(plan, plan.condition, allowed, bindings);
    if (enforced !== undefined) return { verdict: enforced };
    if (authorize !== undefined) {
      const verdict = await fallback(authorize, plan, allowed, {
        ...call,
        request,
        resource: resource ?? undefined,
        ...(resourceFailure?.reason === "RESOURCE_UNAVAILABLE" && { resourceError: resourceFailure.cause }),
      });
      if (verdict !== undefined) return { verdict };
    }
    return withShadow(plan, allowed, bindings, resourceFailure);
  }

  return {
    planFor,
    validate: (services) => validateLoaders(options.policy, loaders, services),
    run,
    loaderKeys: new Set(loaders.keys()),
    hasAuthorize: authorize !== undefined,
  };
}

/**
 * Checks the loaders against the served methods: a condition that reads
 * `resource` needs one, a streaming method cannot have one, and every
 * loader names a served method.
 *
 * @throws {PolicyError} naming every problem.
 */
function validateLoaders(
  policy: AuthPolicy,
  loaders: ReadonlyMap<string, unknown>,
  services: readonly DescService[],
): void {
  const problems: string[] = [];
  const served = new Set<string>();
  for (const method of services.flatMap((s) => s.methods)) {
    const key = methodKey(method);
    served.add(key);
    let plan: MethodPlan;
    try {
      plan = policy.planFor(method);
    } catch {
      continue; // reported by the policy itself
    }
    const usesResource = [plan.condition, plan.shadow?.condition].find((c) => c?.readsResource);
    if (usesResource !== undefined && !loaders.has(key)) {
      problems.push(
        `method ${key}: condition "${usesResource.expression}" reads resource, but no resource loader is registered for ${key}`,
      );
    }
    if (loaders.has(key) && (method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming")) {
      problems.push(
        `method ${key}: resource loaders need the request message; a ${method.methodKind} call has a stream`,
      );
    }
  }
  for (const key of loaders.keys()) {
    if (!served.has(key)) problems.push(`resource loader for ${key}: no such method is served`);
  }
  if (problems.length > 0) throw new PolicyError(problems);
}

/** Condition, then shadow, with no code to call: synchronous. */
function finish(access: AccessPlan, allowed: Allow, bindings: ConditionBindings): AccessResult {
  const refused = condition(access.plan, access.plan.condition, allowed, bindings);
  if (refused !== undefined) return { verdict: refused };
  return withShadow(access.plan, allowed, bindings, undefined);
}

function withShadow(
  plan: MethodPlan,
  allowed: Allow,
  bindings: ConditionBindings,
  resourceFailure: { reason: DenyReason; cause: unknown } | undefined,
): AccessResult {
  const shadow = plan.shadow;
  if (shadow === undefined) return { verdict: allowed };
  return { verdict: allowed, shadow: shadowOutcome(plan, shadow, allowed, bindings, resourceFailure) };
}

function shadowOutcome(
  plan: MethodPlan,
  shadow: ShadowPlan,
  allowed: Allow,
  bindings: ConditionBindings,
  resourceFailure: { reason: DenyReason; cause: unknown } | undefined,
): ShadowOutcome {
  const { source } = shadow;
  const wouldDeny = (reason: DenyReason, message: string, cause?: unknown): ShadowOutcome => ({
    outcome: "would_deny",
    source,
    reason,
    message,
    ...(cause !== undefined && { cause }),
  });
  const principal = allowed.principal;
  if (shadow.rule.kind === "user") {
    if (principal === undefined) return wouldDeny("TOKEN_MISSING", "authentication required");
    const verdict = checkRule(plan, shadow.rule, principal, allowed.token ?? placeholderToken(principal));
    if (verdict.outcome === "deny") return wouldDeny(verdict.reason, verdict.message);
  }
  if (shadow.condition !== undefined) {
    if (shadow.condition.readsResource && resourceFailure !== undefined) {
      return wouldDeny(resourceFailure.reason, shadow.condition.message, resourceFailure.cause);
    }
    const refused = condition(plan, shadow.condition, allowed, bindings);
    if (refused !== undefined) return wouldDeny(refused.reason, refused.message, refused.cause);
  }
  return { outcome: "allow", source };
}

/** The refusal of `compiled` for this call, or undefined when it holds (or there is none). */
function condition(
  plan: MethodPlan,
  compiled: CompiledCondition | undefined,
  allowed: Allow,
  bindings: ConditionBindings,
): Deny | undefined {
  if (compiled === undefined) return undefined;
  const result = compiled.evaluate(bindings);
  if (result === true) return undefined;
  if (result === false) return permissionDenied(plan, allowed.principal, "CONDITION_FAILED", compiled.message);
  return permissionDenied(
    plan,
    allowed.principal,
    "CONDITION_ERROR",
    "the rule's condition could not be evaluated",
    result,
  );
}

async function fallback(
  authorize: AuthorizeFallback,
  plan: MethodPlan,
  allowed: Allow,
  call: Parameters<AuthorizeFallback>[0],
): Promise<Verdict | undefined> {
  let answer: unknown;
  try {
    answer = await authorize(call);
  } catch (cause) {
    return unavailable(plan, "AUTHORIZE_UNAVAILABLE", "authorization could not be decided, try again later", cause);
  }
  const outcome = typeof answer === "object" && answer !== null ? (answer as { outcome?: unknown }).outcome : undefined;
  if (outcome === "allow") return undefined;
  if (outcome === "deny") {
    const message = (answer as { message?: unknown }).message;
    return permissionDenied(
      plan,
      allowed.principal,
      "AUTHORIZE_DENIED",
      typeof message === "string" && message !== "" ? message : "permission denied",
    );
  }
  return unavailable(
    plan,
    "AUTHORIZE_UNAVAILABLE",
    "authorization could not be decided, try again later",
    new TypeError(`authorize returned ${JSON.stringify(answer) ?? String(answer)}, not { outcome: "allow" | "deny" }`),
  );
}

function bindingsOf(allowed: Allow, request: Message | undefined, resource: unknown): ConditionBindings {
  return {
    principal: allowed.principal === undefined ? null : celPrincipal(allowed.principal),
    request,
    resource,
  };
}

function unavailable(plan: MethodPlan, reason: Unavailable["reason"], message: string, cause: unknown): Unavailable {
  return { outcome: "unavailable", plan, code: Code.Unavailable, reason, message, cause };
}

/** The rule check reads no token field; an anonymous-token placeholder keeps its signature. */
function placeholderToken(principal: Principal) {
  return { userId: principal.id, jti: "", issuedAt: 0 };
}
