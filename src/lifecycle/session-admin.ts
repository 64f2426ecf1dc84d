/**
 * AuthService.ListSessions and RevokeSession: a user sees and ends their own sessions (refresh-
 * token families). Ending one takes logout's path (`revokeFamily`), so its access tokens are
 * revoked by jti on every instance and its open streams end.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { AuthService, SessionSchema } from "../../gen/protoguard/v1/auth_pb.js";
import { callerTokenId, requireUser } from "../connect/helpers.js";
import { auditContextOf } from "./audit.js";
import type { DrizzleDb } from "../store/database-handle.js";
import { recordAuditEvent } from "../store/audit.js";
import { StoreError } from "../store/errors.js";
import { listSessions, revokeSession, type SessionInfo } from "../store/sessions.js";

/** What {@link createSessionAdmin} needs. */
export interface SessionAdminOptions {
  readonly db: DrizzleDb;
  /** Clock in milliseconds (what "live" and revocation times are measured by). */
  readonly now: () => number;
  /** Told of each session ended, once committed; must not throw. */
  readonly onRevoked?: (userId: number, sessionId: string) => void;
}

/** The two handlers, to be put into the AuthService implementation. */
export type SessionAdmin = Pick<ServiceImpl<typeof AuthService>, "listSessions" | "revokeSession">;

/** A stored session in auth.proto's `Session` shape. */
export function sessionMessage(session: SessionInfo): MessageInitShape<typeof SessionSchema> {
  return {
    id: session.id,
    createdAt: timestampFromDate(session.createdAt),
    lastRefreshedAt: timestampFromDate(session.lastRefreshedAt),
    peerAddress: session.peerAddress,
    userAgent: session.userAgent,
    accessExpiresAt: timestampFromDate(session.accessExpiresAt),
    current: session.current,
  };
}

/**
 * The ListSessions and RevokeSession handlers over the store.
 *
 * - **ListSessions** → the caller's live sessions, newest activity first, the one the calling
 *   access token was issued in marked `current`.
 * - **RevokeSession** `{session_id}` ends one of the caller's sessions (again for an ended one:
 *   a no-op). An unknown id and another user's are both NOT_FOUND (never PERMISSION_DENIED:
 *   nobody learns which ids exist). Ending the current session is allowed: it is a logout.
 *   Each ending is audited (`session.revoked`, the caller as actor) in its transaction.
 */
export function createSessionAdmin(options: SessionAdminOptions): SessionAdmin {
  const { db, now, onRevoked } = options;
  return {
    async listSessions(_req, ctx) {
      const caller = requireUser(ctx);
      const sessions = await listSessions(db, caller.id, new Date(now()), callerTokenId(ctx));
      return { sessions: sessions.map(sessionMessage) };
    },
    async revokeSession(req, ctx) {
      const caller = requireUser(ctx);
      try {
        // The revocation and its audit record commit together.
        await db.transaction(async (tx) => {
          await revokeSession(tx, req.sessionId, new Date(now()), caller.id);
          await recordAuditEvent(tx, {
            type: "session.revoked",
            subject: `session:${req.sessionId}`,
            detail: { familyId: req.sessionId, userId: caller.id },
            context: auditContextOf(ctx),
          });
        });
      } catch (error) {
        if (error instanceof StoreError && error.code === "SESSION_NOT_FOUND") {
          throw new ConnectError("session not found", Code.NotFound);
        }
        throw error;
      }
      try {
        onRevoked?.(caller.id, req.sessionId);
      } catch {
        // The hook's failure is its own; the session is ended.
      }
      return {};
    },
  };
}
