/**
 * What the AuthService records in the audit log, and from where: the context
 * of a Connect call (peer address, user agent, request id, caller), login
 * outcomes, refresh and logout, and refused login admissions, aggregated per
 * client address and minute.
 */
import { ConnectError, type ContextValues, type HandlerContext } from "@connectrpc/connect";
import type { AuditActor, AuditContext, AuditEventInput } from "../audit-event.js";
import { principalKey } from "../connect/context.js";
import { authErrorReason } from "../connect/errors.js";
import { peerAddressKey } from "../connect/peer.js";
import { requestIdKey } from "../connect/request-id.js";
import { principalKind, type Principal } from "../principal.js";
import { recordAuditEvent } from "../store/audit.js";
import type { DrizzleDb } from "../store/database-handle.js";
import { revokeFamily } from "../store/refresh-tokens.js";
import { normalizeUsername } from "../store/users.js";

/** The actor a principal is: a user or a service account, by id. */
export function principalActor(principal: Principal): AuditActor {
  return {
    kind: principalKind(principal) === "service" ? "service" : "user",
    id: principal.id,
    username: principal.username,
  };
}

/**
 * The audit context of a Connect call: its peer address and request id (as
 * `startServer` set them), its user agent, and as actor `actor` when given,
 * else the authenticated caller, else anonymous. Tolerates a context without
 * values (direct handler calls).
 */
export function auditContextOf(ctx: HandlerContext, actor?: AuditActor): AuditContext {
  const values = ctx.values as ContextValues | undefined;
  const principal = values?.get(principalKey);
  const peerAddress = values?.get(peerAddressKey);
  const requestId = values?.get(requestIdKey);
  const userAgent = (ctx.requestHeader as Headers | undefined)?.get("user-agent") ?? undefined;
  return {
    actor: actor ?? (principal === undefined ? { kind: "anonymous" } : principalActor(principal)),
    ...(peerAddress !== undefined && { peerAddress }),
    ...(userAgent !== undefined && { userAgent }),
    ...(requestId !== undefined && { requestId }),
  };
}

/** The context `context` with another actor (the user who just logged in, the owner of a refresh token). */
export function asActor(context: AuditContext, actor: AuditActor): AuditContext {
  return { ...context, actor };
}

/** A username as typed, in the stored (NFKC) form and at most 150 code points, for the audit detail. */
function typedUsername(raw: string): string {
  let name: string;
  try {
    name = normalizeUsername(raw.slice(0, 300));
  } catch {
    name = raw.slice(0, 300);
  }
  return [...name].slice(0, 150).join("");
}

/** How a failed login is recorded, or undefined when it is not a credential outcome (busy hasher, database down, admission). */
function loginFailure(error: unknown): { type: "login.failed" | "login.totp_failed"; reason: string } | undefined {
  if (!(error instanceof ConnectError)) return undefined;
  const reason = authErrorReason(error);
  const why = error.cause instanceof Error ? error.cause.message : undefined;
  if (reason === "INVALID_CREDENTIALS") {
    const detail = why ?? "invalid credentials";
    return { type: detail.startsWith("TOTP") ? "login.totp_failed" : "login.failed", reason: detail };
  }
  if (reason === "PASSWORD_RESET_REQUIRED") return { type: "login.failed", reason: "password reset required" };
  if (reason === "LOGIN_THROTTLED" && why === USERNAME_LOCKED) return { type: "login.failed", reason: USERNAME_LOCKED };
  return undefined;
}

/** The cause of the refusal of a login for a locked username (server-side only, as every cause). */
export const USERNAME_LOCKED = "username locked";

/**
 * Records a refused login: `login.failed` or `login.totp_failed` with the
 * username as typed (normalised) and why, never the password or the code.
 * Its own write (the refusal changes nothing else); a failure to write it is
 * swallowed, so the caller still gets the refusal it earned.
 */
export async function recordLoginRefusal(
  db: DrizzleDb,
  rawUsername: string,
  error: unknown,
  context: AuditContext,
): Promise<void> {
  const failure = loginFailure(error);
  if (failure === undefined) return;
  const username = typedUsername(rawUsername);
  try {
    await recordAuditEvent(db, {
      type: failure.type,
      subject: `user:${username}`,
      detail: { username, reason: failure.reason },
      context,
    });
  } catch {
    // The audit store failing must not turn a refusal into UNAVAILABLE.
  }
}

/** Records a successful login in the transaction that issued its session. */
export function recordLoginSuccess(
  tx: DrizzleDb,
  user: { id: number; username: string },
  familyId: string,
  context: AuditContext,
): Promise<void> {
  return recordAuditEvent(tx, {
    type: "login.succeeded",
    subject: `user:${user.username}`,
    detail: { familyId },
    context: asActor(context, { kind: "user", id: user.id, username: user.username }),
  });
}

/** Records a refresh (`token.refreshed`) or a detected reuse (`token.reuse_detected`) in the refresh's transaction. */
export function recordRefresh(
  tx: DrizzleDb,
  outcome: { userId: number; familyId: string; reused?: boolean; how?: "reuse" | "twin" },
  context: AuditContext,
): Promise<void> {
  return recordAuditEvent(tx, {
    type: outcome.reused === true ? "token.reuse_detected" : "token.refreshed",
    subject: `session:${outcome.familyId}`,
    detail: {
      familyId: outcome.familyId,
      userId: outcome.userId,
      ...(outcome.reused === true && { how: outcome.how ?? "reuse", familyRevoked: true }),
    },
    context: asActor(context, { kind: "user", id: outcome.userId }),
  });
}

/**
 * Revokes a refresh-token family and records why, in one transaction:
 * `session.logged_out` for a logout, `token.reuse_detected` for a respelled
 * twin of a refresh token.
 */
export async function revokeFamilyAudited(
  db: DrizzleDb,
  family: { userId: number; familyId: string },
  at: Date,
  why: "logout" | "twin",
  context: AuditContext,
): Promise<void> {
  await db.transaction(async (tx) => {
    await revokeFamily(tx, family.familyId, at);
    if (why === "twin") {
      await recordRefresh(tx, { ...family, reused: true, how: "twin" }, context);
      return;
    }
    await recordAuditEvent(tx, {
      type: "session.logged_out",
      subject: `session:${family.familyId}`,
      detail: { familyId: family.familyId, userId: family.userId },
      context: asActor(context, { kind: "user", id: family.userId }),
    });
  });
}

/** Options of {@link createAdmissionAudit}. */
export interface AdmissionAuditOptions {
  /** Where the aggregated rows go. Required. */
  db: DrizzleDb;
  /** Clock in milliseconds. Default: `Date.now`. */
  now?: () => number;
  /**
   * Most client addresses counted per minute; refusals from further ones
   * are counted together under the address `*`. Default: 10000, the
   * admission's own bound.
   */
  maxAddresses?: number;
}

/** Counts refused login admissions and writes one audit row per client address and minute. */
export interface AdmissionAudit {
  /** Counts one refusal of `address` (the admission's key: an IPv4 address or IPv6 network). */
  refused(address: string, context: AuditContext): void;
  /** Writes every count of a minute that has ended (all of them with `all`); resolves when written. */
  flush(all?: boolean): Promise<void>;
}

interface MinuteCount {
  count: number;
  /** The context of the first refusal (its user agent and request id stand for the minute's). */
  context: AuditContext;
}

const MINUTE_MS = 60_000;

/**
 * The audit of refused login admissions. Refusals are counted in memory —
 * the admission exists to shed a flood before it touches the database, so a
 * refusal must not cost a write — and each (address, minute) becomes one
 * `admission.refused` row with its `count`, written once the minute is over:
 * by a timer (unref'd, so it keeps no process alive) or by the next refusal.
 * A flood from one address thus writes at most one row a minute per
 * instance, and every address at most `maxAddresses` rows a minute. Counts
 * of the last minute are lost if the process dies before writing them.
 */
export function createAdmissionAudit(options: AdmissionAuditOptions): AdmissionAudit {
  const { db } = options;
  const now = options.now ?? Date.now;
  const maxAddresses = options.maxAddresses ?? 10_000;
  /** minute start (ms) → address → count */
  const minutes = new Map<number, Map<string, MinuteCount>>();
  let timer: NodeJS.Timeout | undefined;
  let writing: Promise<void> = Promise.resolve();

  function schedule(): void {
    if (timer !== undefined || minutes.size === 0) return;
    const earliest = Math.min(...minutes.keys());
    timer = setTimeout(
      () => {
        timer = undefined;
        void flush();
      },
      Math.max(earliest + MINUTE_MS - now(), 0) + 50,
    );
    timer.unref();
  }

  function flush(all = false): Promise<void> {
    const current = Math.floor(now() / MINUTE_MS) * MINUTE_MS;
    const due: [number, Map<string, MinuteCount>][] = [];
    for (const [minute, counts] of minutes) {
      if (all || minute < current) due.push([minute, counts]);
    }
    for (const [minute] of due) minutes.delete(minute);
    // Writes one after another, in minute order.
    writing = writing.then(async () => {
      for (const [minute, counts] of due) {
        for (const [address, { count, context }] of counts) {
          const event: AuditEventInput = {
            type: "admission.refused",
            subject: `address:${address}`,
            detail: {
              address,
              minute: new Date(minute).toISOString(),
              count,
              ...(address === "*" && { overflow: true }),
            },
            context: address === "*" ? { actor: { kind: "anonymous" } } : context,
          };
          try {
            await recordAuditEvent(db, event);
          } catch {
            // A broken database loses this minute's count; the admission itself stands.
          }
        }
      }
    });
    schedule();
    return writing;
  }

  return {
    refused(address, context) {
      const minute = Math.floor(now() / MINUTE_MS) * MINUTE_MS;
      let counts = minutes.get(minute);
      if (counts === undefined) {
        counts = new Map();
        minutes.set(minute, counts);
        // A new minute: earlier ones are over.
        if (minutes.size > 1) void flush();
      }
      const key = counts.has(address) || counts.size < maxAddresses ? address : "*";
      let entry = counts.get(key);
      if (entry === undefined) {
        entry = { count: 0, context };
        counts.set(key, entry);
      }
      entry.count += 1;
      schedule();
    },
    flush,
  };
}
