/** What invalidates cached principals: vocabulary shared by the store and the adapters. */

/**
 * One change the database announces on its invalidation channel
 * (`protoguard_invalidate`, see the store's `subscribeInvalidations`).
 */
export type InvalidationEvent =
  /** A user row, its grants or its group memberships changed. */
  | { readonly kind: "user"; readonly userId: number }
  /** An access token's jti was revoked. */
  | { readonly kind: "token"; readonly jti: string }
  /**
   * Something that may affect many users changed (a group's or a
   * permission's rows), or notifications may have been missed (the listening
   * connection was re-established): drop everything.
   */
  | { readonly kind: "all" };
