/**
 * The step-up part of a decision: whether a token's `auth_time` and `amr` meet a rule's
 * `max_auth_age` and `require_totp`, and the refusal that tells the client what to do.
 */
import { Code } from "@connectrpc/connect";
import type { LocalAccessClaims } from "../claims.js";
import type { MethodPlan } from "../policy/policy.js";
import type { StepUpRequirement } from "../policy/step-up.js";
import { MESSAGES, type Deny } from "./verdict.js";

/**
 * Whether `token` shows an authentication recent and strong enough for `stepUp` at
 * `nowSeconds`. No token (a client certificate), no `auth_time` or no `amr` fails: what the
 * token does not show, the caller did not prove.
 */
export function stepUpSatisfied(
  stepUp: StepUpRequirement,
  token: Pick<LocalAccessClaims, "authTime" | "amr"> | undefined,
  nowSeconds: number,
): boolean {
  if (token === undefined) return false;
  if (stepUp.maxAuthAgeSeconds !== undefined) {
    if (token.authTime === undefined || nowSeconds - token.authTime > stepUp.maxAuthAgeSeconds) return false;
  }
  if (stepUp.requireTotp && !(token.amr ?? []).includes("otp")) return false;
  return true;
}

/**
 * UNAUTHENTICATED `STEP_UP_REQUIRED` with the bound in its ErrorInfo metadata:
 * `maxAuthAgeSeconds` (when the rule sets it) and `requireTotp`, so a client can ask for the
 * right factor before calling `AuthService.StepUp`.
 */
export function stepUpRequired(plan: MethodPlan, stepUp: StepUpRequirement): Deny {
  return {
    outcome: "deny",
    plan,
    code: Code.Unauthenticated,
    reason: "STEP_UP_REQUIRED",
    message: MESSAGES.STEP_UP_REQUIRED,
    metadata: Object.freeze({
      ...(stepUp.maxAuthAgeSeconds !== undefined && { maxAuthAgeSeconds: String(stepUp.maxAuthAgeSeconds) }),
      requireTotp: String(stepUp.requireTotp),
    }),
  };
}
