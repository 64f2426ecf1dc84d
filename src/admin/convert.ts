/**
 * Store rows as AdminService messages. The store's read side already has the messages' shapes
 * (src/store/directory.ts); this only turns dates into Timestamps and nulls into unset fields.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  AuditEventSchema,
  GroupDetailSchema,
  ServiceAccountInfoSchema,
  UserDetailSchema,
  UserSummarySchema,
  type AuditEvent,
  type GroupDetail,
  type ServiceAccountInfo,
  type UserDetail,
  type UserSummary,
} from "../../gen/protoguard/v1/admin_pb.js";
import { ApiKeySchema, SessionSchema, type ApiKey, type Session } from "../../gen/protoguard/v1/auth_pb.js";
import { apiKeyMessage as ownApiKeyMessage } from "../lifecycle/api-keys.js";
import { sessionMessage as userSessionMessage } from "../lifecycle/session-admin.js";
import type { ApiKeyInfo } from "../store/api-keys.js";
import type { AuditEventRow } from "../store/schema.js";
import type * as directory from "../store/directory.js";
import type { ServiceAccountInfo as StoredServiceAccount } from "../store/service-accounts.js";
import type { SessionInfo } from "../store/sessions.js";

/** A user summary row as the message. */
export function userSummaryMessage(user: directory.UserSummary): UserSummary {
  return create(UserSummarySchema, {
    id: user.id,
    username: user.username,
    email: user.email,
    isActive: user.isActive,
    isStaff: user.isStaff,
    isSuperuser: user.isSuperuser,
    kind: user.kind,
    totpEnabled: user.totpEnabled,
    dateJoined: timestampFromDate(user.dateJoined),
    ...(user.lastLogin !== null && { lastLogin: timestampFromDate(user.lastLogin) }),
  });
}

/** A user with groups and permissions as the message. */
export function userDetailMessage(detail: directory.UserDetail): UserDetail {
  return create(UserDetailSchema, {
    user: userSummaryMessage(detail.user),
    groups: [...detail.groups],
    directPermissions: [...detail.directPermissions],
    effectivePermissions: detail.effectivePermissions.map((p) => ({
      permission: p.permission,
      sources: [...p.sources],
    })),
  });
}

/** A group summary's fields as the message's. */
export function groupSummaryInit(group: directory.GroupSummary) {
  return { name: group.name, memberCount: group.memberCount, permissions: [...group.permissions] };
}

/** A group with its members as the message. */
export function groupDetailMessage(detail: directory.GroupDetail): GroupDetail {
  return create(GroupDetailSchema, { group: groupSummaryInit(detail.group), members: [...detail.members] });
}

/** A service account as the message; never a secret or a hash (the store row has none). */
export function serviceAccountMessage(account: StoredServiceAccount): ServiceAccountInfo {
  return create(ServiceAccountInfoSchema, {
    name: account.name,
    clientId: account.clientId,
    isActive: account.isActive,
    permissions: [...account.permissions],
    tlsIdentity: account.tlsIdentity ?? "",
    secretRotatedAt: timestampFromDate(account.secretRotatedAt),
    ...(account.previousSecretExpiresAt !== null && {
      previousSecretExpiresAt: timestampFromDate(account.previousSecretExpiresAt),
    }),
  });
}

/** A session as auth.proto's message; `current` is never set here (an admin holds none of them). */
export function sessionMessage(session: SessionInfo): Session {
  return create(SessionSchema, { ...userSessionMessage(session), current: false });
}

/** An audit row as the message; its hashes stay server-side (`protoguard audit verify` reads them). */
export function auditEventMessage(row: AuditEventRow): AuditEvent {
  return create(AuditEventSchema, {
    id: BigInt(row.id),
    time: timestampFromDate(row.time),
    type: row.type,
    actor: row.actor,
    actorUsername: row.actorUsername ?? "",
    subject: row.subject ?? "",
    peerAddress: row.peerAddress ?? "",
    userAgent: row.userAgent ?? "",
    requestId: row.requestId ?? "",
    detailJson: JSON.stringify(row.detail),
  });
}

/** An API key as auth.proto's message, as AuthService lists a user's own. */
export function apiKeyMessage(info: ApiKeyInfo): ApiKey {
  return create(ApiKeySchema, ownApiKeyMessage(info));
}
