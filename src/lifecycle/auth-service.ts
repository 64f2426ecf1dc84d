/**
 * The AuthService (`protoguard.v1.AuthService`): login, refresh-token
 * rotation, logout and WhoAmI over the Drizzle store, plus the account
 * operations the CLI runs (password change, deactivation, TOTP enrolment).
 */
import { Code, ConnectError, type ContextValues, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { eq } from "drizzle-orm";
import type { AuthService } from "../../gen/protoguard/v1/auth_pb.js";
import { authError } from "../connect/errors.js";
import { peerAddressKey } from "../connect/peer.js";
import { requirePrincipal } from "../connect/helpers.js";
import { principalKind } from "../principal.js";
import { MESSAGES } from "../decide/verdict.js";
import type { Database } from "../store/database-handle.js";
import { StoreError } from "../store/errors.js";
import { DEFAULT_THROTTLE, type ThrottlePolicy } from "../store/login-attempts.js";
import { storeTotpSecret } from "../store/totp.js";
import { consumeRefreshToken, findRefreshFamily, revokeUserSessions } from "../store/refresh-tokens.js";
import { users, type User } from "../store/schema.js";
import type { PublicUser } from "../store/users.js";
import { findUserByUsername, setPasswordHash, setUserActive } from "../store/users.js";
import { canonicalCompactJws } from "../token/base64url.js";
import { TokenRejectedError } from "../token/errors.js";
import type { TokenIssuer } from "../token/issuer.js";
import type { TokenVerifier, VerifyResult } from "../token/verifier.js";
import { auditContextOf, recordRefresh, revokeFamilyAudited } from "./audit.js";
import { createLogin } from "./login.js";
import { createLoginAdmission, type LoginAdmissionOptions } from "./login-admission.js";
import { createPasswordHasher, PasswordBusyError, type PasswordHasher } from "./passwords.js";
import { createServiceTokenExchange, DEFAULT_SERVICE_TOKEN_TTL_SECONDS } from "./service-token.js";
import { createSessionAdmin } from "./session-admin.js";
import { type SessionClient } from "./sessions.js";
import { createApiKeyRpcs } from "./api-keys.js";
import { createRefreshRotation } from "./refresh-grace.js";
import { createStepUp } from "./step-up.js";
import type { SimplejwtAdoption } from "./simplejwt-adoption.js";
import { generateTotpSecret, totpUri } from "./totp.js";

/** Options of {@link createAuthService}. */
export interface AuthServiceOptions {
  /** The user store: users, refresh-token families, revocations, login throttling. Required. */
  database: Database;
  /** Signs the access and refresh tokens that Login and Refresh hand out. Required. */
  issuer: TokenIssuer;
  /**
   * Verifies refresh tokens presented to Refresh and Logout. Use the same
   * verifier (keys, lifetimes) as the auth layer. Required.
   */
  verifier: TokenVerifier;
  /**
   * Checks passwords and upgrades weak or Django hashes on login.
   * Default: `createPasswordHasher()` (scrypt N=2^17, r=8, p=1).
   */
  passwordHasher?: PasswordHasher;
  /**
   * Per-username login throttling. Default: {@link DEFAULT_THROTTLE}
   * (5 free failures, then a lock of 1 s doubling up to 60 s; failures
   * forgotten, and their rows purged, 15 minutes after the last one).
   */
  throttle?: ThrottlePolicy;
  /**
   * Per-client admission of Login attempts, checked before anything is
   * written or hashed: each client address (IPv6: each /64) has a budget of
   * `burst` attempts, regained at `perMinute`; a successful login gives its
   * attempt back (a successful ServiceToken exchange does not: a leaked client secret is
   * throttled like a guessed one). A client without budget gets RESOURCE_EXHAUSTED
   * `LOGIN_THROTTLED` at once. The address is the call's `peerAddressKey`
   * context value, which `startServer` sets (from the socket, or from a
   * trusted proxy's forwarded header); calls without one (the in-memory
   * transport, an adapter without `peerContextValues`) are not limited per
   * client. `false` turns the admission off. Default:
   * `DEFAULT_LOGIN_ADMISSION` (burst 20, 30 per minute, 10000 clients
   * remembered, IPv6 per /64).
   */
  loginAdmission?: LoginAdmissionOptions | false;
  /**
   * Lifetime in seconds of the access tokens ServiceToken hands to service
   * accounts; at most the issuer's access lifetime (verifiers refuse longer
   * ones). Service tokens come without a refresh token, so a short life
   * bounds how long a leaked one is useful. Default: 300, or the issuer's
   * access lifetime when that is shorter.
   */
  serviceTokenTtlSeconds?: number | undefined;
  /**
   * Seconds during which a rotated refresh token presented again (two tabs refreshing at once,
   * a retried request whose answer was lost) gets the same successor pair as its first use,
   * instead of revoking the family; 0 turns the window off. Outside it, reuse revokes the
   * family. At most 60. Default: `DEFAULT_REFRESH_REUSE_GRACE_SECONDS`, 5.
   */
  refreshReuseGraceSeconds?: number | undefined;
  /**
   * Accept djangorestframework-simplejwt refresh tokens in Refresh
   * (`createSimplejwtAdoption`): one simplejwt issued is exchanged once for a
   * protoguard pair in a new family. Default: none (they are refused like any
   * token protoguard did not issue).
   */
  simplejwt?: SimplejwtAdoption;
  /**
   * Told of each session-ending security event as it is committed: a refresh token used twice
   * (`refresh_reuse`: its family, access tokens included, is revoked), a respelled twin of a
   * refresh token presented (`refresh_twin`: likewise), a logout (`logout`), and a session ended
   * by its user through RevokeSession (`session_revoked`). Meant for a
   * log that writes every one in full (`protoguard serve` logs them at warn, `msg: "security
   * event"`); it must not throw (what it throws is ignored). Default: none.
   */
  onSecurityEvent?: (event: SecurityEvent) => void;
  /**
   * Clock in milliseconds for throttling, TOTP steps, last-login and
   * revocation times (the issuer and verifier have their own). Default: `Date.now`.
   */
  now?: () => number;
}

/** A security event of the AuthService; see `AuthServiceOptions.onSecurityEvent`. Holds no secret. */
export interface SecurityEvent {
  readonly event: "refresh_reuse" | "refresh_twin" | "logout" | "session_revoked";
  /** The user whose session family it concerns. */
  readonly userId: number;
  /** The refresh-token family revoked. */
  readonly familyId: string;
}

/** The audit context of what no call carries (a twin found while verifying): the actor is set from the token. */
const SYSTEM = { actor: { kind: "system" } } as const;

// Messages for RESOURCE_EXHAUSTED / UNAVAILABLE stay generic: the cause is kept server-side only.
const HASHER_BUSY_MESSAGE = "too many login attempts in progress, try again later";

/**
 * Creates the `protoguard.v1.AuthService` implementation. Register it with
 * `router.service(AuthService, impl)` behind the auth layer: Login, Refresh
 * and Logout are public, WhoAmI needs an access token.
 *
 * - **Login** `{username, password, otp_code}` → `{access_token, refresh_token,
 *   user{id, username, email}}`. The username is taken in NFKC form, as
 *   Django's login form does. Every credential failure is UNAUTHENTICATED
 *   "invalid credentials" (reason `INVALID_CREDENTIALS`); a locked username,
 *   a client address out of attempts and a full password hasher are
 *   RESOURCE_EXHAUSTED (reason `LOGIN_THROTTLED`).
 * - **Refresh** `{refresh_token}` → a new pair in the same family; the old
 *   token works once. Presenting a used one revokes the family (and its
 *   access tokens): UNAUTHENTICATED `TOKEN_REVOKED`.
 * - **Logout** `{refresh_token}` revokes the token's family; idempotent.
 * - Refresh and Logout find the token's record by its verified `jti`. A
 *   respelled twin of a refresh token (non-canonical base64url) is refused as
 *   `TOKEN_MALFORMED` and revokes the family, like a reuse.
 * - **ServiceToken** `{client_id, client_secret}` → `{access_token,
 *   expires_in, token_type}` for a service account (the client-credentials
 *   grant): no refresh token, a lifetime of `serviceTokenTtlSeconds`. Every
 *   credential failure is UNAUTHENTICATED "invalid client credentials"
 *   (`INVALID_CREDENTIALS`), an unknown client id costing a dummy hash; it
 *   draws on Login's per-client admission (RESOURCE_EXHAUSTED
 *   `LOGIN_THROTTLED`).
 * - **WhoAmI** → the caller (a user or a service account, `kind`) with
 *   `is_staff`, `is_superuser` and sorted permissions.
 *
 * Database failures answer UNAVAILABLE (`AUTH_BACKEND_UNAVAILABLE`), never
 * UNAUTHENTICATED, so clients retry instead of logging out.
 *
 * @example
 * ```ts
 * // AuthService is generated from proto/protoguard/v1/auth.proto (gen/protoguard/v1/auth_pb).
 * const issuer = createTokenIssuer({ keyring });
 * const verifier = createTokenVerifier({ keyring });
 * const auth = createAuth({ services: [AuthService], verifier, principals: await createPrincipalSource({ database }) });
 * const routes = (router: ConnectRouter) =>
 *   router.service(AuthService, createAuthService({ database, issuer, verifier }));
 * http2.createServer(connectNodeAdapter({ routes, interceptors: [auth.interceptor], requestGate: auth.requestGate }));
 * ```
 */
export function createAuthService(options: AuthServiceOptions): ServiceImpl<typeof AuthService> {
  const { database, issuer, verifier } = options;
  const db = database.db;
  const now = options.now ?? Date.now;
  const passwordHasher = options.passwordHasher ?? createPasswordHasher();
  // One admission for both exchanges that hash: a client flooding either
  // spends the same budget.
  const admission = options.loginAdmission === false ? undefined : createLoginAdmission(options.loginAdmission);
  const login = createLogin({
    database,
    issuer,
    passwordHasher,
    throttle: options.throttle ?? DEFAULT_THROTTLE,
    admission,
    now,
  });
  const stepUp = createStepUp({
    database,
    issuer,
    verifier,
    passwordHasher,
    throttle: options.throttle ?? DEFAULT_THROTTLE,
    admission,
    now,
  });
  const serviceTtl =
    options.serviceTokenTtlSeconds ?? Math.min(DEFAULT_SERVICE_TOKEN_TTL_SECONDS, issuer.accessTtlSeconds);
  if (!Number.isSafeInteger(serviceTtl) || serviceTtl < 1 || serviceTtl > issuer.accessTtlSeconds) {
    throw new RangeError(
      `serviceTokenTtlSeconds must be an integer in 1..${issuer.accessTtlSeconds} (the access lifetime)`,
    );
  }
  const exchangeClientCredentials = createServiceTokenExchange({
    database,
    issuer,
    passwordHasher,
    admission,
    ttlSeconds: serviceTtl,
    now,
  });

  const apiKeyRpcs = createApiKeyRpcs({ database, now });
  const rotation = createRefreshRotation(issuer, options.refreshReuseGraceSeconds);
  const { onSecurityEvent } = options;
  /** Tells `onSecurityEvent`, which must not fail the call. */
  function report(event: SecurityEvent): void {
    try {
      onSecurityEvent?.(event);
    } catch {
      // The event is the hook's to record; the call's outcome stands.
    }
  }

  /** Verifies a refresh token, or throws the UNAUTHENTICATED/UNAVAILABLE the auth layer would. */
  async function verifyRefresh(token: string) {
    const result = await verifier.verify(token, "refresh");
    if (result.ok) return result.claims;
    if (result.error instanceof TokenRejectedError && result.error.code === "NOT_CANONICAL")
      await revokeTwinFamily(token);
    throw verifyFailure(result);
  }

  /**
   * A respelled twin of a refresh token we issued is refused like any
   * malformed token, and is also proof that a copy of the real token is in
   * hands that tamper with it (no client library writes spare base64url
   * bits). Its family is revoked, as on reuse: only a holder of the real
   * token can get here, and that holder could log the session out anyway.
   */
  async function revokeTwinFamily(twin: string): Promise<void> {
    const canonical = canonicalCompactJws(twin);
    if (canonical === undefined || canonical === twin) return;
    const original = await verifier.verify(canonical, "refresh");
    if (!original.ok) return;
    const familyId = await findRefreshFamily(db, original.claims.jti);
    if (familyId !== undefined) {
      await revokeFamilyAudited(db, { userId: original.claims.userId, familyId }, new Date(now()), "twin", SYSTEM);
      report({ event: "refresh_twin", userId: original.claims.userId, familyId });
    }
  }

  const sessions = createSessionAdmin({
    db,
    now,
    onRevoked: (userId, familyId) => report({ event: "session_revoked", userId, familyId }),
  });

  return {
    login: (req, ctx) =>
      guard(async () => {
        const { session, user } = await login(
          req.username,
          req.password,
          req.otpCode,
          peerOf(ctx),
          auditContextOf(ctx),
        );
        return { accessToken: session.accessToken, refreshToken: session.refreshToken, user };
      }),

    refresh: (req, ctx) =>
      guard(async () => {
        const adopted = await options.simplejwt?.refresh(req.refreshToken, {
          database,
          issuer,
          verifier,
          now,
          client: clientOf(ctx),
        });
        if (adopted !== undefined) return { accessToken: adopted.accessToken, refreshToken: adopted.refreshToken };
        const claims = await verifyRefresh(req.refreshToken);
        const at = new Date(now());
        let reused: SecurityEvent | undefined;
        // One transaction: the successor is recorded only if the old token is
        // marked used, and vice versa. Refusals are returned, not thrown, so
        // the transaction commits: a reuse's family revocation must persist
        // even though this call fails.
        const outcome = await db.transaction(async (tx) => {
          // Keyed by the signed jti, not the string: nothing a client can
          // respell. An empty jti (requireJti: false) matches no row.
          const consumed = await consumeRefreshToken(tx, claims.jti, at, rotation.graceSeconds);
          if (consumed.status === "grace")
            return rotation.replay(consumed, req.refreshToken, claims.jti) ?? "TOKEN_REVOKED";
          if (consumed.status === "reused") await recordRefresh(tx, { ...consumed, reused: true }, auditContextOf(ctx));
          if (consumed.status === "reused") {
            reused = { event: "refresh_reuse", userId: consumed.userId, familyId: consumed.familyId };
          }
          if (consumed.status !== "ok") return "TOKEN_REVOKED" as const;
          const [user] = await tx
            .select({ isActive: users.isActive, kind: users.kind, credentialsChangedAt: users.credentialsChangedAt })
            .from(users)
            .where(eq(users.id, consumed.userId));
          if (user === undefined || !user.isActive) return "USER_INACTIVE" as const;
          // Service accounts are never issued refresh tokens; one that names
          // a service (written by hand with issueSession) is refused all the same.
          if (user.kind === "service") return "TOKEN_REVOKED" as const;
          // A password change revokes the refresh rows too; this also covers a
          // deactivate-then-reactivate done with setUserActive alone.
          if (Math.round(claims.issuedAt * 1000) < user.credentialsChangedAt.getTime()) return "TOKEN_REVOKED" as const;
          await recordRefresh(tx, consumed, auditContextOf(ctx));
          return rotation.rotate(tx, consumed, req.refreshToken, claims.jti, clientOf(ctx));
        });
        await rotation.purgeIfDue(db, now());
        // Reported once committed: the revocation stands.
        if (reused !== undefined) report(reused);
        if (typeof outcome === "string") throw authError(MESSAGES[outcome], Code.Unauthenticated, outcome);
        return { accessToken: outcome.accessToken, refreshToken: outcome.refreshToken };
      }),

    logout: (req, ctx) =>
      guard(async () => {
        const claims = await verifyRefresh(req.refreshToken);
        const familyId = await findRefreshFamily(db, claims.jti);
        // Signed by us but not on record: its rows went with a deleted user, or were purged.
        if (familyId === undefined) throw authError(MESSAGES.TOKEN_REVOKED, Code.Unauthenticated, "TOKEN_REVOKED");
        await revokeFamilyAudited(
          db,
          { userId: claims.userId, familyId },
          new Date(now()),
          "logout",
          auditContextOf(ctx),
        );
        report({ event: "logout", userId: claims.userId, familyId });
        return {};
      }),

    serviceToken: (req, ctx) =>
      guard(async () => {
        const token = await exchangeClientCredentials(req.clientId, req.clientSecret, peerOf(ctx), auditContextOf(ctx));
        return {
          accessToken: token.token,
          // The lifetime, as OAuth's expires_in: `exp` is whole seconds from
          // a fractional `iat`, so their difference is up to a second short.
          expiresIn: serviceTtl,
          tokenType: "Bearer",
        };
      }),

    whoAmI: (_req, ctx) => {
      const caller = requirePrincipal(ctx);
      return {
        user: { id: caller.id, username: caller.username, email: caller.email },
        isStaff: caller.isStaff,
        isSuperuser: caller.isSuperuser,
        permissions: [...caller.permissions].sort(),
        kind: principalKind(caller),
      };
    },

    listSessions: (req, ctx) => guard(async () => sessions.listSessions(req, ctx)),
    revokeSession: (req, ctx) => guard(async () => sessions.revokeSession(req, ctx)),
    stepUp: (req, ctx) =>
      guard(() => stepUp(requirePrincipal(ctx), ctx.requestHeader, req, peerOf(ctx), auditContextOf(ctx))),
    ...apiKeyRpcs,
  };
}

/**
 * The client address the front-end put into the call, if any. Tolerates a
 * context without values: direct calls of the handler (tests, other
 * adapters) must fail on their merits, not on a missing context.
 */
function peerOf(ctx: HandlerContext): string | undefined {
  return (ctx.values as ContextValues | undefined)?.get(peerAddressKey);
}

/** The call's User-Agent header, if any (tolerating a context without headers, as {@link peerOf}). */
function userAgentOf(ctx: HandlerContext): string | undefined {
  return (ctx.requestHeader as Headers | undefined)?.get("user-agent") ?? undefined;
}

/** Who a token pair is issued to, for the session list. */
function clientOf(ctx: HandlerContext): SessionClient {
  return { peerAddress: peerOf(ctx), userAgent: userAgentOf(ctx) };
}

function verifyFailure(result: Extract<VerifyResult, { ok: false }>): ConnectError {
  if (result.reason === "KEYS_UNAVAILABLE") {
    return authError(MESSAGES.AUTH_BACKEND_UNAVAILABLE, Code.Unavailable, "AUTH_BACKEND_UNAVAILABLE", result.error);
  }
  return authError(MESSAGES[result.reason], Code.Unauthenticated, result.reason, result.error);
}

/**
 * Runs a handler body, turning what is not already a ConnectError into a
 * safe answer: a busy password hasher is RESOURCE_EXHAUSTED, anything else
 * (a database error, above all) is UNAVAILABLE with a generic message. The
 * original error is kept as `cause` for logs; Connect never sends it.
 */
async function guard<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof ConnectError) throw error;
    if (error instanceof PasswordBusyError) {
      throw authError(HASHER_BUSY_MESSAGE, Code.ResourceExhausted, "LOGIN_THROTTLED", error);
    }
    throw authError(MESSAGES.AUTH_BACKEND_UNAVAILABLE, Code.Unavailable, "AUTH_BACKEND_UNAVAILABLE", error);
  }
}

/**
 * Sets a new password and ends every session of the user: earlier access
 * and refresh tokens stop working at once (credentials-changed time plus
 * revocation of the sessions' tokens). Length and strength policy belong to
 * the caller.
 *
 * @returns the updated user row.
 * @throws {RangeError} for a password above 4096 UTF-8 bytes (nothing is written).
 * @throws {StoreError} `USER_NOT_FOUND`, `INVALID_INPUT` for an impossible id.
 * @throws {PasswordBusyError} when the hasher's queue is full.
 * @example
 * ```ts
 * await changePassword(database, user.id, newPassword, createPasswordHasher());
 * ```
 */
export async function changePassword(
  database: Database,
  userId: number,
  newPassword: string,
  hasher: PasswordHasher,
): Promise<PublicUser> {
  const hash = await hasher.hash(newPassword);
  return database.db.transaction(async (tx) => {
    const user = await setPasswordHash(tx, userId, hash);
    await revokeUserSessions(tx, userId, user.credentialsChangedAt);
    return user;
  });
}

/**
 * Deactivates a user and ends every session: its tokens stop working at
 * once, and stay dead if the account is reactivated later.
 *
 * @returns the updated user row.
 * @throws {StoreError} `USER_NOT_FOUND`.
 * @example
 * ```ts
 * await deactivateUser(database, "mallory");
 * ```
 */
export async function deactivateUser(database: Database, username: string): Promise<User> {
  return database.db.transaction(async (tx) => {
    const user = await setUserActive(tx, username, false);
    await revokeUserSessions(tx, user.id, user.credentialsChangedAt);
    return user;
  });
}

/** What {@link enableTotp} hands the user: show `uri` as a QR code, once. */
export interface TotpEnrollment {
  /** Base32 secret (160 bits); a credential, keep it out of logs. */
  readonly secret: string;
  /** `otpauth://totp/...` key URI for authenticator apps. */
  readonly uri: string;
}

/**
 * Gives a user a new TOTP secret and requires a code on every login from now
 * on. Replaces any earlier secret (and resets the replay guard).
 *
 * @param issuerName The issuer shown in authenticator apps. Default `"protoguard"`; no `:`.
 * @throws {StoreError} `USER_NOT_FOUND`.
 * @throws {RangeError} for an empty or `:`-containing issuer (nothing is written).
 * @example
 * ```ts
 * const { uri } = await enableTotp(database, "alice", "Example Shop");
 * console.log(uri); // render as a QR code
 * ```
 */
export async function enableTotp(
  database: Database,
  username: string,
  issuerName = "protoguard",
): Promise<TotpEnrollment> {
  const user = await findUserByUsername(database.db, username);
  if (user === undefined) throw new StoreError("USER_NOT_FOUND", `no user "${username}"`);
  const secret = generateTotpSecret();
  // Built before the write, so a bad issuer name leaves the account as it was.
  const uri = totpUri({ secret, accountName: user.username, issuer: issuerName });
  await storeTotpSecret(database.db, user.id, secret);
  return { secret, uri };
}
