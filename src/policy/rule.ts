import { PrincipalKind, type Rule } from "../../gen/protoguard/v1/options_pb.js";
import { isPermissionString } from "../permission.js";
import type { PrincipalKindName } from "../principal.js";

/**
 * A rule after validation, in the shape the decision function consumes.
 *
 * - `public`: anyone may call; a valid token still identifies the caller.
 * - `user`: a valid token of an active user is required, and every listed
 *   requirement must hold. "User" here means any identified principal,
 *   people and service accounts alike, unless `principalKind` narrows it.
 */
export type PlannedRule =
  | ({ readonly kind: "public" } & RuleCondition & RuleCredentials)
  | ({
      readonly kind: "user";
      /** Every permission the caller must hold (`app_label.codename`). */
      readonly permissions: readonly string[];
      readonly staff: boolean;
      readonly superuser: boolean;
      /** Only principals of this kind are admitted; absent admits every kind. */
      readonly principalKind?: PrincipalKindName;
    } & RuleCondition &
      RuleCredentials);

/**
 * Which credentials a rule refuses beyond its other requirements. Only the
 * refusal is written down: a rule that accepts API keys (the default) has no
 * `apiKeys` field at all.
 */
export interface RuleCredentials {
  /**
   * `false`: an API key (`pgk_…`) is refused on this method, UNAUTHENTICATED
   * `API_KEY_NOT_ALLOWED`, before the key is looked up (the rule's
   * `api_keys: false`). Absent: keys are accepted, limited to their scopes.
   */
  readonly apiKeys?: false;
}

/**
 * The CEL condition of a rule, as written; the policy compiles it against
 * each method's request message (see `MethodPlan.condition`).
 */
export interface RuleCondition {
  /** The CEL expression that must be true, when the rule has one. */
  readonly condition?: string;
  /** What a caller refused by the condition is told, when the rule says. */
  readonly conditionMessage?: string;
}

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
  /** Admit only people (`"user"`) or only service accounts (`"service"`). Default: both. */
  principalKind?: PrincipalKindName;
  /** A CEL expression over `principal`, `request` and `resource` that must be true. */
  condition?: string;
  /** What a caller refused by `condition` is told. */
  conditionMessage?: string;
  /** `false` refuses API keys on the method (password changes, minting keys). Default: accepted. */
  apiKeys?: boolean;
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
  const condition = rule.condition ?? "";
  const conditionMessage = rule.conditionMessage ?? "";
  const problems: string[] = [];
  const kind = principalKindOf(rule);
  if (kind === "invalid") problems.push(`principal_kind ${String(rule.principalKind)} is not a known kind`);
  const principalKind = kind === "invalid" ? undefined : kind;
  // A condition alone implies authenticated (see options.proto).
  if (
    !isPublic &&
    rule.authenticated !== true &&
    permissions.length === 0 &&
    !staff &&
    !superuser &&
    principalKind === undefined &&
    condition === ""
  ) {
    problems.push("the rule is empty: set public, authenticated, permissions, staff or superuser");
  }
  if (conditionMessage !== "" && condition.trim() === "") {
    problems.push("condition_message is set but condition is not");
  }
  if (condition !== "" && condition.trim() === "") problems.push("condition is blank");
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
  if (isPublic && principalKind !== undefined) {
    problems.push("public cannot be combined with principal_kind: anonymous callers have no kind");
  }
  if (principalKind === "service" && (staff || superuser)) {
    problems.push("principal_kind SERVICE cannot be combined with staff or superuser: service accounts are neither");
  }
  if (problems.length > 0) return { problems };
  const withCondition: RuleCondition & RuleCredentials = {
    ...(condition !== "" && { condition, ...(conditionMessage !== "" && { conditionMessage }) }),
    // proto3 `optional bool`: unset is undefined, so only an explicit false refuses keys.
    ...(rule.apiKeys === false && { apiKeys: false as const }),
  };
  if (isPublic) {
    return Object.keys(withCondition).length === 0 ? PUBLIC : Object.freeze({ kind: "public", ...withCondition });
  }
  return Object.freeze({
    kind: "user",
    permissions: Object.freeze([...permissions]),
    staff,
    superuser,
    ...(principalKind !== undefined && { principalKind }),
    ...withCondition,
  });
}

/**
 * The kind a rule admits: undefined for any, `"invalid"` for an enum number
 * this build does not know (a newer .proto), which must not silently admit all.
 */
function principalKindOf(rule: Rule | RuleInit): PrincipalKindName | undefined | "invalid" {
  const kind: unknown = rule.principalKind;
  switch (kind) {
    case undefined:
    case PrincipalKind.UNSPECIFIED:
      return undefined;
    case PrincipalKind.USER:
    case "user":
      return "user";
    case PrincipalKind.SERVICE:
    case "service":
      return "service";
    default:
      return "invalid";
  }
}

const PUBLIC: PlannedRule = Object.freeze({ kind: "public" });

/** A rule written out the way a .proto option would read, for reports and logs. */
export function describeRule(rule: PlannedRule): string {
  const parts: string[] = [];
  if (rule.kind === "public") parts.push("public");
  else {
    if (rule.principalKind !== undefined) parts.push(`principal_kind: ${rule.principalKind.toUpperCase()}`);
    if (rule.superuser) parts.push("superuser");
    if (rule.staff) parts.push("staff");
    if (rule.permissions.length > 0) parts.push(`permissions: ${rule.permissions.join(", ")}`);
    if (parts.length === 0) parts.push("authenticated");
  }
  if (rule.condition !== undefined) parts.push(`condition: ${rule.condition}`);
  if (rule.apiKeys === false) parts.push("api_keys: false");
  return parts.join("; ");
}
