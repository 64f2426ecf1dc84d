/**
 * The StepUp procedure of the AuthService: a signed-in user proves a credential again (the
 * password, a TOTP code, or both) and gets a fresh access token in the same session, whose
 * `auth_time` is now and whose `amr` lists what was entered. Rules with `max_auth_age` or
 * `require_totp` admit it where the older token was refused `STEP_UP_REQUIRED`.
 */
import { Code, type ConnectError } from "@connectrpc/connect";
import { authError } from "../connect/errors.js";
import { UNKNOWN_PEER } from "../connect/peer.js";
import { readBearer, type HeaderReader } from "../credential/bearer.js";
import { MESSAGES } from "../decide/verdict.js";
import type { AuditContext } from "../audit-event.js";
import type { Principal } from "../principal.js";
import { recordAuditEvent } from "../store/audit.js";
import type { Database } from "../store/database-handle.js";
import {
  clearLoginFailures,
  releaseLoginAttempt,
  reserveLoginAttempt,
  type ThrottlePolicy,
} from "../store/login-attempts.js";
import { findSessionOfAccess, stepUpSession } from "../store/refresh-tokens.js";
import { claimTotpStep } from "../store/totp.js";
import { findCredentials } from "../store/users.js";
import { AMR_OTP, AMR_PASSWORD } from "../token/auth-context.js";
import type { TokenIssuer } from "../token/issuer.js";
import type { TokenVerifier } from "../token/verifier.js";
import { addressKey } from "../util/ip-address.js";
import { DEFAULT_LOGIN_ADMISSION, type LoginAdmission } from "./login-admission.js";
import { MAX_PASSWORD_BYTES, PasswordBusyError, type PasswordHasher, type PasswordWorkOptions } from "./passwords.js";
import { authenticationClaims } from "./sessions.js";
import { verifyTotp } from "./totp.js";

/** What {@link createStepUp} needs, resolved once by the service (the same as Login's). */
export interface StepUpDependencies {
  readonly database: Database;
  readonly issuer: TokenIssuer;
  readonly verifier: TokenVerifier;
  readonly passwordHasher: PasswordHasher;
  readonly throttle: ThrottlePolicy;
  readonly admission: LoginAdmission | undefined;
  readonly now: () => number;
}

/** What the caller sent: `StepUpRequest`'s fields. */
export interface StepUpInput {
  readonly password: string;
  readonly otpCode: string;
}

const INVALID_CREDENTIALS_MESSAGE = "invalid credentials";
const STEP_UP_THROTTLED_MESSAGE = "too many failed attempts, try again later";
const RATE_LIMITED_MESSAGE = "too many login attempts from this address, try again later";

function invalidCredentials(why: string): ConnectError {
  return authError(INVALID_CREDENTIALS_MESSAGE, Code.Unauthenticated, "INVALID_CREDENTIALS", new Error(why));
}

/**
 * Builds the StepUp procedure. It resolves with the new access token or rejects with a
 * `ConnectError`: UNAUTHENTICATED `INVALID_CREDENTIALS` for every wrong, missing or replayed
 * credential, `TOKEN_REVOKED` when the session has ended (logged out, refresh family revoked),
 * RESOURCE_EXHAUSTED `LOGIN_THROTTLED` while the username is locked or the client address has
 * no attempts left. Database and hasher errors are rethrown as they are, for the service to map.
 *
 * - What is asked: a user with TOTP enabled must give a code (the password is then optional,
 *   as `StepUpRequest` says), so a step-up is never weaker than that user's login; a user
 *   without TOTP gives the password, and a code sent anyway is refused. `amr` is `pwd`, `otp`
 *   or both, whichever were given and checked.
 * - Failures count against the username's login throttle and the client address's Login
 *   admission, exactly as Login's do: StepUp is no side door for guessing passwords.
 * - Only protoguard's own access tokens step up: a trusted issuer's token is stepped up at
 *   that issuer (it maps `auth_time`/`amr` itself), and a token in no session (minted with
 *   `protoguard token`) is refused `TOKEN_REVOKED`.
 * - A success is audited (`session.stepped_up`, in its transaction) when `audit` is given.
 * - The new token joins the session of the token presented: the session's refresh token now
 *   carries the new `auth_time`/`amr` (later refreshes keep them, unchanged) and covers the new
 *   access token for logout and reuse revocation. The access tokens it supersedes (the one
 *   presented, and the one the session's refresh token was issued with) are revoked.
 */
export function createStepUp(deps: StepUpDependencies) {
  const { issuer, verifier, passwordHasher, throttle, admission, now } = deps;
  const db = deps.database.db;

  return async function stepUp(
    caller: Principal,
    headers: HeaderReader,
    input: StepUpInput,
    peer?: string,
    audit?: AuditContext,
  ): Promise<{ accessToken: string }> {
    const bearer = readBearer(headers);
    if (bearer.kind !== "token") throw authError(MESSAGES.TOKEN_MISSING, Code.Unauthenticated, "TOKEN_MISSING");
    const verified = await verifier.verify(bearer.token, "access");
    // The auth layer admitted the caller; a token this verifier does not know is a trusted
    // issuer's (or a gateway's claims), which step up at their own issuer.
    if (!verified.ok || verified.claims.userId !== caller.id) {
      throw authError(
        MESSAGES.TOKEN_INVALID,
        Code.Unauthenticated,
        "TOKEN_INVALID",
        new Error("not a protoguard token"),
      );
    }
    const presented = verified.claims;
    if (Buffer.byteLength(input.password, "utf8") > MAX_PASSWORD_BYTES) {
      throw invalidCredentials("password longer than the cap");
    }
    const client = peer === undefined || admission === undefined ? undefined : admission.keyOf(peer);
    if (client !== undefined && !admission!.take(client, now())) {
      throw authError(RATE_LIMITED_MESSAGE, Code.ResourceExhausted, "LOGIN_THROTTLED");
    }
    const work: PasswordWorkOptions = {
      fairnessKey:
        client ?? (peer === undefined ? UNKNOWN_PEER : addressKey(peer, DEFAULT_LOGIN_ADMISSION.ipv6PrefixLength)),
    };
    const at = new Date(now());
    // The throttle is keyed like Login's, by the stored (normalized) username.
    const username = caller.username;
    if ((await reserveLoginAttempt(db, username, at, throttle)) !== undefined) {
      throw authError(STEP_UP_THROTTLED_MESSAGE, Code.ResourceExhausted, "LOGIN_THROTTLED");
    }
    const user = await findCredentials(db, username);
    if (user === undefined || user.id !== caller.id || !user.isActive || user.kind === "service") {
      throw invalidCredentials("caller not an active person");
    }
    const amr: string[] = [];
    if (input.password !== "") {
      let ok = false;
      try {
        if (user.password === "" || user.passwordResetRequired) await passwordHasher.dummyVerify(input.password, work);
        else ok = (await passwordHasher.verify(input.password, user.password, work)).ok;
      } catch (error) {
        if (error instanceof PasswordBusyError) await releaseLoginAttempt(db, username, throttle);
        throw error;
      }
      if (!ok) throw invalidCredentials("wrong password");
      amr.push(AMR_PASSWORD);
    }
    let totpStep: number | undefined;
    if (user.totpEnabled) {
      if (input.otpCode === "") throw invalidCredentials("TOTP enabled and no code given");
      if (user.totpSecret === null) throw invalidCredentials("TOTP enabled without a secret");
      let result: ReturnType<typeof verifyTotp>;
      try {
        result = verifyTotp({
          secret: user.totpSecret,
          code: input.otpCode,
          lastAcceptedStep: user.totpLastStep,
          now: at.getTime(),
        });
      } catch {
        throw invalidCredentials("stored TOTP secret unusable");
      }
      if (!result.ok) throw invalidCredentials(`TOTP ${result.reason.toLowerCase()}`);
      totpStep = result.step;
      amr.push(AMR_OTP);
    } else if (input.otpCode !== "") {
      throw invalidCredentials("a code for a user without TOTP");
    }
    if (amr.length === 0) throw invalidCredentials("no credential given");

    const authentication = { authTime: Math.floor(at.getTime() / 1000), amr };
    const outcome = await db.transaction(async (tx) => {
      if (totpStep !== undefined && !(await claimTotpStep(tx, user.id, totpStep))) return "TOTP replayed concurrently";
      const session = await findSessionOfAccess(tx, presented.jti);
      if (session === undefined || session.userId !== user.id) return "TOKEN_REVOKED" as const;
      const access = await issuer.issueAccess(user.id, authenticationClaims(authentication));
      const recorded = await stepUpSession(
        tx,
        session.familyId,
        at,
        {
          accessJti: access.jti,
          accessExpiresAt: new Date(access.expiresAt * 1000),
          authTime: new Date(authentication.authTime * 1000),
          amr: amr.join(" "),
        },
        { jti: presented.jti, userId: user.id, expiresAt: new Date(presented.expiresAt * 1000) },
      );
      if (!recorded) return "TOKEN_REVOKED" as const;
      await clearLoginFailures(tx, username);
      if (audit !== undefined) {
        await recordAuditEvent(tx, {
          type: "session.stepped_up",
          subject: `session:${session.familyId}`,
          detail: { familyId: session.familyId, userId: user.id, amr: amr.join(" ") },
          context: audit,
        });
      }
      return access;
    });
    if (outcome === "TOKEN_REVOKED") throw authError(MESSAGES.TOKEN_REVOKED, Code.Unauthenticated, "TOKEN_REVOKED");
    if (typeof outcome === "string") throw invalidCredentials(outcome);
    if (client !== undefined) admission!.giveBack(client, now());
    return { accessToken: outcome.token };
  };
}
