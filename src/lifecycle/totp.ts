/**
 * Time-based one-time passwords (RFC 6238) as authenticator apps implement them: HMAC-SHA-1,
 * 6 digits, 30-second steps. Other parameters are deliberately not configurable: several
 * popular apps silently ignore them and show codes that never verify.
 *
 * Nothing here logs; codes and secrets must not reach logs anywhere else either.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { HOTP, Secret, TOTP } from "otpauth";

/** Length of a code. */
const TOTP_DIGITS = 6;
/** Step length in seconds. */
const TOTP_PERIOD_SECONDS = 30;
/** HMAC algorithm, as written in the key URI. */
const TOTP_ALGORITHM = "SHA1";
/** Size of secrets made by {@link generateTotpSecret}: 160 bits, RFC 4226's recommendation. */
const TOTP_SECRET_BYTES = 20;

// RFC 4226 section 4: the shared secret MUST be at least 128 bits.
const MIN_SECRET_BYTES = 16;
const MAX_WINDOW = 5;
const CODE_RE = /^[0-9]{6}$/;
// Unpadded or padded RFC 4648 base32, either case; no spaces (otpauth would silently drop them).
const BASE32_RE = /^[A-Za-z2-7]+=*$/;

/**
 * A new TOTP secret: 20 bytes (160 bits) from the CSPRNG, as 32 characters of unpadded
 * RFC 4648 base32. Store it per user (it is a credential: keep it out of logs and API
 * responses other than enrolment) and hand it to the user through {@link totpUri}.
 */
export function generateTotpSecret(): string {
  return new Secret({ buffer: new Uint8Array(randomBytes(TOTP_SECRET_BYTES)).buffer }).base32;
}

/**
 * The `otpauth://totp/<issuer>:<account>?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`
 * key URI that authenticator apps read from a QR code. `issuer` defaults to `"protoguard"`.
 * Throws a `TypeError` for an invalid secret and a `RangeError` for an empty account name or
 * an issuer containing `:` (the URI label format cannot carry it).
 */
export function totpUri({
  secret,
  accountName,
  issuer = "protoguard",
}: {
  secret: string;
  accountName: string;
  issuer?: string;
}): string {
  if (accountName.length === 0) throw new RangeError("accountName must not be empty");
  if (issuer.length === 0 || issuer.includes(":")) throw new RangeError("issuer must be non-empty without ':'");
  return new TOTP({
    issuer,
    label: accountName,
    secret: parseSecret(secret),
    algorithm: TOTP_ALGORITHM,
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_SECONDS,
  }).toString();
}

/** Outcome of {@link verifyTotp}. */
export type TotpVerification =
  | { readonly ok: true; readonly step: number }
  | { readonly ok: false; readonly reason: TotpFailure };

/**
 * Why a code was refused: `MALFORMED` (not exactly six ASCII digits), `INVALID` (no step in
 * the window produces it), `REPLAYED` (it matches, but only a step at or before the last
 * accepted one). Clients should see one generic failure; the distinction is for logs and
 * metrics.
 */
export type TotpFailure = "INVALID" | "REPLAYED" | "MALFORMED";

/** Arguments of {@link verifyTotp}. */
export interface VerifyTotpOptions {
  /** The user's base32 secret. */
  secret: string;
  /** What the user typed. */
  code: string;
  /** The step last accepted for this user, `null` if none yet. */
  lastAcceptedStep: number | null;
  /** Current time in milliseconds. Default `Date.now()`. */
  now?: number;
  /** Steps accepted either side of the current one, for clock drift. Default 1 (0..5). */
  window?: number;
}

/**
 * Checks a code against the current step ±`window` (default 1) and refuses replays.
 *
 * On success it returns the matched step. The caller must then record it atomically and
 * treat a lost race as a replay, since two requests with the same code can both get here:
 *
 * ```sql
 * UPDATE users SET otp_last_step = $step
 *  WHERE id = $id AND (otp_last_step IS NULL OR otp_last_step < $step)
 * -- 0 rows updated: the step was used concurrently; refuse the login.
 * ```
 *
 * Attempts must be throttled per account by the caller: six digits fall to a few hundred
 * thousand guesses. Comparisons are constant-time, and every step in the window is computed
 * whatever matches. Throws a `TypeError` if the stored secret is not base32 of at least 128
 * bits (a data problem, not a wrong code), and a `RangeError` for a bad `now` or `window`.
 *
 * @example
 * ```ts
 * const result = verifyTotp({ secret: user.totpSecret, code, lastAcceptedStep: user.totpLastStep });
 * if (!result.ok || !(await store.claimTotpStep(user.id, result.step))) throw unauthenticated();
 * ```
 */
export function verifyTotp({
  secret,
  code,
  lastAcceptedStep,
  now = Date.now(),
  window = 1,
}: VerifyTotpOptions): TotpVerification {
  if (!Number.isFinite(now)) throw new RangeError("now must be a finite number of milliseconds");
  if (!Number.isSafeInteger(window) || window < 0 || window > MAX_WINDOW) {
    throw new RangeError(`window must be an integer from 0 to ${MAX_WINDOW}`);
  }
  const key = parseSecret(secret);
  if (typeof code !== "string" || !CODE_RE.test(code)) return { ok: false, reason: "MALFORMED" };

  const given = Buffer.from(code, "ascii");
  const current = stepAt(now);
  let best: number | undefined;
  let replayed = false;
  for (let step = current - window; step <= current + window; step++) {
    if (step < 0) continue;
    const expected = Buffer.from(hotp(key, step), "ascii");
    if (!timingSafeEqual(given, expected)) continue;
    if (lastAcceptedStep !== null && step <= lastAcceptedStep) {
      replayed = true;
    } else {
      // A code can collide across steps (1 in a million); the highest step rules out the most
      // future replays.
      best = step;
    }
  }
  if (best !== undefined) return { ok: true, step: best };
  return { ok: false, reason: replayed ? "REPLAYED" : "INVALID" };
}

/**
 * The code for `secret` at `now` (milliseconds, default `Date.now()`): 6 digits, SHA-1, 30 s
 * step. For tests and the CLI; servers only verify.
 */
export function generateTotp(secret: string, now: number = Date.now()): string {
  if (!Number.isFinite(now)) throw new RangeError("now must be a finite number of milliseconds");
  return hotp(parseSecret(secret), stepAt(now));
}

/** The RFC 6238 time step containing `now` (milliseconds since the Unix epoch). */
export function totpStepAt(now: number = Date.now()): number {
  return stepAt(now);
}

function hotp(secret: Secret, step: number): string {
  return HOTP.generate({ secret, algorithm: TOTP_ALGORITHM, digits: TOTP_DIGITS, counter: step });
}

function stepAt(now: number): number {
  return Math.floor(now / (1000 * TOTP_PERIOD_SECONDS));
}

function parseSecret(secret: string): Secret {
  // The message names no characters: the secret must not end up in an error log.
  if (typeof secret !== "string" || !BASE32_RE.test(secret)) throw new TypeError("TOTP secret is not base32");
  const parsed = Secret.fromBase32(secret);
  if (parsed.bytes.length < MIN_SECRET_BYTES) throw new TypeError("TOTP secret is shorter than 128 bits");
  return parsed;
}
