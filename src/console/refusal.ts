/**
 * What the console says when a call fails. A refusal names what the caller
 * lacks, read from the rule the server enforces (the method's
 * `protoguard.v1.method_rule` in admin.proto, carried by the generated
 * descriptor), so the message cannot drift from the rule: "You need
 * protoguard.view_user to see users", never an empty page.
 */
import { getOption, hasOption, type DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { method_rule, service_rule } from "../../gen/protoguard/v1/options_pb.js";
import { authErrorReason } from "../exports/client.js";

/** What a failed call means for the page. */
export interface Failure {
  /** "refused" (permission denied), "signed-out" (the session is gone), or "error". */
  readonly kind: "refused" | "signed-out" | "error";
  /** One sentence for the person at the console. */
  readonly message: string;
}

/** "PermissionDenied" → "permission_denied": the code as Connect spells it on the wire. */
export function codeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

/** The auth layer's refusals for what a rule lists (its permissions, staff, superuser). */
const BY_THE_RULE = new Set(["PERMISSION_MISSING", "STAFF_REQUIRED", "SUPERUSER_REQUIRED"]);

/** The rule the server enforces for `method`: the method's, else its service's. */
function ruleOf(method: DescMethod) {
  if (hasOption(method, method_rule)) return getOption(method, method_rule);
  if (hasOption(method.parent, service_rule)) return getOption(method.parent, service_rule);
  return undefined;
}

/**
 * What the rule of `method` requires, as words ("protoguard.view_user",
 * "to be a superuser"), or undefined when it says so only in a condition.
 */
export function requirement(method: DescMethod): string | undefined {
  const rule = ruleOf(method);
  if (rule === undefined) return undefined;
  const needs: string[] = [...rule.permissions];
  if (rule.superuser) needs.push("to be a superuser");
  if (rule.staff) needs.push("to be staff");
  return needs.length === 0 ? undefined : needs.join(" and ");
}

/**
 * Describes the failure of a call to `method` made `to` do something ("see
 * users"): a refusal by the rule names the permission it requires, or the
 * condition's own message when the rule decides by a condition; a refusal
 * by the service itself (a non-superuser handing out a permission they do
 * not hold, say) is given in the service's words.
 */
export function describeFailure(error: unknown, method: DescMethod, to: string): Failure {
  const connectError = ConnectError.from(error);
  switch (connectError.code) {
    case Code.PermissionDenied: {
      const reason = authErrorReason(connectError);
      const needs = requirement(method);
      if (needs !== undefined && BY_THE_RULE.has(reason ?? "")) {
        return { kind: "refused", message: `You need ${needs} to ${to}.` };
      }
      const condition = reason === "CONDITION_FAILED" ? ruleOf(method)?.conditionMessage : undefined;
      return { kind: "refused", message: `You may not ${to}: ${condition || connectError.rawMessage}.` };
    }
    case Code.Unauthenticated:
      return { kind: "signed-out", message: `Your session has ended: log in again (${connectError.rawMessage}).` };
    default:
      return { kind: "error", message: `Could not ${to}: ${codeName(connectError.code)}: ${connectError.rawMessage}` };
  }
}
