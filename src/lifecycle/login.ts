/**
 * The Login procedure of the AuthService: username, password and (once
 * enabled) a TOTP code in, a session out. Every way of failing looks the same
 * from outside; attempts are admitted per client address in memory, then
 * throttled per username in the database.
 */
import { Code, type ConnectError } from "@connectrpc/connect";
import { and, eq } from "drizzle-orm";
import type { Database } from "../store/database-handle.js";
import { authError } from "../connect/errors.js";
import { UNKNOWN_PEER } from "../connect/peer.js";
import { addressKey } from "../util/ip-address.js";
import {
  clearLoginFailures,
  purgeLoginAttempts,
  releaseLoginAttempt,
  reserveLoginAttempt,
  type ThrottlePolicy,
} from "../store/login-attempts.js";
import { claimTotpStep } from "../store/totp.js";
import { users, type User } from "../store/schema.js";
import { findCredentials, normalizeUsername } from "../store/users.js";
import type { TokenIssuer } from "../token/issuer.js";
import { DEFAULT_LOGIN_ADMISSION, type LoginAdmission } from "./login-admission.js";
import { MAX_PASSWORD_BYTES, PasswordBusyError, type PasswordHasher, type PasswordWorkOptions } from "./passwords.js";
import { issueSession, type IssuedSession } from "./sessions.js";
import { verifyTotp } from "./totp.js";
import type { AuditContext } from "../audit-event.js";
import { createAdmissionAudit, recordLoginRefusal, recordLoginSuccess, USERNAME_LOCKED } from "./audit.js";

/** Longest username Login looks up, in code points: the `users.username` column's size. */
const MAX_LOGIN_USERNAME_LENGTH = 150;

/** The one message of every credential failure. */
const INVALID_CREDENTIALS_MESSAGE = "invalid credentials";
/** The message of a login refused until the imported account gets a new password. */
const PASSWORD_RESET_REQUIRED_MESSAGE = "password reset required";
/** The message of a throttled login. */
const LOGIN_THROTTLED_MESSAGE = "too many failed attempts, try again later";
/** The message of a login refused because its client address has no attempts left. */
const LOGIN_RATE_LIMITED_MESSAGE = "too many login attempts from this address, try again later";

// Expired throttle rows are purged at most this often, by the attempt that
// finds a purge due, and at most this many per statement; a full batch
// means a backlog, and the next attempt purges again.
const PURGE_INTERVAL_MS = 60_000;
const PURGE_BATCH = 1000;

// A lone surrogate cannot be stored as UTF-8 and NUL cannot be stored in a
// PostgreSQL text value: either would make the lookup a database error
// (UNAVAILABLE) instead of the plain failure it is. No user can have them.
const LONE_SURROGATE = /\p{Cs}/u;

function storable(text: string): boolean {
  return !text.includes("\u0000") && !LONE_SURROGATE.test(text);
}

/**
 * The failure of every refused credential check. `why` is for server logs
 * only (Connect never serializes `cause`); it never holds a secret.
 */
function invalidCredentials(why: string): ConnectError {
  return authError(INVALID_CREDENTIALS_MESSAGE, Code.Unauthenticated, "INVALID_CREDENTIALS", new Error(why));
}

/** What a successful login yields. */
export interface LoginResult {
  readonly session: IssuedSession;
  readonly user: Pick<User, "id" | "username" | "email">;
}

/** What {@link createLogin} needs, resolved once by the service. */
export interface LoginDependencies {
  readonly database: Database;
  readonly issuer: TokenIssuer;
  readonly passwordHasher: PasswordHasher;
  readonly throttle: ThrottlePolicy;
  /** Per-client admission; undefined admits every client. */
  readonly admission: LoginAdmission | undefined;
  readonly now: () => number;
}

/**
 * Builds the login procedure. The returned function resolves with a new
 * session or rejects with a `ConnectError`: UNAUTHENTICATED
 * `INVALID_CREDENTIALS` for every credential problem, RESOURCE_EXHAUSTED
 * `LOGIN_THROTTLED` while the username is locked or the client address has
 * no attempts left. Database and hasher errors are rethrown as they are, for
 * the service to map.
 *
 * `peer` is the client address ({@link UNKNOWN_PEER} when the front-end
 * could not tell it), or undefined when the front-end supplies none (the
 * in-memory transport): such calls skip the per-client admission and share
 * one fairness key in the hasher. `peer` and `userAgent` (the request's
 * User-Agent header) are recorded with the session for the session list.
 *
 * Order of work, and why:
 * 1. Inputs over the caps fail before any I/O or hashing (no account can
 *    have such a username; a huge password must not reach the KDF), and
 *    before anything is counted. The username is taken in NFKC form.
 * 2. The client address must have an attempt left: a flood from one address
 *    is refused here, in memory, before it writes a row or waits for the
 *    hasher. Expired throttle rows are purged when a purge is due.
 * 3. The attempt is counted before the password is checked, atomically with
 *    the lock check, so concurrent guesses cannot all slip past the lock.
 *    Unknown usernames are counted exactly like real ones. If the hasher
 *    then refuses for being busy, the count is taken back.
 * 4. The password is checked for every username: a missing user (or one
 *    without a usable password) costs a dummy verification. The hasher
 *    queues each client address fairly against the others.
 * 5. The TOTP code is checked only after the password, and its step is
 *    claimed in the same transaction that issues the session.
 * 6. The last-login write is conditional on the password hash and the
 *    active flag read in step 4, so a password change or deactivation racing
 *    with this login wins, and a rehash never overwrites a newer password.
 *    A successful login gives its attempt back to the client address.
 */
export function createLogin(deps: LoginDependencies) {
  const { issuer, passwordHasher, throttle, admission, now } = deps;
  const db = deps.database.db;
  let nextPurgeAt = Number.NEGATIVE_INFINITY;
  const admissionAudit = createAdmissionAudit({ db, now });

  async function purgeIfDue(at: Date): Promise<void> {
    if (at.getTime() < nextPurgeAt) return;
    nextPurgeAt = at.getTime() + PURGE_INTERVAL_MS;
    try {
      if ((await purgeLoginAttempts(db, at, throttle, PURGE_BATCH)) === PURGE_BATCH) nextPurgeAt = at.getTime();
    } catch {
      // Housekeeping only: the statements that follow report a broken
      // database to this caller, and the next due purge tries again.
    }
  }

  // Every outcome is audited: a success in the transaction that issues the session, a refusal
  // on its own (an admission refusal counted per address and minute, without a write).
  return async function login(
    rawUsername: string,
    password: string,
    otpCode: string,
    peer?: string,
    audit: AuditContext = { actor: { kind: "anonymous" } },
  ): Promise<LoginResult> {
    try {
      return await attempt(rawUsername, password, otpCode, peer, audit);
    } catch (error) {
      await recordLoginRefusal(db, rawUsername, error, audit);
      throw error;
    }
  };

  async function attempt(
    rawUsername: string,
    password: string,
    otpCode: string,
    peer: string | undefined,
    audit: AuditContext,
  ): Promise<LoginResult> {
    // The raw length is bounded before normalizing, which can expand text.
    if (rawUsername.length === 0 || rawUsername.length > 2 * MAX_LOGIN_USERNAME_LENGTH) {
      throw invalidCredentials("username outside the accepted form");
    }
    const username = normalizeUsername(rawUsername);
    if ([...username].length > MAX_LOGIN_USERNAME_LENGTH || !storable(username)) {
      throw invalidCredentials("username outside the accepted form");
    }
    if (Buffer.byteLength(password, "utf8") > MAX_PASSWORD_BYTES) {
      throw invalidCredentials("password longer than the cap");
    }
    const client = peer === undefined || admission === undefined ? undefined : admission.keyOf(peer);
    if (client !== undefined && !admission!.take(client, now())) {
      admissionAudit.refused(client, audit);
      throw authError(LOGIN_RATE_LIMITED_MESSAGE, Code.ResourceExhausted, "LOGIN_THROTTLED");
    }
    const work: PasswordWorkOptions = {
      fairnessKey:
        client ?? (peer === undefined ? UNKNOWN_PEER : addressKey(peer, DEFAULT_LOGIN_ADMISSION.ipv6PrefixLength)),
    };

    const at = new Date(now());
    await purgeIfDue(at);
    const lockedUntil = await reserveLoginAttempt(db, username, at, throttle);
    if (lockedUntil !== undefined) {
      throw authError(LOGIN_THROTTLED_MESSAGE, Code.ResourceExhausted, "LOGIN_THROTTLED", new Error(USERNAME_LOCKED));
    }

    const user = await findCredentials(db, username);
    let verification: Awaited<ReturnType<PasswordHasher["verify"]>>;
    try {
      // A service account never logs in with a password, whatever its row
      // holds: it takes the unknown user's path, dummy hash included.
      if (user === undefined || user.password === "" || user.kind === "service") {
        await passwordHasher.dummyVerify(password, work);
        throw invalidCredentials(
          user === undefined ? "unknown user" : user.kind === "service" ? "service account" : "no usable password",
        );
      }
      if (user.passwordResetRequired && user.isActive) {
        // Imported with a hash no hasher here verifies: say so, rather than
        // refuse every password as wrong and lock the person out unawares.
        await passwordHasher.dummyVerify(password, work);
        throw authError(PASSWORD_RESET_REQUIRED_MESSAGE, Code.Unauthenticated, "PASSWORD_RESET_REQUIRED");
      }
      verification = await passwordHasher.verify(password, user.password, work);
    } catch (error) {
      if (error instanceof PasswordBusyError) await releaseLoginAttempt(db, username, throttle);
      throw error;
    }
    if (!verification.ok) throw invalidCredentials("wrong password");
    if (!user.isActive) throw invalidCredentials("inactive user");

    let totpStep: number | undefined;
    if (user.totpEnabled) {
      if (user.totpSecret === null) throw invalidCredentials("TOTP enabled without a secret");
      let result: ReturnType<typeof verifyTotp>;
      try {
        result = verifyTotp({
          secret: user.totpSecret,
          code: otpCode,
          lastAcceptedStep: user.totpLastStep,
          now: at.getTime(),
        });
      } catch {
        // A corrupt stored secret is a data problem, but the answer stays closed and uniform.
        throw invalidCredentials("stored TOTP secret unusable");
      }
      if (!result.ok) throw invalidCredentials(`TOTP ${result.reason.toLowerCase()}`);
      totpStep = result.step;
    }

    // Hash before the transaction: it takes a KDF's time, which must not be
    // spent holding row locks. Busy is not worth failing a good login for;
    // the upgrade happens on a later one.
    let rehashed: string | undefined;
    if (verification.needsRehash) {
      rehashed = await passwordHasher.hash(password, work).catch((error: unknown) => {
        if (error instanceof PasswordBusyError) return undefined;
        throw error;
      });
    }

    const session = await db.transaction(async (tx) => {
      if (totpStep !== undefined && !(await claimTotpStep(tx, user.id, totpStep))) return "TOTP replayed concurrently";
      const updated = await tx
        .update(users)
        .set(rehashed === undefined ? { lastLogin: at } : { lastLogin: at, password: rehashed })
        .where(and(eq(users.id, user.id), eq(users.password, user.password), eq(users.isActive, true)))
        .returning({ id: users.id });
      if (updated.length === 0) return "password changed or account deactivated during login";
      await clearLoginFailures(tx, username);
      const issued = await issueSession(tx, issuer, user.id, undefined, {
        peerAddress: peer,
        userAgent: audit.userAgent,
      });
      await recordLoginSuccess(tx, user, issued.familyId, audit);
      return issued;
    });
    if (typeof session === "string") throw invalidCredentials(session);
    if (client !== undefined) admission!.giveBack(client, now());
    return { session, user: { id: user.id, username: user.username, email: user.email } };
  }
}
