/**
 * The vocabulary of the audit log: who did what, to whom, from where. The
 * store writes these (in the same transaction as the change they record);
 * services and the CLI say who the actor is.
 */

/** Who did it. */
export type AuditActor =
  /** A user or service account calling through the API. */
  | { readonly kind: "user" | "service"; readonly id: number; readonly username?: string }
  /** The `protoguard` CLI, run by this operating-system user. */
  | { readonly kind: "cli"; readonly osUser: string }
  /** Nobody identified: a login attempt, a refused call. */
  | { readonly kind: "anonymous" }
  /** protoguard itself (retention, a migration). */
  | { readonly kind: "system" };

/** Where a change came from, carried from the edge down to the store. */
export interface AuditContext {
  readonly actor: AuditActor;
  /** The peer address, as the server resolved it (forwarded headers only from trusted proxies). */
  readonly peerAddress?: string;
  readonly userAgent?: string;
  /** The call's request id, when the server assigned or accepted one. */
  readonly requestId?: string;
}

/**
 * Every kind of event the audit log records, `<object>.<verb>`. Stable:
 * filters, SIEM rules and `protoguard audit list --type` use these strings.
 */
export const AUDIT_EVENT_TYPES = [
  "login.succeeded",
  "login.failed",
  "login.totp_failed",
  "admission.refused",
  "token.refreshed",
  "token.reuse_detected",
  "session.logged_out",
  "session.revoked",
  "session.stepped_up",
  "password.changed",
  "user.created",
  "user.updated",
  "user.activated",
  "user.deactivated",
  "user.deleted",
  "group.created",
  "group.deleted",
  "group.members_added",
  "group.members_removed",
  "permission.granted",
  "permission.revoked",
  "service.created",
  "service.secret_rotated",
  "service.activated",
  "service.deactivated",
  "service.deleted",
  "apikey.created",
  "apikey.revoked",
  "totp.enabled",
  "totp.disabled",
  "key.changed",
  "audit.pruned",
  "token.issued",
  "identity.linked",
  "identity.unlinked",
  "django.imported",
] as const;

/** One of {@link AUDIT_EVENT_TYPES}. */
export type AuditEventType = (typeof AUDIT_EVENT_TYPES)[number];

/** What a writer hands the store: the event, about whom, and its context. */
export interface AuditEventInput {
  readonly type: AuditEventType;
  /** What the event is about, `user:<username>`, `group:<name>`, `service:<name>`, `session:<id>`, `apikey:<id>`. */
  readonly subject?: string;
  /** Event-specific fields. Never a password, a token or a secret. */
  readonly detail?: Readonly<Record<string, unknown>>;
  readonly context: AuditContext;
}
