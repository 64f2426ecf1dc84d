/**
 * Adopting djangorestframework-simplejwt refresh tokens in `AuthService.Refresh`:
 * a refresh token simplejwt issued (and protoguard never saw) is verified with
 * Django's key, checked against simplejwt's blacklist and protoguard's own
 * records, and becomes the first, already used, token of a new protoguard
 * family; the caller gets a protoguard pair and rotates as usual from then on.
 * The same simplejwt token presented again is reuse: the family is revoked.
 */
import { randomBytes } from "node:crypto";
import { Code, type ConnectError } from "@connectrpc/connect";
import { eq } from "drizzle-orm";
import { authError } from "../connect/errors.js";
import { MESSAGES } from "../decide/verdict.js";
import type { Database } from "../store/database-handle.js";
import { consumeRefreshToken, findRefreshFamily } from "../store/refresh-tokens.js";
import { users } from "../store/schema.js";
import { recordAdoptedRefreshToken, type SimplejwtBlacklist } from "../store/simplejwt-tokens.js";
import type { TokenIssuer } from "../token/issuer.js";
import { KeyConfigError } from "../token/errors.js";
import {
  createKeyring,
  type AsymmetricAlgorithm,
  type AsymmetricKeyInput,
  type KeyConfig,
  type Keyring,
} from "../token/keys.js";
import type { RemoteJwksOptions } from "../token/jwks.js";
import { createTokenVerifier, type TokenVerifier } from "../token/verifier.js";
import { hashRefreshToken, issueSession, type IssuedSession, type SessionClient } from "./sessions.js";

/** Options of {@link createSimplejwtAdoption}. One of `signingKey`, `verifyingKey` and `jwksUrl` is required. */
export interface SimplejwtAdoptionOptions {
  /**
   * simplejwt's `SIGNING_KEY` (Django's `SECRET_KEY` unless set), for its
   * default HS256; at least 32 bytes. Its UTF-8 bytes are the HMAC key, as in PyJWT.
   */
  signingKey?: string;
  /**
   * simplejwt's `VERIFYING_KEY` for its RS256/ES256 setups: the public key
   * (PEM, JWK, KeyObject) and the `ALGORITHM`. simplejwt writes no `kid`, so
   * this, not a JWKS, is how its asymmetric tokens verify. Default none.
   */
  verifyingKey?: { alg: AsymmetricAlgorithm; publicKey: AsymmetricKeyInput };
  /**
   * A JWKS with simplejwt's verifying keys (its `JWK_URL`). Only tokens that
   * carry a `kid` verify this way; simplejwt adds none unless told to. Default none.
   */
  jwksUrl?: string;
  /** How `jwksUrl` is fetched; each field defaults as in `createTokenVerifier`. */
  jwksOptions?: RemoteJwksOptions;
  /** simplejwt's `USER_ID_CLAIM`. Default `"user_id"`. */
  userIdClaim?: string;
  /** simplejwt's `ISSUER`, required exactly when set. Default: not checked. */
  issuer?: string;
  /** simplejwt's `AUDIENCE`, required exactly when set. Default: none (a token naming one is refused). */
  audience?: string;
  /** Clock skew tolerated on `exp`/`iat` (simplejwt's `LEEWAY`), 0..60 s. Default 30. */
  leewaySeconds?: number;
  /** Upper bound of `exp - iat` (simplejwt's `REFRESH_TOKEN_LIFETIME`). Default: none, `exp` alone decides. */
  maxLifetimeSeconds?: number;
  /**
   * simplejwt's blacklist in the Django database (`openSimplejwtBlacklist`).
   * Default: none, and then a token blacklisted in Django is adopted unless
   * protoguard knows of it otherwise.
   */
  blacklist?: SimplejwtBlacklist;
  /** Clock in milliseconds for verifying. Default `Date.now`. */
  now?: () => number;
}

/** What the AuthService hands {@link SimplejwtAdoption.refresh}. */
export interface AdoptionContext {
  readonly database: Database;
  readonly issuer: TokenIssuer;
  /** protoguard's own refresh-token verifier. */
  readonly verifier: TokenVerifier;
  readonly now: () => number;
  /** Who is refreshing (peer address, User-Agent), recorded with the new session. Default: unknown. */
  readonly client?: SessionClient;
}

/** Built by {@link createSimplejwtAdoption}; pass it as `createAuthService({ simplejwt })`. */
export interface SimplejwtAdoption {
  /**
   * Resolves with a new protoguard session when `token` is a simplejwt refresh
   * token, with undefined when it is not one (protoguard's own path then
   * handles it), and rejects with the ConnectError to answer when it is one
   * that cannot be adopted: `TOKEN_EXPIRED`, `TOKEN_REVOKED` (blacklisted in
   * Django, reused, older than a credentials change), `USER_INACTIVE`.
   */
  refresh(token: string, context: AdoptionContext): Promise<IssuedSession | undefined>;
}

/**
 * Creates the adoption of simplejwt refresh tokens. Throws a `KeyConfigError`
 * for a signing key under 32 bytes, a `TypeError` without a key or JWKS, a
 * `RangeError` for out-of-range claim options.
 *
 * @example
 * ```ts
 * const simplejwt = createSimplejwtAdoption({
 *   signingKey: process.env.DJANGO_SECRET_KEY,
 *   blacklist: openSimplejwtBlacklist(djangoDatabaseUrl),
 * });
 * const service = createAuthService({ database, issuer, verifier, simplejwt });
 * ```
 */
export function createSimplejwtAdoption(options: SimplejwtAdoptionOptions): SimplejwtAdoption {
  if (options.signingKey === undefined && options.verifyingKey === undefined && options.jwksUrl === undefined) {
    throw new TypeError("createSimplejwtAdoption needs a signingKey, a verifyingKey or a jwksUrl");
  }
  if (options.signingKey !== undefined && options.verifyingKey !== undefined) {
    throw new TypeError("createSimplejwtAdoption takes a signingKey (HS256) or a verifyingKey (RS256/ES256), not both");
  }
  if (options.signingKey !== undefined && Buffer.byteLength(options.signingKey, "utf8") < 32) {
    throw new KeyConfigError("KEY_TOO_SHORT", "the simplejwt signing key must be at least 32 bytes (HS256)");
  }
  // Importing the key is asynchronous; the service is built synchronously.
  const verifierReady = (async () => {
    const key: KeyConfig | undefined =
      options.signingKey !== undefined
        ? { alg: "HS256", secret: options.signingKey }
        : options.verifyingKey !== undefined
          ? { alg: options.verifyingKey.alg, publicKey: options.verifyingKey.publicKey }
          : undefined;
    const keyring = key === undefined ? undefined : await createKeyring([key]);
    return buildVerifier(options, keyring);
  })();
  verifierReady.catch(() => {});
  const { blacklist } = options;

  return {
    async refresh(token, { database, issuer, verifier: own, now, client }) {
      const verifier = await verifierReady;
      const result = await verifier.verify(token, "refresh");

      if (!result.ok) {
        // Only a verified signature makes it simplejwt's: anything else is
        // left to protoguard's own path and its answer.
        if (result.reason === "TOKEN_EXPIRED") throw refused("TOKEN_EXPIRED", result.error);
        if (result.reason === "KEYS_UNAVAILABLE") {
          throw authError(
            MESSAGES.AUTH_BACKEND_UNAVAILABLE,
            Code.Unavailable,
            "AUTH_BACKEND_UNAVAILABLE",
            result.error,
          );
        }
        return undefined;
      }
      const claims = result.claims;
      const db = database.db;
      const known = (await findRefreshFamily(db, claims.jti)) !== undefined;
      // One key shared by both sides: protoguard's own tokens verify here too.
      if (known && (await own.verify(token, "refresh")).ok) return undefined;
      if (!known && blacklist !== undefined && (await blacklist.isBlacklisted(claims.jti))) {
        throw refused("TOKEN_REVOKED");
      }
      const at = new Date(now());
      // Refusals are returned so the transaction commits a reuse's revocation.
      const outcome = await db.transaction(async (tx) => {
        const reuse = async () => {
          await consumeRefreshToken(tx, claims.jti, at);
          return "TOKEN_REVOKED" as const;
        };
        if (known) return reuse();
        const [user] = await tx
          .select({ isActive: users.isActive, kind: users.kind, credentialsChangedAt: users.credentialsChangedAt })
          .from(users)
          .where(eq(users.id, claims.userId));
        if (user === undefined || !user.isActive || user.kind !== "user") return "USER_INACTIVE" as const;
        if (Math.round(claims.issuedAt * 1000) < user.credentialsChangedAt.getTime()) return "TOKEN_REVOKED" as const;
        const familyId = randomBytes(16).toString("hex");
        const recorded = await recordAdoptedRefreshToken(tx, {
          jti: claims.jti,
          familyId,
          userId: claims.userId,
          tokenHash: hashRefreshToken(token),
          issuedAt: new Date(claims.issuedAt * 1000),
          expiresAt: new Date(claims.expiresAt * 1000),
          usedAt: at,
        });
        if (!recorded) return reuse();
        return issueSession(tx, issuer, claims.userId, familyId, client);
      });
      if (typeof outcome === "string") throw refused(outcome);
      return outcome;
    },
  };
}

function buildVerifier(options: SimplejwtAdoptionOptions, keyring: Keyring | undefined): TokenVerifier {
  return createTokenVerifier({
    ...(keyring !== undefined && { keyring }),
    ...(options.jwksUrl !== undefined && { jwksUrl: options.jwksUrl, jwksOptions: options.jwksOptions }),
    userIdClaim: options.userIdClaim,
    jwksUserIdClaim: options.userIdClaim,
    issuer: options.issuer,
    audience: options.audience,
    leewaySeconds: options.leewaySeconds,
    maxLifetimeSeconds: options.maxLifetimeSeconds ?? Infinity,
    cache: { maxEntries: 0 },
    now: options.now,
  });
}

function refused(reason: "TOKEN_EXPIRED" | "TOKEN_REVOKED" | "USER_INACTIVE", cause?: unknown): ConnectError {
  return authError(MESSAGES[reason], Code.Unauthenticated, reason, cause);
}
