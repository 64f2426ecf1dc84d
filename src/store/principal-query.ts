import { eq, sql } from "drizzle-orm";
import type { PrincipalLookup } from "../principal.js";
import { isUserId } from "../user-id.js";
import type { DrizzleDb } from "./database-handle.js";
import { users } from "./schema.js";

/** The token facts that can revoke it: its `jti` and `iat` (seconds). */
export interface TokenRevocationInput {
  jti: string;
  /** The token's `iat` claim, in seconds since the epoch. */
  issuedAt: number;
}

/**
 * Builds the one statement. Its SQL text never varies (absent token facts
 * are NULL parameters, not a different query), so postgres.js can prepare
 * it once per connection and reuse the plan.
 *
 * Plan, per call (EXPLAIN on PostgreSQL 15; on near-empty tables the planner
 * may pick seq scans and hash joins instead, which is as cheap there):
 * - `users` by primary key (users_pkey), one row or none;
 * - direct grants: user_permissions_pkey prefix scan on user_id, then
 *   permissions by permissions_pkey;
 * - group grants: user_groups_pkey prefix scan on user_id, then
 *   group_permissions_pkey prefix scan on group_id, then permissions_pkey;
 * - superuser branch: a scan of `permissions` behind a One-Time Filter on
 *   `users.is_superuser`, so it costs nothing for everyone else;
 * - UNION deduplicates a permission granted both ways (HashAggregate);
 * - revocation: revoked_tokens_pkey lookup on jti, and a comparison of `iat`
 *   with credentials_changed_at truncated to milliseconds. protoguard's
 *   issuer writes `iat` with millisecond precision (RFC 7519 allows
 *   fractions), so its tokens issued just after a change stay valid; a
 *   whole-second `iat` from another issuer in the same second as the change
 *   is refused, the safe side.
 */
function buildQuery(db: DrizzleDb) {
  // The subqueries are literal SQL with aliases: in a single-table select
  // Drizzle renders interpolated columns unqualified, which would make
  // "user_id" = "id" inside them ambiguous. The tests exercise every
  // branch, so a renamed column fails loudly.
  const jti = sql`${sql.placeholder("jti")}::varchar`;
  const issuedAt = sql`${sql.placeholder("issuedAt")}::float8`;
  return db
    .select({
      id: users.id,
      username: users.username,
      email: users.email,
      kind: users.kind,
      isActive: users.isActive,
      isStaff: users.isStaff,
      isSuperuser: users.isSuperuser,
      permissions: sql<string[]>`array(
        select p.app_label || '.' || p.codename from permissions p
          where users.is_superuser
        union
        select p.app_label || '.' || p.codename from user_permissions up
          join permissions p on p.id = up.permission_id
          where up.user_id = users.id
        union
        select p.app_label || '.' || p.codename from user_groups ug
          join group_permissions gp on gp.group_id = ug.group_id
          join permissions p on p.id = gp.permission_id
          where ug.user_id = users.id
      )`,
      groups: sql<string[]>`array(
        select g.name from user_groups ug
          join groups g on g.id = ug.group_id
          where ug.user_id = users.id
      )`,
      // Whole milliseconds, as the comparison below truncates them: what an
      // in-memory check of another token of this user compares its iat with.
      credentialsChangedMs: sql<number>`floor(extract(epoch from users.credentials_changed_at) * 1000)::float8`,
      tokenRevoked: sql<boolean>`(
        coalesce(${issuedAt} < floor(extract(epoch from users.credentials_changed_at) * 1000) / 1000, false)
        or exists (select 1 from revoked_tokens rt where rt.jti = ${jti})
      )`,
    })
    .from(users)
    .where(eq(users.id, sql.placeholder("userId")))
    .prepare("protoguard_load_principal");
}

type PreparedLookup = ReturnType<typeof buildQuery>;

// One prepared query per database handle; building it costs more than
// running the cached one. A WeakMap so transaction handles are not kept.
const prepared = new WeakMap<DrizzleDb, PreparedLookup>();

/**
 * Loads the user behind `userId` with its effective permissions and, when a
 * token is given, whether that token is revoked — in exactly one SQL
 * statement (one round trip), so the per-call cost of "look the user up on
 * every call" is one indexed query.
 *
 * Effective permissions are `app_label.codename` strings: granted directly,
 * through groups, and for a superuser every permission row that exists.
 * A token is revoked when its `jti` is in `revoked_tokens` or its `iat` is
 * before the user's `credentials_changed_at` (whole seconds).
 *
 * An id that cannot be a user id (not a positive 32-bit integer) is
 * `not_found` without touching the database. A non-finite `issuedAt` counts
 * as revoked.
 *
 * @param token Omit to skip the revocation checks (e.g. for an API key or a
 *   lookup that is not tied to a token).
 */
export async function loadPrincipal(
  db: DrizzleDb,
  userId: number,
  token?: TokenRevocationInput,
): Promise<PrincipalLookup> {
  return (await loadPrincipalAndUser(db, userId, token)).lookup;
}

/**
 * What a cache keyed by user needs to judge any token of that user without
 * asking the database again: the user as every token sees it (`not_found`,
 * `inactive`, or `ok` with the principal) and the credentials cut-off. The
 * revoked `jti`s are the caller's to know (see `loadRevokedTokens`).
 */
export interface UserRevocationFacts {
  /** `not_found`, `inactive` or `ok`: never `revoked`, which is a token's. */
  readonly lookup: PrincipalLookup;
  /**
   * `credentials_changed_at` in whole milliseconds since the epoch: a token
   * whose `iat` (seconds) is below `credentialsChangedMs / 1000` is revoked
   * (see {@link revokedByCredentials}).
   */
  readonly credentialsChangedMs: number;
}

/**
 * Whether a token issued at `issuedAt` (seconds) predates the user's last
 * credentials change: the same comparison, in the same float64 arithmetic,
 * as the one statement of {@link loadPrincipal} (a non-finite `iat` counts as 0).
 */
export function revokedByCredentials(facts: UserRevocationFacts, issuedAt: number): boolean {
  return (Number.isFinite(issuedAt) ? issuedAt : 0) < facts.credentialsChangedMs / 1000;
}

/**
 * {@link loadPrincipal}'s one round trip, answering both the token's lookup
 * and the user's {@link UserRevocationFacts}, so a cache keyed by user can
 * judge the user's next tokens in memory.
 */
export async function loadPrincipalAndUser(
  db: DrizzleDb,
  userId: number,
  token?: TokenRevocationInput,
): Promise<{ lookup: PrincipalLookup; user: UserRevocationFacts }> {
  if (!isUserId(userId)) return { lookup: NOT_FOUND, user: { lookup: NOT_FOUND, credentialsChangedMs: 0 } };
  let query = prepared.get(db);
  if (query === undefined) {
    query = buildQuery(db);
    prepared.set(db, query);
  }
  const rows = await query.execute({
    userId,
    jti: token?.jti ?? null,
    // 0 is before any credentials change, so a garbage iat is revoked rather
    // than (as NaN or Infinity would compare in SQL) never revoked.
    issuedAt: token === undefined ? null : Number.isFinite(token.issuedAt) ? token.issuedAt : 0,
  });
  const row = rows[0];
  if (row === undefined) return { lookup: NOT_FOUND, user: { lookup: NOT_FOUND, credentialsChangedMs: 0 } };
  const credentialsChangedMs = Number(row.credentialsChangedMs);
  if (!row.isActive) return { lookup: INACTIVE, user: { lookup: INACTIVE, credentialsChangedMs } };
  const ok: PrincipalLookup = {
    status: "ok",
    principal: {
      id: row.id,
      username: row.username,
      email: row.email,
      kind: row.kind,
      isStaff: row.isStaff,
      isSuperuser: row.isSuperuser,
      permissions: new Set(row.permissions),
      groups: new Set(row.groups),
    },
  };
  return { lookup: row.tokenRevoked ? REVOKED : ok, user: { lookup: ok, credentialsChangedMs } };
}

const NOT_FOUND: PrincipalLookup = Object.freeze({ status: "not_found" });
const INACTIVE: PrincipalLookup = Object.freeze({ status: "inactive" });
const REVOKED: PrincipalLookup = Object.freeze({ status: "revoked" });
