/**
 * Who is calling AdminService and from where, as the audit log records it, and the checks
 * that keep a holder of the admin permissions from raising their own privileges.
 */
import { Code, type HandlerContext } from "@connectrpc/connect";
import type { AuditContext } from "../audit-event.js";
import { requirePrincipal } from "../connect/helpers.js";
import { peerAddressKey } from "../connect/peer.js";
import { requestIdKey } from "../connect/request-id.js";
import { principalKind, type Principal } from "../principal.js";
import { adminError } from "./errors.js";

/** The caller and the audit context of a call. */
export interface AdminCaller {
  readonly principal: Principal;
  readonly audit: AuditContext;
}

/**
 * The caller (the auth layer has admitted them under the method's rule) and the context every
 * audit row of the call carries: the actor, the peer address the server resolved (forwarded
 * headers only from trusted proxies), the User-Agent and the request id the server assigned or
 * accepted (`requestIdKey`).
 */
export function callerOf(ctx: HandlerContext): AdminCaller {
  const principal = requirePrincipal(ctx);
  const peerAddress = ctx.values.get(peerAddressKey);
  const userAgent = ctx.requestHeader.get("user-agent") ?? undefined;
  const requestId = ctx.values.get(requestIdKey);
  return {
    principal,
    audit: {
      actor: { kind: principalKind(principal), id: principal.id, username: principal.username },
      ...(peerAddress !== undefined && { peerAddress }),
      ...(userAgent !== undefined && { userAgent }),
      ...(requestId !== undefined && { requestId }),
    },
  };
}

/**
 * Refuses a non-superuser acting on a superuser or making one. Django admin lets any holder of
 * `change_user` do both; here whoever may manage users still cannot take over, or create, an
 * account that bypasses every rule.
 *
 * @throws {ConnectError} PERMISSION_DENIED, reason `NOT_SUPERUSER`.
 */
export function assertMayManage(caller: Principal, what: string, targetIsSuperuser: boolean): void {
  if (targetIsSuperuser && !caller.isSuperuser) {
    throw adminError(`only a superuser may ${what}`, Code.PermissionDenied, "NOT_SUPERUSER");
  }
}

/**
 * Refuses a non-superuser handing out permissions they do not hold themselves (directly, or by
 * adding someone to a group that grants them): with `change_user` alone one could otherwise
 * grant oneself every permission (as Kubernetes RBAC forbids escalation).
 *
 * @throws {ConnectError} PERMISSION_DENIED, reason `PERMISSION_NOT_HELD`, naming them.
 */
export function assertHoldsAll(caller: Principal, permissions: readonly string[], what: string): void {
  if (caller.isSuperuser) return;
  const missing = [...new Set(permissions)].filter((p) => !caller.permissions.has(p)).sort();
  if (missing.length > 0) {
    throw adminError(
      `you cannot ${what} permissions you do not hold: ${missing.join(", ")}`,
      Code.PermissionDenied,
      "PERMISSION_NOT_HELD",
    );
  }
}
