/**
 * What a verified access token says about its caller, before any database
 * lookup: protoguard's own claims (a local user id) or a trusted issuer's
 * subject; and what a verifier answers.
 */
import type { UnauthenticatedReason } from "./reasons.js";

/**
 * A caller identified by a trusted external issuer: the identity a resolver maps to a local
 * user through the `external_identities` table.
 */
export interface ExternalSubject {
  /** The issuer's exact `iss`. */
  readonly issuer: string;
  /** The value of the issuer's `subject_claim` (a string; an integer claim is written in decimal). */
  readonly subject: string;
  /**
   * protoguard group names the token maps onto for this call (after the issuer's `group_map`),
   * deduplicated. Their permissions are added to the user's own; no membership is written.
   */
  readonly groups: readonly string[];
  /** Whether an unlinked subject gets a local user on first sight (the issuer's `provision`). */
  readonly provision: boolean;
  /** The `username_claim` value, for provisioning; absent when the token has none. */
  readonly username?: string;
  /** The `email_claim` value, for provisioning; absent when the token has none. */
  readonly email?: string;
}

/** The claims a trusted issuer's verified access token yields. Times are seconds since the epoch. */
export interface ExternalAccessClaims {
  readonly external: ExternalSubject;
  /**
   * The token's `jti` when it has a usable one, else an id derived from the token itself
   * (`sha256:` and 40 base64url characters): what caches and revocation are keyed by.
   */
  readonly jti: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
  readonly tokenType: "access";
  /** The issuer's `auth_time` claim (seconds), when it has a numeric one: what `max_auth_age` reads. */
  readonly authTime?: number;
  /** The issuer's `amr` claim (RFC 8176), when it is a list of strings: what `require_totp` reads. */
  readonly amr?: readonly string[];
  /** The whole verified payload, shallowly frozen. */
  readonly payload: Readonly<Record<string, unknown>>;
}

/** The claims of a verified token naming a local user: what the decision needs of it. */
export interface LocalAccessClaims {
  readonly userId: number;
  readonly jti: string;
  readonly issuedAt: number;
  readonly expiresAt?: number;
  /** When the holder last entered a credential (`auth_time`, seconds), when the token says. */
  readonly authTime?: number;
  /** How the holder authenticated (`amr`, RFC 8176: `pwd`, `otp`), when the token says. */
  readonly amr?: readonly string[];
  /** Never set: tells these apart from {@link ExternalAccessClaims}. */
  readonly external?: undefined;
}

/**
 * What an access-token verifier (`AccessTokenVerifier`) answers: the claims the decision needs (a local user id,
 * or a trusted issuer's {@link ExternalSubject} for an identity resolver to map), or why
 * the token is refused.
 */
export type AccessTokenResult =
  | { ok: true; claims: LocalAccessClaims | ExternalAccessClaims }
  | { ok: false; reason: UnauthenticatedReason | "KEYS_UNAVAILABLE"; error: unknown };
