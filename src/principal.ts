/**
 * The identified caller of an RPC, as handlers see it: the user row that
 * matters for authorization plus the effective permission set.
 *
 * @example
 * ```ts
 * const user = requireUser(ctx);
 * if (user.isStaff) { ... }
 * ```
 */
export interface Principal {
  /** The user's primary key, the `user_id` claim of its tokens. */
  readonly id: number;
  readonly username: string;
  readonly email: string;
  readonly isStaff: boolean;
  readonly isSuperuser: boolean;
  /**
   * Effective permissions as `app_label.codename`: granted directly, through
   * groups, or (for a superuser) every permission that exists.
   */
  readonly permissions: ReadonlySet<string>;
  /**
   * `"user"` for a person, `"service"` for a service account. Absent means
   * `"user"`, so a `PrincipalSource` (protoguard/core) written before service accounts
   * existed keeps working.
   */
  readonly kind?: PrincipalKindName;
  /** Names of the groups the principal belongs to, when the source knows them. */
  readonly groups?: ReadonlySet<string>;
  /**
   * Set when the caller presented an API key (`pgk_…`) rather than a token:
   * the principal is then the key's owner limited to the key's scopes
   * (`permissions` is the owner's permissions intersected with `scopes`;
   * `isStaff`, `isSuperuser` and `groups` are not carried). Absent for tokens
   * and certificates.
   */
  readonly apiKey?: PrincipalApiKey;
}

/** The API key a principal came from; see {@link Principal.apiKey}. */
export interface PrincipalApiKey {
  /** The key's public id. */
  readonly id: string;
  /** The permissions the key is limited to, sorted. */
  readonly scopes: readonly string[];
}

/** The kinds of principal: people and service accounts. */
export type PrincipalKindName = "user" | "service";

/** The kind of `principal`, reading an absent `kind` as `"user"`. */
export function principalKind(principal: Principal): PrincipalKindName {
  return principal.kind ?? "user";
}

/**
 * Whether `principal` holds `permission` (`app_label.codename`). A superuser
 * holds every permission, even one that no table row names yet.
 */
export function principalHasPermission(principal: Principal, permission: string): boolean {
  return principal.isSuperuser || principal.permissions.has(permission);
}

/**
 * What a user lookup found for a user id (and token). Checked in this order:
 * `not_found`, `inactive`, `revoked`, `ok`, so a deleted or disabled account
 * is reported as such even when its token is also revoked. A
 * `PrincipalSource` (protoguard/core) of your own (bring your own user store) returns it.
 */
export type PrincipalLookup =
  | { status: "ok"; principal: Principal }
  | { status: "not_found" }
  | { status: "inactive" }
  | { status: "revoked" };
