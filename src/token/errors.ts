/**
 * Error classes of the token module. Each carries a stable string `code` (jose style) so callers,
 * logs and tests key off the code, never off the message.
 */
import { ProtoguardError } from "../errors.js";

/** Why a key configuration was refused. Stable API: add, never rename. */
export type KeyConfigErrorCode =
  /** `createKeyring([])`: nothing to sign or verify with. */
  | "NO_KEYS"
  /** An algorithm other than HS256, RS256 or ES256. */
  | "UNSUPPORTED_ALG"
  /** An RS256/ES256 entry without `privateKey` or `publicKey`, or HS256 without `secret`. */
  | "KEY_MISSING"
  /** The key material could not be parsed (bad PEM, bad JWK, wrong object type). */
  | "KEY_INVALID"
  /** HS256 secret shorter than 32 bytes, or RSA modulus shorter than 2048 bits. */
  | "KEY_TOO_SHORT"
  /** The key's type does not fit the algorithm (an EC key for RS256, a PEM as an HMAC secret...). */
  | "KEY_TYPE_MISMATCH"
  /** An ES256 key that is not on P-256. */
  | "KEY_CURVE_MISMATCH"
  /** `privateKey` and `publicKey` were both given but do not belong together. */
  | "KEY_PAIR_MISMATCH"
  /** A configured `kid` that is empty, too long or not printable ASCII. */
  | "KID_INVALID"
  /** Two keys with the same `kid`. */
  | "DUPLICATE_KID"
  /** The same key material configured twice. */
  | "DUPLICATE_KEY"
  /** An issuer was asked for but the keyring holds only public keys. */
  | "NO_SIGNING_KEY"
  /** `loadKeyFile` found neither a PEM (PKCS8 / SPKI) nor a JWK. */
  | "KEY_FILE_INVALID";

/** Thrown while building a keyring or issuer: a configuration mistake, fix it and restart. */
export class KeyConfigError extends ProtoguardError<KeyConfigErrorCode> {}

/**
 * Why the verifier refused a token, in more detail than the client-facing reason. Goes to logs
 * only (as `VerifyResult.error`); clients see only the coarse `VerifyResult.reason`.
 */
export type TokenRejectionCode =
  /** Not three base64url segments, or above the size cap. */
  | "TOKEN_STRUCTURE"
  /**
   * A segment is not canonical unpadded base64url: its last character has
   * spare bits set, or its length is 1 modulo 4. Decoders ignore both, so
   * such a string is a respelled twin of another token; client reason
   * `TOKEN_MALFORMED`, as for `TOKEN_STRUCTURE`.
   */
  | "NOT_CANONICAL"
  /** Header parameters we refuse (`b64`, a non-string `kid`, ...). */
  | "HEADER_INVALID"
  /** No configured (or published) key has this `kid`. */
  | "KID_UNKNOWN"
  /** No `kid` while several keys could have signed the token. */
  | "KID_REQUIRED"
  /** The header's `alg` is not the algorithm bound to the selected key. */
  | "ALG_MISMATCH"
  /** The signature does not match the selected key (found by the synchronous pre-check). */
  | "SIGNATURE_INVALID"
  /** The payload is not a JSON object. */
  | "CLAIMS_NOT_OBJECT"
  /** A required claim is absent. */
  | "CLAIM_MISSING"
  /** A claim has the wrong type or an out-of-range value (e.g. `exp: 1e400`). */
  | "CLAIM_INVALID"
  | "ISSUER_MISMATCH"
  | "AUDIENCE_MISMATCH"
  /** `nbf` is in the future beyond the leeway. */
  | "NOT_YET_VALID"
  /** `iat` is in the future beyond the leeway. */
  | "ISSUED_IN_FUTURE"
  /** `exp - iat` is above the configured maximum lifetime. */
  | "LIFETIME_EXCEEDED"
  /** `token_type` is the other kind (refresh where access belongs or vice versa). */
  | "WRONG_TYPE"
  /** `exp` plus leeway has passed. */
  | "EXPIRED"
  /** The remote JWKS could not be fetched or parsed. */
  | "KEYS_UNAVAILABLE";

/** A token refused by protoguard's own checks (jose's errors pass through unchanged). */
export class TokenRejectedError extends ProtoguardError<TokenRejectionCode> {
  /** The claim at fault, when there is one. */
  readonly claim: string | undefined;
  /** The configured bound the token broke, for `LIFETIME_EXCEEDED`: `maxLifetimeSeconds` of its type. */
  readonly bound: number | undefined;

  constructor(
    code: TokenRejectionCode,
    message: string,
    options?: { cause?: unknown; claim?: string; bound?: number },
  ) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.claim = options?.claim;
    this.bound = options?.bound;
  }
}
