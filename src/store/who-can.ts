/**
 * "Who may call this method?": the active users, service accounts and groups whose grants
 * satisfy a planned rule, checked the way the decision checks a caller (`authorize` in
 * src/decide/decide.ts): principal kind, then superuser, then staff, then every permission, a
 * superuser holding every permission.
 */
import { and, eq, sql, type SQL } from "drizzle-orm";
import { parsePermission } from "../permission.js";
import { describeRule, type PlannedRule } from "../policy/rule.js";
import type { DrizzleDb } from "./database-handle.js";
import { groups, users } from "./schema.js";

/** What {@link whoCan} answers, in the shape of admin.proto's WhoCanResponse. */
export interface WhoCanResult {
  /** The rule as text (`describeRule`). */
  readonly rule: string;
  /** Anyone may call, signed in or not: the lists below are empty. */
  readonly public: boolean;
  /** Active people whose flags and permissions satisfy the rule, sorted. */
  readonly users: readonly string[];
  /**
   * Groups whose permissions alone cover every permission the rule requires, sorted: an active
   * member of one has them. Empty when the rule requires no permission (membership adds nothing
   * then) or requires a superuser (a group cannot make one); see {@link memberRequirements}.
   */
  readonly groups: readonly string[];
  /** Active service accounts whose permissions satisfy the rule, sorted. */
  readonly serviceAccounts: readonly string[];
  /**
   * What a member of one of {@link groups} must also be, since no group grants it: `"staff"`
   * (the rule requires `is_staff`, a flag of the account), `"a person"` or `"a service
   * account"` (the rule's `principal_kind`). Empty when membership suffices.
   */
  readonly memberRequirements: readonly string[];
  /**
   * Conditions that must also hold at call time, as `"and only if <CEL>"`: who is listed may
   * call only when it is true for the call's request (and resource).
   */
  readonly conditions: readonly string[];
}

/**
 * The principals and groups whose grants satisfy `rule`'s requirements.
 *
 * - A public rule answers `public: true` and empty lists.
 * - `staff` and `superuser` are account flags: listed accounts have them; groups never grant
 *   them, so a staff rule lists groups with `memberRequirements: ["staff"]` and a superuser rule
 *   lists no group.
 * - A rule without permissions (just `authenticated`, or only flags) lists no group.
 * - Inactive accounts are never listed: they cannot call anything.
 * - The condition is not evaluated (it depends on each call's request): it is named in
 *   `conditions`.
 */
export async function whoCan(db: DrizzleDb, rule: PlannedRule): Promise<WhoCanResult> {
  const conditions = rule.condition === undefined ? [] : [`and only if ${rule.condition}`];
  const base = { rule: describeRule(rule), conditions };
  if (rule.kind === "public") {
    return { ...base, public: true, users: [], groups: [], serviceAccounts: [], memberRequirements: [] };
  }
  const required = [...new Set(rule.permissions)];
  const heldCount = (holder: "user" | "group") => {
    const wanted = sql.join(
      required.map((perm) => {
        const { appLabel, codename } = parsePermission(perm);
        return sql`(${appLabel}::varchar, ${codename}::varchar)`;
      }),
      sql`, `,
    );
    // Literal SQL with aliases, correlated on the outer row (see principal-query.ts for why).
    return holder === "user"
      ? sql`(select count(distinct p.id) from permissions p
            where (p.app_label, p.codename) in (${wanted})
              and (exists (select 1 from user_permissions up where up.permission_id = p.id and up.user_id = users.id)
                or exists (select 1 from user_groups ug
                  join group_permissions gp on gp.group_id = ug.group_id
                  where gp.permission_id = p.id and ug.user_id = users.id)))`
      : sql`(select count(distinct p.id) from permissions p
            join group_permissions gp on gp.permission_id = p.id
            where gp.group_id = groups.id and (p.app_label, p.codename) in (${wanted}))`;
  };
  const filters: (SQL | undefined)[] = [
    eq(users.isActive, true),
    rule.principalKind === undefined ? undefined : eq(users.kind, rule.principalKind),
    rule.superuser ? eq(users.isSuperuser, true) : undefined,
    rule.staff ? eq(users.isStaff, true) : undefined,
    required.length === 0 ? undefined : sql`(${users.isSuperuser} or ${heldCount("user")} = ${required.length})`,
  ];
  const principals = await db
    .select({ username: users.username, kind: users.kind })
    .from(users)
    .where(and(...filters))
    .orderBy(sql`${users.username} collate "C"`);
  const groupNames =
    required.length === 0 || rule.superuser
      ? []
      : (
          await db
            .select({ name: groups.name })
            .from(groups)
            .where(sql`${heldCount("group")} = ${required.length}`)
            .orderBy(sql`${groups.name} collate "C"`)
        ).map((g) => g.name);
  const memberRequirements =
    groupNames.length === 0
      ? []
      : [
          ...(rule.staff ? ["staff"] : []),
          ...(rule.principalKind === "user" ? ["a person"] : []),
          ...(rule.principalKind === "service" ? ["a service account"] : []),
        ];
  return {
    ...base,
    public: false,
    users: principals.filter((p) => p.kind === "user").map((p) => p.username),
    groups: groupNames,
    serviceAccounts: principals.filter((p) => p.kind === "service").map((p) => p.username),
    memberRequirements,
  };
}
