/**
 * The Login procedure of the AuthService: username, password and (once
 * enabled) a TOTP code in, a session out. Every way of failing looks the same
 * from outside, and attempts are throttled per username in the database.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { and, eq } from "drizzle-orm";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { ERROR_DOMAIN, type LoginFailureReason } from "../reasons.js";
import type { Database } from "../store/database.js";
import { clearLoginFailures, reserveLoginAttempt, type ThrottlePolicy } from "../store/login-attempts.js";
import { claimOtpStep } from "../store/otp.js";
import { users, type User } from "../store/schema.js";
import { findUserByUsername } from "../store/users.js";
import type { TokenIssuer } from "../token/issuer.js";
import { MAX_PASSWORD_BYTES, PasswordBusyError, type PasswordHasher } from "./passwords.js";
import { issueSession, type IssuedSession } from "./sessions.js";
import { verifyTotp } from "./totp.js";

/** Longest username Login looks up, in code points: the `users.username` column's size. */
export const MAX_LOGIN_USERNAME_LENGTH = 150;

/** The one message of every credential failure. */
export const INVALID_CREDENTIALS_MESSAGE = "invalid credentials";
/** The message of a throttled login. */
export const LOGIN_THROTTLED_MESSAGE = "too many failed attempts, try again later";

// A lone surrogate cannot be stored as UTF-8 and NUL cannot be stored in a
// PostgreSQL text value: either would make the lookup a database error
// (UNAVAILABLE) instead of the plain failure it is. No user can have them.
const LONE_SURROGATE = /\p{Cs}/u;

function storable(text: string): boolean {
  return !text.includes("\u0000") && !LONE_SURROGATE.test(text);
}

/**
 * A `ConnectError` with a `google.rpc.ErrorInfo` detail carrying a login
 * reason in protoguard's domain, built like the auth layer's errors so
 * `authErrorReason` reads both. `cause` stays server-side.
 */
export function loginError(
  message: string,
  code: Code.Unauthenticated | Code.ResourceExhausted,
  reason: LoginFailureReason,
  cause?: unknown,
): ConnectError {
  return new ConnectError(
    message,
    code,
    undefined,
    [{ desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason, domain: ERROR_DOMAIN }) }],
    cause,
  );
}

/**
 * The failure of every refused credential check. `why` is for server logs
 * only (Connect never serializes `cause`); it never holds a secret.
 */
function invalidCredentials(why: string): ConnectError {
  return loginError(INVALID_CREDENTIALS_MESSAGE, Code.Unauthenticated, "INVALID_CREDENTIALS", new Error(why));
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
  readonly now: () => number;
}

/**
 * Builds the login procedure. The returned function resolves with a new
 * session or rejects with a `ConnectError`: UNAUTHENTICATED
 * `INVALID_CREDENTIALS` for every credential problem, RESOURCE_EXHAUSTED
 * `LOGIN_THROTTLED` while the username is locked. Database and hasher errors
 * are rethrown as they are, for the service to map.
 *
 * Order of work, and why:
 * 1. Inputs over the caps fail before any I/O or hashing (no account can
 *    have such a username; a huge password must not reach the KDF).
 * 2. The attempt is counted before the password is checked, atomically with
 *    the lock check, so concurrent guesses cannot all slip past the lock.
 *    Unknown usernames are counted exactly like real ones.
 * 3. The password is checked for every username: a missing user (or one
 *    without a usable password) costs a dummy verification.
 * 4. The TOTP code is checked only after the password, and its step is
 *    claimed in the same transaction that issues the session.
 * 5. The last-login write is conditional on the password hash and the
 *    active flag read in step 3, so a password change or deactivation racing
 *    with this login wins, and a rehash never overwrites a newer password.
 */
export function createLogin(deps: LoginDependencies) {
  const { issuer, passwordHasher, throttle, now } = deps;
  const db = deps.database.db;

  return async function login(username: string, password: string, otpCode: string): Promise<LoginResult> {
    if (
      username.length === 0 ||
      username.length > 2 * MAX_LOGIN_USERNAME_LENGTH ||
      [...username].length > MAX_LOGIN_USERNAME_LENGTH ||
      !storable(username)
    ) {
      throw invalidCredentials("username outside the accepted form");
    }
    const at = new Date(now());
    const lockedUntil = await reserveLoginAttempt(db, username, at, throttle);
    if (lockedUntil !== undefined) {
      throw loginError(LOGIN_THROTTLED_MESSAGE, Code.ResourceExhausted, "LOGIN_THROTTLED");
    }
    if (Buffer.byteLength(password, "utf8") > MAX_PASSWORD_BYTES) {
      throw invalidCredentials("password longer than the cap");
    }

    const user = await findUserByUsername(db, username);
    if (user === undefined || user.password === "") {
      await passwordHasher.dummyVerify(password);
      throw invalidCredentials(user === undefined ? "unknown user" : "no usable password");
    }
    const verification = await passwordHasher.verify(password, user.password);
    if (!verification.ok) throw invalidCredentials("wrong password");
    if (!user.isActive) throw invalidCredentials("inactive user");

    let otpStep: number | undefined;
    if (user.otpEnabled) {
      if (user.otpSecret === null) throw invalidCredentials("TOTP enabled without a secret");
      let result: ReturnType<typeof verifyTotp>;
      try {
        result = verifyTotp({ secret: user.otpSecret, code: otpCode, lastAcceptedStep: user.otpLastStep, now: at.getTime() });
      } catch {
        // A corrupt stored secret is a data problem, but the answer stays closed and uniform.
        throw invalidCredentials("stored TOTP secret unusable");
      }
      if (!result.ok) throw invalidCredentials(`TOTP ${result.reason.toLowerCase()}`);
      otpStep = result.step;
    }

    // Hash before the transaction: it takes a KDF's time, which must not be
    // spent holding row locks. Busy is not worth failing a good login for;
    // the upgrade happens on a later one.
    let rehashed: string | undefined;
    if (verification.needsRehash) {
      rehashed = await passwordHasher.hash(password).catch((error: unknown) => {
        if (error instanceof PasswordBusyError) return undefined;
        throw error;
      });
    }

    const session = await db.transaction(async (tx) => {
      if (otpStep !== undefined && !(await claimOtpStep(tx, user.id, otpStep))) return "TOTP replayed concurrently";
      const updated = await tx
        .update(users)
        .set(rehashed === undefined ? { lastLogin: at } : { lastLogin: at, password: rehashed })
        .where(and(eq(users.id, user.id), eq(users.password, user.password), eq(users.isActive, true)))
        .returning({ id: users.id });
      if (updated.length === 0) return "password changed or account deactivated during login";
      await clearLoginFailures(tx, username);
      return issueSession(tx, issuer, user.id);
    });
    if (typeof session === "string") throw invalidCredentials(session);
    return { session, user: { id: user.id, username: user.username, email: user.email } };
  };
}
