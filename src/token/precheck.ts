/**
 * The synchronous signature pre-check. node:crypto checks a signature synchronously and several
 * times faster than WebCrypto's promise, so a token whose signature is provably wrong for the
 * local key it names is refused without a promise: a flood of forgeries stays cheap. A signature
 * it proves right (a local key named by the header, the key's own alg, no `crit` or `b64`) is
 * the same check jose's `compactVerify` would make again through WebCrypto, about ten times
 * dearer on Node 20, so the verifier reads such a token's claims without it. Without a remote
 * JWKS, a header no local key accepts is refused here from the header alone (never reaching
 * jose, HMAC or the payload); with one, unknown kids are jose's (and the JWKS's) to judge, as
 * are headers with `crit`.
 */
import { createHmac, KeyObject, timingSafeEqual, verify as cryptoVerify } from "node:crypto";
import { errors } from "jose";
import { LruMap } from "../util/lru.js";
import { TokenRejectedError, type TokenRejectionCode } from "./errors.js";
import type { TokenAlgorithm, VerificationKey } from "./keys.js";

/** Header segments remembered with the check they select; one issuer's tokens share one. */
const HEADER_MEMORY = 256;
/**
 * Longest header segment remembered. A real one (`alg`, `kid`, `typ`) is well under 200
 * characters; a forger's long random headers are judged (and refused) but never kept, so a
 * flood of 8 KiB headers holds no memory.
 */
const MAX_REMEMBERED_HEADER = 512;

interface SignatureCheck {
  readonly alg: TokenAlgorithm;
  /** RS256 and ES256: the cheap claim refusals run before the (dear) signature check. */
  readonly asymmetric: boolean;
  verify(signingInput: string, signature: Buffer): boolean;
}

/** A header refused by the pre-check itself: what the key resolver or jose would say, without them. */
export interface HeaderRefusal {
  readonly refused: Error;
}

/**
 * What the pre-check found: the signature does not match (`forged`) or does (`valid`) the local
 * key the header names; a {@link HeaderRefusal} when the header alone refuses the token (unknown
 * `kid` with no JWKS to ask, an alg that is not the key's, `crit`, `b64`, a header that is not a
 * JSON object); a {@link TokenRejectedError} returned (not thrown) by `beforeAsymmetric`;
 * undefined when the token is not its to judge.
 */
export type PrecheckResult = "forged" | "valid" | HeaderRefusal | TokenRejectedError | undefined;

// Shared: a refused header costs no allocation, and no stack capture. Each is the error the key
// resolver or jose gives for the same header, so logs read the same whichever refused it.
const refusal = (code: TokenRejectionCode, message: string): HeaderRefusal =>
  Object.freeze({ refused: Object.freeze(new TokenRejectedError(code, message)) });
const HEADER_NOT_JSON = Object.freeze({
  refused: Object.freeze(new errors.JWSInvalid("JWS Protected Header is invalid")),
});
const HEADER_NOT_OBJECT = Object.freeze({
  refused: Object.freeze(new errors.JWSInvalid("JWS Protected Header incorrect type")),
});
const ALG_INVALID = Object.freeze({
  refused: Object.freeze(new errors.JWSInvalid('JWS "alg" (Algorithm) Header Parameter missing or invalid')),
});
const ALG_NOT_ALLOWED = Object.freeze({
  refused: Object.freeze(new errors.JOSEAlgNotAllowed('"alg" (Algorithm) Header Parameter value not allowed')),
});
const KID_NOT_STRING = refusal("HEADER_INVALID", "kid must be a string");
const B64 = refusal("HEADER_INVALID", "the b64 header is not accepted");
const KID_UNKNOWN = refusal("KID_UNKNOWN", "no configured key has this kid");
const KID_REQUIRED = refusal("KID_REQUIRED", "a kid is required when several keys are configured");
const ALG_MISMATCH = refusal("ALG_MISMATCH", "the token's alg is not the key's alg");

/** What a header segment selects. */
type HeaderVerdict = SignatureCheck | HeaderRefusal | null;

/**
 * Builds the pre-check for the local keys. The returned function takes a string that already
 * has the compact JWS shape and canonical segments. When the token's header names a local key
 * (by `kid`, or `onlyLocalKey` for a token without one) with the key's own alg and has neither
 * `crit` nor `b64`, it checks the signature with that key: `forged` or `valid`; for an
 * asymmetric key, `beforeAsymmetric` first gets the still unverified payload segment and may
 * return a refusal (expired, wrong issuer or audience), which is returned without the
 * signature check. Without a remote JWKS (`localOnly`), a header that no local key can accept
 * is refused here, so such a token never reaches jose, HMAC or the payload. Everything else
 * (unknown kid with a JWKS, `crit` or `b64` with a JWKS, ...) is not its to judge: undefined,
 * and jose decides.
 */
export function createForgeryCheck(
  localKeys: ReadonlyMap<string, VerificationKey>,
  onlyLocalKey: VerificationKey | undefined,
  localOnly = false,
  beforeAsymmetric?: (encodedPayload: string) => TokenRejectedError | undefined,
): (token: string) => PrecheckResult {
  const checks = new Map<string, SignatureCheck>();
  for (const [kid, key] of localKeys) checks.set(kid, signatureCheck(key));
  const onlyCheck = onlyLocalKey === undefined ? undefined : checks.get(onlyLocalKey.kid);
  const algorithms = new Set<string>([...checks.values()].map((check) => check.alg));

  // In jose's order (header, crit, alg, allow-list), then the key resolver's (b64, kid, alg
  // binding), so each header gets the refusal it would get from them.
  function judgeHeader(encodedHeader: string): HeaderVerdict {
    let header: unknown;
    try {
      header = JSON.parse(Buffer.from(encodedHeader, "base64url").toString("utf8"));
    } catch {
      return localOnly ? HEADER_NOT_JSON : null; // jose reports it
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) {
      return localOnly ? HEADER_NOT_OBJECT : null;
    }
    // Rare, and jose's to judge in every detail: such a header is never remembered as a check.
    if (Object.hasOwn(header, "crit")) return null;
    const { alg, kid } = header as { alg?: unknown; kid?: unknown };
    if (typeof alg !== "string" || alg.length === 0) return localOnly ? ALG_INVALID : null;
    if (!algorithms.has(alg)) return localOnly ? ALG_NOT_ALLOWED : null;
    if (Object.hasOwn(header, "b64")) return localOnly ? B64 : null;
    let check: SignatureCheck | undefined;
    if (Object.hasOwn(header, "kid")) {
      if (typeof kid !== "string") return localOnly ? KID_NOT_STRING : null;
      check = checks.get(kid);
      if (check === undefined) return localOnly ? KID_UNKNOWN : null;
    } else {
      check = onlyCheck;
      if (check === undefined) return localOnly ? KID_REQUIRED : null;
    }
    // The key's own algorithm decides (which defeats alg confusion), as in the key resolver.
    if (check.alg !== alg) return localOnly ? ALG_MISMATCH : null;
    return check;
  }

  // Tokens of one issuer share their header segment, so what it selects is
  // remembered per segment (bounded, short segments only) instead of decoding
  // JSON per call.
  const checkByHeader = new LruMap<string, HeaderVerdict>(HEADER_MEMORY);
  function checkFor(encodedHeader: string): HeaderVerdict {
    const known = checkByHeader.get(encodedHeader);
    if (known !== undefined) return known;
    const verdict = judgeHeader(encodedHeader);
    // A flat copy: a slice of the token would keep the whole token alive.
    if (encodedHeader.length <= MAX_REMEMBERED_HEADER) checkByHeader.set(flat(encodedHeader), verdict);
    return verdict;
  }

  return function precheck(token: string): PrecheckResult {
    const firstDot = token.indexOf(".");
    const lastDot = token.lastIndexOf(".");
    const check = checkFor(token.slice(0, firstDot));
    if (check === null) return undefined;
    if (!("verify" in check)) return check;
    if (check.asymmetric && beforeAsymmetric !== undefined) {
      const refused = beforeAsymmetric(token.slice(firstDot + 1, lastDot));
      if (refused !== undefined) return refused;
    }
    return check.verify(token.slice(0, lastDot), Buffer.from(token.slice(lastDot + 1), "base64url"))
      ? "valid"
      : "forged";
  };
}

/** A copy of `text` that does not share the memory of the string it was sliced from. */
function flat(text: string): string {
  return Buffer.from(text, "latin1").toString("latin1");
}

function signatureCheck(key: VerificationKey): SignatureCheck {
  const keyObject = key.nodeKey ?? KeyObject.from(key.key);
  switch (key.alg) {
    case "HS256":
      return {
        alg: key.alg,
        asymmetric: false,
        verify(input, signature) {
          const expected = createHmac("sha256", keyObject).update(input).digest();
          return signature.length === expected.length && timingSafeEqual(signature, expected);
        },
      };
    case "RS256":
      return {
        alg: key.alg,
        asymmetric: true,
        verify: (input, signature) => cryptoVerify("sha256", Buffer.from(input), keyObject, signature),
      };
    case "ES256":
      return {
        alg: key.alg,
        asymmetric: true,
        verify: (input, signature) =>
          // JWS carries r||s (64 bytes), not DER.
          signature.length === 64 &&
          cryptoVerify("sha256", Buffer.from(input), { key: keyObject, dsaEncoding: "ieee-p1363" }, signature),
      };
  }
}
