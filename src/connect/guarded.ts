import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type { HandlerContext, MethodImpl, ServiceImpl } from "@connectrpc/connect";
import { Code } from "@connectrpc/connect";
import { MESSAGES } from "../decide/verdict.js";
import type { Principal } from "../principal.js";
import { principalKey } from "./context.js";
import { authError } from "./errors.js";

/**
 * A Connect method implementation with one more parameter: the caller `P`,
 * read from the call's context after the auth layer admitted the call.
 */
export type WithPrincipal<F, P> = F extends (...args: infer A) => infer R
  ? (...args: [...A, principal: P]) => R
  : never;

/**
 * The implementation of `S` that `protoc-gen-protoguard`'s
 * `implementGuardedXxx` helpers take: every method of the service, each
 * given the caller as a third argument — a {@link Principal} for the methods
 * in `Required` (their rule requires a caller), `Principal | undefined` for
 * public methods.
 */
export type GuardedServiceImpl<S extends DescService, Required extends keyof S["method"] = keyof S["method"]> = {
  [K in keyof S["method"]]: WithPrincipal<
    MethodImpl<S["method"][K]>,
    K extends Required ? Principal : Principal | undefined
  >;
};

/**
 * Turns a {@link GuardedServiceImpl} into the `ServiceImpl` that
 * `router.service(service, …)` takes. Each method reads the caller the auth
 * layer put into the call's context; for a method named in
 * `principalRequired`, a call without one (the auth layer is not installed
 * on this router, or the rule was loosened without regenerating) fails
 * UNAUTHENTICATED (reason `TOKEN_MISSING`) before the implementation runs,
 * so the non-optional `principal` can be trusted.
 *
 * Generated code calls it; applications call the generated helper.
 *
 * @example
 * ```ts
 * // order_protoguard.ts, generated:
 * export function implementGuardedOrderService(impl: GuardedOrderServiceImpl) {
 *   return guardImplementation(OrderService, impl, ["updateOrder"]);
 * }
 * ```
 * @throws {TypeError} if `impl` lacks a method of the service.
 */
export function guardImplementation<S extends DescService, Required extends keyof S["method"] & string>(
  service: S,
  impl: GuardedServiceImpl<S, Required>,
  principalRequired: readonly Required[],
): ServiceImpl<S> {
  const required = new Set<string>(principalRequired);
  const result: Record<string, unknown> = {};
  for (const method of service.methods) {
    const handler = (impl as Record<string, unknown>)[method.localName];
    if (typeof handler !== "function") {
      throw new TypeError(`guarded implementation of ${service.typeName} lacks method ${method.localName}`);
    }
    result[method.localName] = wrap(
      method,
      handler.bind(impl) as GuardedHandler,
      required.has(method.localName) ? requireCaller : anyCaller,
    );
  }
  return result as ServiceImpl<S>;
}

/*
 * The caller of any kind (a person or a service account): the rule, not the
 * helper, decides which kinds may call, so these read the context key
 * rather than the person-only `getUser`/`requireUser`.
 */
const anyCaller = (ctx: HandlerContext): Principal | undefined => ctx.values.get(principalKey);

function requireCaller(ctx: HandlerContext): Principal {
  const principal = ctx.values.get(principalKey);
  if (principal === undefined) throw authError(MESSAGES.TOKEN_MISSING, Code.Unauthenticated, "TOKEN_MISSING");
  return principal;
}

type GuardedHandler = (input: unknown, ctx: HandlerContext, principal: Principal | undefined) => unknown;

/**
 * The handler Connect calls. The caller is read before the implementation
 * is invoked, so a missing one ends the call without running it; streaming
 * handlers stay generators so the refusal is reported as the stream's error.
 */
function wrap(
  method: DescMethod,
  handler: GuardedHandler,
  caller: (ctx: HandlerContext) => Principal | undefined,
): unknown {
  switch (method.methodKind) {
    case "unary":
    case "client_streaming":
      return async (input: unknown, ctx: HandlerContext) => handler(input, ctx, caller(ctx));
    case "server_streaming":
    case "bidi_streaming":
      return async function* (input: unknown, ctx: HandlerContext) {
        const principal = caller(ctx);
        yield* handler(input, ctx, principal) as AsyncIterable<unknown>;
      };
  }
}
