import { createHash, randomBytes } from "node:crypto";
import { UNKNOWN_PEER } from "../connect/peer.js";
import type { Database } from "../store/database-handle.js";
import { insertRefreshToken } from "../store/refresh-tokens.js";
import type { IssuedToken, TokenIssuer } from "../token/issuer.js";

/** An access and refresh token pair, as login, refresh and `protoguard token` return it. */
export interface IssuedSession {
  readonly accessToken: string;
  readonly refreshToken: string;
  readonly access: IssuedToken;
  readonly refresh: IssuedToken;
  /** The refresh-token family this pair belongs to. */
  readonly familyId: string;
}

/**
 * Who a token pair is issued to, recorded beside the refresh token so the session list
 * (`AuthService.ListSessions`, `protoguard session list`) can show it. Neither is a credential.
 */
export interface SessionClient {
  /** The client address (the call's `peerAddressKey` value). Default: unknown (`''`). */
  readonly peerAddress?: string | undefined;
  /** The request's User-Agent header. Default: none (`''`). */
  readonly userAgent?: string | undefined;
}

/** Longest peer address and User-Agent kept: the columns' sizes. */
const MAX_PEER_ADDRESS_LENGTH = 64;
const MAX_USER_AGENT_LENGTH = 512;

/**
 * SHA-256 hex of a refresh token: what the database stores beside the
 * token's `jti`, so a leaked table yields no usable token. Lookups go by the
 * verified `jti`, never by this hash: the hash is of one spelling, and a
 * lenient decoder would accept others.
 */
export function hashRefreshToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/**
 * Issues a token pair for `userId` and records the refresh token (hashed)
 * in its family; a new family unless `familyId` continues one (rotation).
 * Pass a transaction as `db` to make the record part of a larger change.
 * `client` (the peer address and User-Agent) is stored with it for the session list; an
 * unknown peer (`"unknown"`) is stored as `''`, and either is cut to its column's size.
 *
 * @example
 * ```ts
 * const session = await issueSession(database.db, issuer, user.id);
 * console.log(session.accessToken, session.refreshToken);
 * ```
 */
export async function issueSession(
  db: Database["db"],
  issuer: TokenIssuer,
  userId: number,
  familyId: string = randomBytes(16).toString("hex"),
  client: SessionClient = {},
): Promise<IssuedSession> {
  const [access, refresh] = await Promise.all([issuer.issueAccess(userId), issuer.issueRefresh(userId)]);
  await insertRefreshToken(db, {
    jti: refresh.jti,
    familyId,
    userId,
    tokenHash: hashRefreshToken(refresh.token),
    issuedAt: new Date(refresh.issuedAt * 1000),
    expiresAt: new Date(refresh.expiresAt * 1000),
    accessJti: access.jti,
    accessExpiresAt: new Date(access.expiresAt * 1000),
    peerAddress:
      client.peerAddress === undefined || client.peerAddress === UNKNOWN_PEER
        ? ""
        : client.peerAddress.slice(0, MAX_PEER_ADDRESS_LENGTH),
    userAgent: (client.userAgent ?? "").slice(0, MAX_USER_AGENT_LENGTH),
  });
  return { accessToken: access.token, refreshToken: refresh.token, access, refresh, familyId };
}
