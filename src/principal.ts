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
}

/**
 * Whether `principal` holds `permission` (`app_label.codename`). A superuser
 * holds every permission, even one that no table row names yet.
 */
export function principalHasPermission(principal: Principal, permission: string): boolean {
  return principal.isSuperuser || principal.permissions.has(permission);
}
