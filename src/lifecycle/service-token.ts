/**
 * The ServiceToken procedure of the AuthService: the OAuth 2.0
 * client-credentials grant. A service account's client id and secret in,
 * one short-lived access token out, never a refresh token. It shares
 * Login's per-client admission and password hasher, so it cannot be used
 * to flood the hasher that Login depends on.
 */
import { TOKEN_DEFAULTS } from "../token/defaults.js";
import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { AuditContext } from "../audit-event.js";
import { authError, authErrorReason } from "../connect/errors.js";
import { recordAuditEvent } from "../store/audit.js";
import { UNKNOWN_PEER } from "../connect/peer.js";
import { addressKey } from "../util/ip-address.js";
import type { Database } from "../store/database-handle.js";
import { findServiceCredentials, inGrace, issueWhileServiceSecretHolds } from "../store/service-accounts.js";
import type { IssuedToken, TokenIssuer } from "../token/issuer.js";
import { DEFAULT_LOGIN_ADMISSION, type LoginAdmission } from "./login-admission.js";
import { MAX_PASSWORD_BYTES, type PasswordHasher, type PasswordWorkOptions } from "./passwords.js";

/** Default lifetime of a service access token, in seconds: 5 minutes. */
export const DEFAULT_SERVICE_TOKEN_TTL_SECONDS = TOKEN_DEFAULTS.serviceTokenTtlSeconds;

/** Longest client id looked up: the `service_accounts.client_id` column's size. */
const MAX_CLIENT_ID_LENGTH = 64;

/** The one message of every refused exchange, whatever was wrong. */
const INVALID_CLIENT_MESSAGE = "invalid client credentials";
/** The message of an exchange refused because its client address has no attempts left. */
const RATE_LIMITED_MESSAGE = "too many attempts from this address, try again later";

/** A fresh service account's credentials, as `protoguard service create` prints them. */
export interface ClientCredentials {
  /** Public identifier: `svc_` and 128 random bits in hex. */
  readonly clientId: string;
  /** The secret, 256 random bits in base64url; shown once, stored only hashed. */
  readonly clientSecret: string;
}

/** New client credentials from the CSPRNG. */
export function generateClientCredentials(): ClientCredentials {
  return { clientId: generateClientId(), clientSecret: generateClientSecret() };
}

/** A new client id: `svc_` and 128 random bits in hex. */
export function generateClientId(): string {
  return `svc_${randomBytes(16).toString("hex")}`;
}

/** A new client secret: 256 random bits in base64url (43 characters). */
export function generateClientSecret(): string {
  return randomBytes(32).toString("base64url");
}

/** What {@link createServiceTokenExchange} needs, resolved once by the service. */
export interface ServiceTokenDependencies {
  readonly database: Database;
  readonly issuer: TokenIssuer;
  readonly passwordHasher: PasswordHasher;
  /** Login's per-client admission; undefined admits every client. */
  readonly admission: LoginAdmission | undefined;
  /** Lifetime of the tokens, at most the issuer's access lifetime. */
  readonly ttlSeconds: number;
  readonly now: () => number;
}

function invalidClient(why: string): ConnectError {
  return authError(INVALID_CLIENT_MESSAGE, Code.Unauthenticated, "INVALID_CREDENTIALS", new Error(why));
}

/**
 * Builds the exchange. The returned function resolves with an access token
 * or rejects with a `ConnectError`: UNAUTHENTICATED `INVALID_CREDENTIALS`
 * for every credential problem, RESOURCE_EXHAUSTED `LOGIN_THROTTLED` when
 * the client address has no attempts left. Database and hasher errors are
 * rethrown as they are, for the service to map.
 *
 * Order of work, and why:
 * 1. Inputs over the caps fail before any I/O or hashing.
 * 2. The client address must have an attempt left in Login's admission
 *    (the same buckets: a flood through either RPC spends one budget).
 * 3. One indexed lookup by client id; an unknown id costs a dummy
 *    verification, so it takes the time a wrong secret takes.
 * 4. The secret is checked against the current hash, then (only while a
 *    rotation's grace period runs) against the previous one; a wrong secret
 *    then costs two hashes, which tells only that the (already known)
 *    client id is mid-rotation. There is no
 *    per-client-id lockout: secrets have 256 bits, so guessing is hopeless,
 *    and a lockout would only let anyone who knows a client id lock the
 *    service out.
 * 5. An inactive account is refused after the hash, like a wrong secret.
 * 6. The secret's hash is checked again when the token is signed, under a
 *    row lock a rotation waits for: an exchange that read the hash before a
 *    rotation without grace and verified after it is refused, never issued
 *    a token newer than the rotation. A success does not give its attempt
 *    back: a leaked secret is throttled like a guessed one.
 */
export function createServiceTokenExchange(deps: ServiceTokenDependencies) {
  const { issuer, passwordHasher, admission, ttlSeconds, now } = deps;
  const db = deps.database.db;

  /**
   * Audited like Login: `login.succeeded` (actor the service account) or `login.failed` (the
   * reason, never the secret), subject `client:<client id>` (client ids are public). A throttled
   * attempt writes nothing: the admission turns floods away before any write.
   */
  return async function exchange(
    clientId: string,
    clientSecret: string,
    peer?: string,
    audit: AuditContext = { actor: { kind: "anonymous" } },
  ): Promise<IssuedToken> {
    let issued: { token: IssuedToken; userId: number };
    try {
      issued = await attempt(clientId, clientSecret, peer);
    } catch (error) {
      await recordRefusal(clientId, error, audit);
      throw error;
    }
    await record({
      type: "login.succeeded",
      subject: `client:${clientId}`,
      detail: { clientId, grant: "client_credentials" },
      context: { ...audit, actor: { kind: "service", id: issued.userId } },
    });
    return issued.token;
  };

  async function recordRefusal(clientId: string, error: unknown, audit: AuditContext): Promise<void> {
    if (!(error instanceof ConnectError) || authErrorReason(error) !== "INVALID_CREDENTIALS") return;
    const why = error.cause instanceof Error ? error.cause.message : "invalid client credentials";
    // A client id outside the form is not recorded as typed: it may be anything.
    const shown = clientId.length <= MAX_CLIENT_ID_LENGTH && /^[\x21-\x7e]+$/.test(clientId) ? clientId : "";
    await record({
      type: "login.failed",
      subject: `client:${shown}`,
      detail: { clientId: shown, grant: "client_credentials", reason: why },
      context: audit,
    });
  }

  async function record(event: Parameters<typeof recordAuditEvent>[1]): Promise<void> {
    try {
      await recordAuditEvent(db, event);
    } catch {
      // The audit store failing must not turn an answer into UNAVAILABLE.
    }
  }

  async function attempt(
    clientId: string,
    clientSecret: string,
    peer: string | undefined,
  ): Promise<{ token: IssuedToken; userId: number }> {
    if (clientId.length === 0 || clientId.length > MAX_CLIENT_ID_LENGTH || !/^[\x21-\x7e]+$/.test(clientId)) {
      throw invalidClient("client id outside the accepted form");
    }
    if (clientSecret.length === 0 || Buffer.byteLength(clientSecret, "utf8") > MAX_PASSWORD_BYTES) {
      throw invalidClient("client secret empty or longer than the cap");
    }
    const client = peer === undefined || admission === undefined ? undefined : admission.keyOf(peer);
    if (client !== undefined && !admission!.take(client, now())) {
      throw authError(RATE_LIMITED_MESSAGE, Code.ResourceExhausted, "LOGIN_THROTTLED");
    }
    const work: PasswordWorkOptions = {
      fairnessKey:
        client ?? (peer === undefined ? UNKNOWN_PEER : addressKey(peer, DEFAULT_LOGIN_ADMISSION.ipv6PrefixLength)),
    };

    const account = await findServiceCredentials(db, clientId);
    if (account === undefined) {
      await passwordHasher.dummyVerify(clientSecret, work);
      throw invalidClient("unknown client id");
    }
    let matched: string | undefined;
    if ((await passwordHasher.verify(clientSecret, account.secretHash, work)).ok) matched = account.secretHash;
    else if (
      inGrace(account, now()) &&
      (await passwordHasher.verify(clientSecret, account.previousSecretHash, work)).ok
    ) {
      matched = account.previousSecretHash;
    }
    if (matched === undefined) throw invalidClient("wrong client secret");
    if (!account.isActive) throw invalidClient("inactive service account");
    // The hash was read before the hasher's queue: re-checked, and the token signed, under a
    // lock that a rotation committing meanwhile waits for.
    const token = await issueWhileServiceSecretHolds(db, account.userId, matched, new Date(now()), () =>
      // Each exchange authenticates afresh with the secret, so `auth_time` is the issue time and
      // `max_auth_age` judges the token's age. No `amr`: RFC 8176 has no value for a client
      // secret, and a method that sets `require_totp` is for people, whom a service never is.
      issuer.issueAccess(account.userId, { auth_time: Math.floor(now() / 1000) }, ttlSeconds),
    );
    if (token === undefined) throw invalidClient("secret rotated or account deactivated during the exchange");
    // No attempt is given back on success: a leaked secret is throttled like a guessed one.
    return { token, userId: account.userId };
  }
}
