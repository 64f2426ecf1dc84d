import { isCompactJws, MAX_TOKEN_LENGTH } from "../token/compact.js";
import { looksLikeApiKey, parseApiKey, type ApiKeyCredential } from "./api-key.js";

/**
 * Largest `authorization` value looked at: the same 8 KiB as the largest token
 * (gRPC's suggested limit for all metadata). A longer value is an attack or a
 * mistake, and is refused before any regular expression touches it.
 */
export const MAX_AUTHORIZATION_LENGTH = MAX_TOKEN_LENGTH;

/**
 * The one thing the decision reads from a request: a header by name. A
 * fetch `Headers` fits, and so does a thin view over Node's
 * `req.headers`, which saves building a `Headers` per request.
 */
export type HeaderReader = Pick<Headers, "get">;

/** What the `authorization` header holds, before any cryptography. */
export type BearerCredential =
  | { readonly kind: "none" }
  | { readonly kind: "malformed" }
  | { readonly kind: "token"; readonly token: string }
  /** `pgk_<id>_<secret>`: an API key, told apart from a JWT by its shape alone. */
  | { readonly kind: "api_key"; readonly key: ApiKeyCredential };

const NONE: BearerCredential = Object.freeze({ kind: "none" });
const MALFORMED: BearerCredential = Object.freeze({ kind: "malformed" });

// Scheme is case-insensitive (RFC 7235); exactly one space; then the compact
// JWS shape the verifier also checks (no commas, so a header sent twice never matches).
const SCHEME = /^[Bb][Ee][Aa][Rr][Ee][Rr] /;

/**
 * Reads the bearer token from request headers.
 *
 * @example
 * ```ts
 * readBearer(new Headers({ authorization: "Bearer a.b.c" })); // { kind: "token", token: "a.b.c" }
 * readBearer(new Headers()); // { kind: "none" }
 * ```
 */
export function readBearer(headers: HeaderReader): BearerCredential {
  const value = headers.get("authorization");
  return value === null ? NONE : parseAuthorization(value);
}

/** Parses one `authorization` value; see {@link readBearer}. */
export function parseAuthorization(value: string): BearerCredential {
  if (value.length === 0 || value.length > MAX_AUTHORIZATION_LENGTH) return MALFORMED;
  // The scheme, then the very shape check the verifier makes (`isCompactJws`), so that the
  // verifier's own check of the same string is a comparison, not a second scan.
  if (value.length < 8 || value.charCodeAt(6) !== 32 || !SCHEME.test(value)) return MALFORMED;
  const token = value.slice(7);
  if (isCompactJws(token)) return { kind: "token", token };
  // A key has no dots, so it is never a compact JWS: the two shapes cannot be confused.
  if (looksLikeApiKey(token)) {
    const key = parseApiKey(token);
    return key === undefined ? MALFORMED : { kind: "api_key", key };
  }
  return MALFORMED;
}
