/**
 * The refresh reuse grace window: a refresh token presented again shortly after it was rotated
 * (two tabs refreshing at once, a retried request whose answer was lost) gets the same
 * successor pair as the first presentation, instead of revoking the family.
 *
 * The successor pair is kept on the old token's row sealed with AES-256-GCM under a key derived
 * (HKDF-SHA-256) from the old refresh token itself, which the database never holds (it keeps a
 * SHA-256 of it, from which the key cannot be derived). So only a holder of the old token can
 * open it, and that holder could have asked for the pair anyway: inside the window a stolen
 * copy gains the legitimate holder's pair, never a new family. The seal is dropped when the
 * window has passed.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import type { DrizzleDb } from "../store/database-handle.js";
import { purgeSealedSuccessors, sealSuccessor, type ConsumeResult } from "../store/refresh-tokens.js";
import type { TokenIssuer } from "../token/issuer.js";
import { issueSession, type IssuedSession, type SessionAuthentication, type SessionClient } from "./sessions.js";

/** What the first rotation answered: the pair every presentation inside the window gets. */
export interface SealedPair {
  readonly accessToken: string;
  readonly refreshToken: string;
}

/** Default grace window in seconds: long enough for two tabs or one retry, short enough to matter little. */
export const DEFAULT_REFRESH_REUSE_GRACE_SECONDS = 5;
/** The largest grace window accepted: past a minute the window is a second session, not a race. */
export const MAX_REFRESH_REUSE_GRACE_SECONDS = 60;

const INFO = Buffer.from("protoguard refresh reuse grace v1");
const IV_BYTES = 12;
const TAG_BYTES = 16;

function keyFor(presentedToken: string, jti: string): Buffer {
  // The jti as salt binds the key to the row; the token is the secret input.
  return Buffer.from(hkdfSync("sha256", Buffer.from(presentedToken, "utf8"), Buffer.from(jti, "utf8"), INFO, 32));
}

/**
 * Seals `pair` under a key derived from the refresh token it succeeds (`presentedToken`, whose
 * verified `jti` is `jti`): base64url of IV, ciphertext and tag. The jti is authenticated data.
 */
export function sealSuccessorPair(presentedToken: string, jti: string, pair: SealedPair): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", keyFor(presentedToken, jti), iv);
  cipher.setAAD(Buffer.from(jti, "utf8"));
  const body = Buffer.concat([
    cipher.update(JSON.stringify({ a: pair.accessToken, r: pair.refreshToken }), "utf8"),
    cipher.final(),
  ]);
  return Buffer.concat([iv, body, cipher.getAuthTag()]).toString("base64url");
}

/**
 * Opens what {@link sealSuccessorPair} sealed for this token, or undefined when it does not
 * open (another token, a damaged value): the caller then treats the presentation as reuse.
 */
export function openSuccessorPair(presentedToken: string, jti: string, sealed: string): SealedPair | undefined {
  try {
    const bytes = Buffer.from(sealed, "base64url");
    if (bytes.length <= IV_BYTES + TAG_BYTES) return undefined;
    const decipher = createDecipheriv("aes-256-gcm", keyFor(presentedToken, jti), bytes.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(jti, "utf8"));
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
    const text = Buffer.concat([
      decipher.update(bytes.subarray(IV_BYTES, bytes.length - TAG_BYTES)),
      decipher.final(),
    ]).toString("utf8");
    const value = JSON.parse(text) as { a?: unknown; r?: unknown };
    if (typeof value.a !== "string" || typeof value.r !== "string") return undefined;
    return { accessToken: value.a, refreshToken: value.r };
  } catch {
    return undefined;
  }
}

/** Validates a grace window option: an integer in 0..{@link MAX_REFRESH_REUSE_GRACE_SECONDS}. */
export function refreshReuseGraceSeconds(value: number | undefined): number {
  const seconds = value ?? DEFAULT_REFRESH_REUSE_GRACE_SECONDS;
  if (!Number.isSafeInteger(seconds) || seconds < 0 || seconds > MAX_REFRESH_REUSE_GRACE_SECONDS) {
    throw new RangeError(`refreshReuseGraceSeconds must be an integer in 0..${MAX_REFRESH_REUSE_GRACE_SECONDS}`);
  }
  return seconds;
}

// Sealed successors past the window are dropped at most this often, by the Refresh that finds
// a purge due, at most this many per statement (a full batch: the next Refresh purges again).
const PURGE_INTERVAL_MS = 60_000;
const PURGE_BATCH = 1000;

/** Built by {@link createRefreshRotation}: what Refresh does with a consumed token. */
export interface RefreshRotation {
  /** The grace window in seconds (0: off), for `consumeRefreshToken`. */
  readonly graceSeconds: number;
  /**
   * Issues the successor pair of a just-consumed token in its family, carrying the family's
   * `auth_time`/`amr` and recording `client` for the session list, and seals it on the old row
   * when the window is on. Run in the rotating transaction.
   */
  rotate(
    tx: DrizzleDb,
    consumed: Extract<ConsumeResult, { status: "ok" }>,
    presentedToken: string,
    jti: string,
    client?: SessionClient,
  ): Promise<IssuedSession>;
  /** The first answer to a token presented again inside the window, or undefined when it does not open. */
  replay(
    consumed: Extract<ConsumeResult, { status: "grace" }>,
    presentedToken: string,
    jti: string,
  ): SealedPair | undefined;
  /** Drops sealed successors past the window when a purge is due; never throws. */
  purgeIfDue(db: DrizzleDb, now: number): Promise<void>;
}

/**
 * The refresh rotation of one AuthService, with its reuse grace window of `graceSeconds`
 * (validated: 0..{@link MAX_REFRESH_REUSE_GRACE_SECONDS}; default
 * {@link DEFAULT_REFRESH_REUSE_GRACE_SECONDS}).
 */
export function createRefreshRotation(issuer: TokenIssuer, graceSeconds?: number): RefreshRotation {
  const grace = refreshReuseGraceSeconds(graceSeconds);
  let nextPurgeAt = Number.NEGATIVE_INFINITY;
  return Object.freeze({
    graceSeconds: grace,
    async rotate(
      tx: DrizzleDb,
      consumed: Extract<ConsumeResult, { status: "ok" }>,
      presentedToken: string,
      jti: string,
      client: SessionClient = {},
    ) {
      const authentication: SessionAuthentication | undefined =
        consumed.authTime === null || consumed.amr === null
          ? undefined
          : { authTime: Math.floor(consumed.authTime.getTime() / 1000), amr: consumed.amr.split(" ") };
      const session = await issueSession(tx, issuer, consumed.userId, consumed.familyId, client, authentication);
      if (grace > 0) await sealSuccessor(tx, jti, sealSuccessorPair(presentedToken, jti, session));
      return session;
    },
    replay: (consumed: Extract<ConsumeResult, { status: "grace" }>, presentedToken: string, jti: string) =>
      openSuccessorPair(presentedToken, jti, consumed.sealed),
    async purgeIfDue(db: DrizzleDb, now: number) {
      if (now < nextPurgeAt) return;
      nextPurgeAt = now + PURGE_INTERVAL_MS;
      try {
        // Rows still sealed past the window are those whose window ended (and, with grace 0,
        // those sealed before the window was turned off).
        if ((await purgeSealedSuccessors(db, new Date(now - grace * 1000), PURGE_BATCH)) === PURGE_BATCH) {
          nextPurgeAt = now;
        }
      } catch {
        // Housekeeping only: the next due purge tries again.
      }
    },
  });
}
