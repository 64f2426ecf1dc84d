/**
 * What an application registers in code beside its rules: resource loaders
 * (what conditions call `resource`) and the `authorize` fallback, with the
 * call they are shown.
 */
import type { ContextValues } from "@connectrpc/connect";
import type { DescMethod, Message } from "@bufbuild/protobuf";
import { PolicyError } from "../policy/policy.js";
import type { Principal } from "../principal.js";

/** The call a resource loader or the `authorize` fallback is asked about. */
export interface AccessCall {
  readonly method: DescMethod;
  /** The caller; undefined for an anonymous caller of a public method. */
  readonly principal: Principal | undefined;
  /** The request headers. */
  readonly header: Headers;
  /** The call's context values, as the handler will see them. */
  readonly values: ContextValues;
  /** Aborted when the call ends (client cancel, deadline): pass it on to queries. */
  readonly signal: AbortSignal;
}

/**
 * Loads what a method's condition calls `resource` (the order row for
 * `UpdateOrder`), given the decoded request. Return `undefined` or `null`
 * when there is none: a call whose condition reads `resource` is then
 * refused like one whose condition is false (an `authorize` fallback is
 * given `undefined`). Throwing fails the call UNAVAILABLE
 * `RESOURCE_UNAVAILABLE` when its condition (or, for a loader the shadow
 * rule does not read, a fallback) needs the resource; when only the shadow
 * rule's condition reads it, the call goes on (a fallback is given
 * `resourceError`) and the shadow rule reports it.
 * Objects become CEL maps (`resource.user_id`), numbers doubles, which CEL
 * compares equal to ints of the same value.
 */
export type ResourceLoader = {
  // A method signature, so loaders may declare their own request type
  // (`(request: UpdateOrderRequest) => …`): parameters of methods are bivariant.
  load(request: Message, call: AccessCall): unknown;
}["load"];

/**
 * Resource loaders by method: keys are `"package.Service/Method"` strings
 * (a plain object or a Map) or method descriptors (a Map).
 *
 * @example
 * ```ts
 * const resources: ResourceLoaders = {
 *   "shop.v1.OrderService/UpdateOrder": (request: UpdateOrderRequest) => orders.byId(request.orderId),
 * };
 * ```
 */
export type ResourceLoaders =
  | Readonly<Record<string, ResourceLoader>>
  | ReadonlyMap<DescMethod | string, ResourceLoader>;

/** What the `authorize` fallback is given: the call, its request and its resource. */
export interface AuthorizeCall extends AccessCall {
  /** The decoded request; undefined for client- and bidi-streaming calls, decided before any message. */
  readonly request: Message | undefined;
  /** What the method's resource loader returned; undefined without a loader. */
  readonly resource: unknown;
  /**
   * Set when the method's loader threw and the call went on anyway: a loader only the shadow
   * rule reads (the condition in force does not), whose failure never changes the outcome.
   * `resource` is then undefined; a fallback that needs the resource should refuse or throw.
   */
  readonly resourceError?: unknown;
}

/** The answer of an `authorize` fallback: allow, or deny with the message the caller sees. */
export type AuthorizeResult = { readonly outcome: "allow" } | { readonly outcome: "deny"; readonly message: string };

/**
 * Code for what a CEL condition cannot say, called for every call the rule
 * (and its condition) admitted, on every method of the router: public ones
 * too, so look at `call.method`. A denial is PERMISSION_DENIED
 * `AUTHORIZE_DENIED` with its message; throwing, or answering anything but
 * an {@link AuthorizeResult}, is UNAVAILABLE `AUTHORIZE_UNAVAILABLE`. It
 * never allows what the rule refused.
 */
export type AuthorizeFallback = (call: AuthorizeCall) => AuthorizeResult | Promise<AuthorizeResult>;

/** `package.Service/Method`, the key form of {@link ResourceLoaders}. */
export function methodKey(method: DescMethod): string {
  return `${method.parent.typeName}/${method.name}`;
}

const KEY_FORM = /^[A-Za-z_][\w.]*\/[A-Za-z_]\w*$/;

/** Resource loaders by `package.Service/Method`; throws a {@link PolicyError} for a bad key or value. */
export function loaderMap(resources: ResourceLoaders | undefined): Map<string, ResourceLoader> {
  const map = new Map<string, ResourceLoader>();
  if (resources === undefined) return map;
  const entries: Iterable<[DescMethod | string, ResourceLoader]> =
    resources instanceof Map ? resources.entries() : Object.entries(resources as Record<string, ResourceLoader>);
  const problems: string[] = [];
  for (const [key, loader] of entries) {
    const name = typeof key === "string" ? key : methodKey(key);
    if (typeof key === "string" && !KEY_FORM.test(key)) {
      problems.push(`resource loader key "${key}" is not of the form package.Service/Method`);
    } else if (typeof loader !== "function") {
      problems.push(`resource loader for ${name} is not a function`);
    } else if (map.has(name)) {
      problems.push(`two resource loaders for ${name}`);
    } else map.set(name, loader);
  }
  if (problems.length > 0) throw new PolicyError(problems);
  return map;
}
