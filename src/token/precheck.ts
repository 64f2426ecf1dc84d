/**
 * The synchronous signature pre-check. node:crypto checks a signature synchronously and several
 * times faster than WebCrypto's promise, so a token whose signature is provably wrong for the
 * local key it names is refused without a promise: a flood of forgeries stays cheap. A signature
 * it proves right (a local key named by the header, the key's own alg, no `crit` or `b64`) is
 * the same check jose's `compactVerify` would make again through WebCrypto, about ten times
 * dearer on Node 20, so the verifier reads such a token's claims without it. Every other token
 * (remote keys, unknown kids, unusual headers) is jose's to judge.
 */
import { createHmac, KeyObject, timingSafeEqual, verify as cryptoVerify } from "node:crypto";
import { LruMap } from "../util/lru.js";
import type { TokenAlgorithm, VerificationKey } from "./keys.js";

/** Header segments remembered with the check they select; one issuer's tokens share one. */
const HEADER_MEMORY = 256;

interface SignatureCheck {
  readonly alg: TokenAlgorithm;
  verify(signingInput: string, signature: Buffer): boolean;
}

/**
 * What the pre-check found: the signature does not match (`forged`) or does (`valid`) the local
 * key the header names; undefined when the token is not its to judge.
 */
export type PrecheckResult = "forged" | "valid" | undefined;

/**
 * Builds the pre-check for the local keys. The returned function takes a string that already
 * has the compact JWS shape and canonical segments. When the token's header names a local key
 * (by `kid`, or `onlyLocalKey` for a token without one) with the key's own alg and has neither
 * `crit` nor `b64`, it checks the signature with that key: `forged` or `valid`. Everything else
 * (unknown kid, remote keys, `crit`, `b64`, a header that is not a JSON object) is not its to
 * judge: undefined, and jose decides.
 */
export function createForgeryCheck(
  localKeys: ReadonlyMap<string, VerificationKey>,
  onlyLocalKey: VerificationKey | undefined,
): (token: string) => PrecheckResult {
  const checks = new Map<string, SignatureCheck>();
  for (const [kid, key] of localKeys) checks.set(kid, signatureCheck(key));
  const onlyCheck = onlyLocalKey === undefined ? undefined : checks.get(onlyLocalKey.kid);

  // Tokens of one issuer share their header segment, so the check it selects
  // is remembered per segment (bounded) instead of decoding JSON per call.
  const checkByHeader = new LruMap<string, SignatureCheck | null>(HEADER_MEMORY);
  function checkFor(encodedHeader: string): SignatureCheck | undefined {
    const known = checkByHeader.get(encodedHeader);
    if (known !== undefined) return known ?? undefined;
    let check: SignatureCheck | undefined;
    try {
      const header: unknown = JSON.parse(Buffer.from(encodedHeader, "base64url").toString("utf8"));
      if (typeof header === "object" && header !== null) {
        const { alg, kid } = header as { alg?: unknown; kid?: unknown };
        check = Object.hasOwn(header, "kid") ? (typeof kid === "string" ? checks.get(kid) : undefined) : onlyCheck;
        // Not ours to judge early: jose (and the key resolver) decide those.
        if (check?.alg !== alg || Object.hasOwn(header, "crit") || Object.hasOwn(header, "b64")) check = undefined;
      }
    } catch {
      check = undefined; // jose reports it
    }
    checkByHeader.set(encodedHeader, check ?? null);
    return check;
  }

  return function precheck(token: string): PrecheckResult {
    const lastDot = token.lastIndexOf(".");
    const check = checkFor(token.slice(0, token.indexOf(".")));
    if (check === undefined) return undefined;
    return check.verify(token.slice(0, lastDot), Buffer.from(token.slice(lastDot + 1), "base64url"))
      ? "valid"
      : "forged";
  };
}

function signatureCheck(key: VerificationKey): SignatureCheck {
  const keyObject = KeyObject.from(key.key);
  switch (key.alg) {
    case "HS256":
      return {
        alg: key.alg,
        verify(input, signature) {
          const expected = createHmac("sha256", keyObject).update(input).digest();
          return signature.length === expected.length && timingSafeEqual(signature, expected);
        },
      };
    case "RS256":
      return {
        alg: key.alg,
        verify: (input, signature) => cryptoVerify("sha256", Buffer.from(input), keyObject, signature),
      };
    case "ES256":
      return {
        alg: key.alg,
        verify: (input, signature) =>
          // JWS carries r||s (64 bytes), not DER.
          signature.length === 64 &&
          cryptoVerify("sha256", Buffer.from(input), { key: keyObject, dsaEncoding: "ieee-p1363" }, signature),
      };
  }
}
