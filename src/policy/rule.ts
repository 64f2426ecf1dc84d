import type { Rule } from "../../gen/protoguard/v1/options_pb.js";
import { isPermissionString } from "../permission.js";

/**
 * A rule after validation, in the shape the decision function consumes.
 *
 * - `public`: anyone may call; a valid token still identifies the caller.
 * - `user`: a valid token of an active user is required, and every listed
 *   requirement must hold.
 */
export type PlannedRule =
  | { readonly kind: "public" }
  | {
      readonly kind: "user";
      /** Every permission the caller must hold (`app_label.codename`). */
      readonly permissions: readonly string[];
      readonly staff: boolean;
      readonly superuser: boolean;
    };

/** Where the rule in force for a method came from. */
export type RuleSource = "method" | "service" | "default";

/**
 * The plain-object form of a rule, for the server default and for tests:
 * the same fields as `protoguard.v1.Rule`, all optional.
 *
 * @example
 * ```ts
 * const defaultRule: RuleInit = { authenticated: true };
 * ```
 */
export interface RuleInit {
  public?: boolean;
  authenticated?: boolean;
  permissions?: readonly string[];
  staff?: boolean;
  superuser?: boolean;
}

/**
 * Validates a rule and turns it into a {@link PlannedRule}, or returns the
 * problems found, each a short sentence. Returning problems rather than
 * throwing lets the caller report every bad method at once.
 */
export function planRule(rule: Rule | RuleInit): PlannedRule | { problems: string[] } {
  const permissions = rule.permissions ?? [];
  const isPublic = rule.public === true;
  const staff = rule.staff === true;
  const superuser = rule.superuser === true;
  const problems: string[] = [];
  if (!isPublic && rule.authenticated !== true && permissions.length === 0 && !staff && !superuser) {
    problems.push("the rule is empty: set public, authenticated, permissions, staff or superuser");
  }
  if (isPublic && (rule.authenticated === true || permissions.length > 0 || staff || superuser)) {
    problems.push("public cannot be combined with authenticated, permissions, staff or superuser");
  }
  for (const permission of permissions) {
    if (!isPermissionString(permission)) {
      problems.push(`permission "${permission}" is not of the form app_label.codename`);
    }
  }
  if (new Set(permissions).size !== permissions.length) {
    problems.push("a permission is listed twice");
  }
  if (problems.length > 0) return { problems };
  if (isPublic) return PUBLIC;
  return { kind: "user", permissions: Object.freeze([...permissions]), staff, superuser };
}

const PUBLIC: PlannedRule = Object.freeze({ kind: "public" });

/** A rule written out the way a .proto option would read, for reports and logs. */
export function describeRule(rule: PlannedRule): string {
  if (rule.kind === "public") return "public";
  const parts: string[] = [];
  if (rule.superuser) parts.push("superuser");
  if (rule.staff) parts.push("staff");
  if (rule.permissions.length > 0) parts.push(`permissions: ${rule.permissions.join(", ")}`);
  return parts.length === 0 ? "authenticated" : parts.join("; ");
}
