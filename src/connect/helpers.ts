import type { ConnectError } from "@connectrpc/connect";
import { Code, type HandlerContext } from "@connectrpc/connect";
import { MESSAGES } from "../decide/verdict.js";
import { principalHasPermission, principalKind, type Principal } from "../principal.js";
import { authSignalKey, principalKey, verdictKey } from "./context.js";
import { authError } from "./errors.js";

/*
 * Handler helpers: the Connect form of django-cfg's `BaseService` methods.
 * Each reads the caller that the auth layer put into the call's context
 * values; none reads module state.
 */

/**
 * What the helpers read: anything carrying the call's context values, such
 * as a handler's `HandlerContext`.
 */
export type CallerContext = Pick<HandlerContext, "values">;

/**
 * The calling person, or undefined for an anonymous call of a public method
 * and for a call by a service account (see {@link getPrincipal}): code
 * written before service accounts existed never mistakes a machine for a
 * person.
 *
 * @example
 * ```ts
 * async getUser(req, ctx) {
 *   const viewer = getUser(ctx);
 *   return { user: await load(req.userId), viewer: viewer?.username ?? "" };
 * }
 * ```
 */
export function getUser(ctx: CallerContext): Principal | undefined {
  const principal = ctx.values.get(principalKey);
  return principal === undefined || principalKind(principal) !== "user" ? undefined : principal;
}

/**
 * The calling person. Throws UNAUTHENTICATED (reason TOKEN_MISSING) when
 * anonymous, and PERMISSION_DENIED (reason PRINCIPAL_KIND) when the caller
 * is a service account: it is identified, just not a person, so a client
 * must not be told to log in again.
 *
 * @example
 * ```ts
 * const user = requireUser(ctx);
 * const order = await orders.get(req.orderId);
 * if (order.ownerId !== user.id && !user.isStaff) throw permissionDenied("you can only update your own orders");
 * ```
 */
export function requireUser(ctx: CallerContext): Principal {
  const principal = requirePrincipal(ctx);
  if (principalKind(principal) !== "user") {
    throw authError(MESSAGES.PRINCIPAL_KIND_USER, Code.PermissionDenied, "PRINCIPAL_KIND");
  }
  return principal;
}

/**
 * The caller of any kind — a person or a service account (`kind`) — or
 * undefined for an anonymous call of a public method.
 *
 * @example
 * ```ts
 * const caller = getPrincipal(ctx);
 * audit.log({ actor: caller?.username ?? "anonymous", kind: caller?.kind ?? "user" });
 * ```
 */
export function getPrincipal(ctx: CallerContext): Principal | undefined {
  return ctx.values.get(principalKey);
}

/**
 * The caller of any kind; throws UNAUTHENTICATED (reason TOKEN_MISSING) when
 * anonymous.
 *
 * @example
 * ```ts
 * const caller = requirePrincipal(ctx);
 * if (principalKind(caller) === "service") return serveMachine(caller);
 * ```
 */
export function requirePrincipal(ctx: CallerContext): Principal {
  const principal = ctx.values.get(principalKey);
  if (principal === undefined) throw authError(MESSAGES.TOKEN_MISSING, Code.Unauthenticated, "TOKEN_MISSING");
  return principal;
}

// Nothing can abort it: the signal of calls the auth layer does not watch.
const NEVER_ABORTED = new AbortController().signal;

/**
 * Aborted when the auth layer ends this call because the caller may no
 * longer make it: the token expired (past the leeway) or was revoked, the
 * account was deactivated or deleted, or the method's rule no longer holds.
 * `signal.reason` is the ConnectError the client receives (UNAUTHENTICATED
 * or PERMISSION_DENIED, with the reason in its ErrorInfo; read it with
 * `authErrorReason`). The call's own `ctx.signal` aborts with the same
 * reason, and the call ends even if the handler ignores both.
 *
 * Open server-, client- and bidi-streaming calls with an identified caller
 * are watched (see `createAuth`'s `revalidateStreams`); for other calls the
 * signal never aborts.
 *
 * @example
 * ```ts
 * async *watchNotifications(req, ctx) {
 *   const signal = authSignal(ctx);
 *   for await (const note of feed.subscribe(requireUser(ctx).id, { signal })) yield note;
 * }
 * ```
 */
export function authSignal(ctx: CallerContext): AbortSignal {
  return ctx.values.get(authSignalKey) ?? NEVER_ABORTED;
}

/**
 * The `jti` of the access token the caller was identified by, or undefined for an anonymous call
 * and one identified otherwise (a client certificate). What AuthService's session list marks
 * the caller's own session by.
 */
export function callerTokenId(ctx: CallerContext): string | undefined {
  const verdict = ctx.values.get(verdictKey);
  const jti = verdict?.outcome === "allow" ? verdict.token?.jti : undefined;
  return jti === "" ? undefined : jti;
}

/** Whether the caller holds `permission` (`app_label.codename`); false when anonymous. */
export function hasPermission(ctx: CallerContext, permission: string): boolean {
  const user = ctx.values.get(principalKey);
  return user !== undefined && principalHasPermission(user, permission);
}

/**
 * The caller (a person or a service account: both hold permissions), who
 * must hold every one of `permissions`: UNAUTHENTICATED when anonymous,
 * PERMISSION_DENIED (reason PERMISSION_MISSING) otherwise.
 */
export function requirePermission(ctx: CallerContext, ...permissions: string[]): Principal {
  const user = requirePrincipal(ctx);
  for (const permission of permissions) {
    if (!principalHasPermission(user, permission)) {
      throw authError(`missing permission ${permission}`, Code.PermissionDenied, "PERMISSION_MISSING");
    }
  }
  return user;
}

/**
 * The caller, who must be staff: UNAUTHENTICATED when anonymous,
 * PERMISSION_DENIED otherwise (a service account is never staff).
 */
export function requireStaff(ctx: CallerContext): Principal {
  const user = requirePrincipal(ctx);
  if (!user.isStaff) throw authError(MESSAGES.STAFF_REQUIRED, Code.PermissionDenied, "STAFF_REQUIRED");
  return user;
}

/**
 * The caller, who must be a superuser: UNAUTHENTICATED when anonymous,
 * PERMISSION_DENIED otherwise (a service account is never a superuser).
 */
export function requireSuperuser(ctx: CallerContext): Principal {
  const user = requirePrincipal(ctx);
  if (!user.isSuperuser) throw authError(MESSAGES.SUPERUSER_REQUIRED, Code.PermissionDenied, "SUPERUSER_REQUIRED");
  return user;
}

/**
 * A PERMISSION_DENIED error for custom checks in handlers (django-cfg's
 * `abort_permission_denied`).
 */
export function permissionDenied(message = "permission denied"): ConnectError {
  return authError(message, Code.PermissionDenied, "PERMISSION_MISSING");
}
