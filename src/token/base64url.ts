/**
 * Canonical unpadded base64url (RFC 7515 §2, RFC 4648 §3.5): the only
 * spelling of a JWS segment protoguard accepts.
 *
 * A base64url string whose length is 2 or 3 modulo 4 ends in a character
 * that carries 4 or 2 bits beyond the last byte. Decoders (Node's Buffer,
 * jose, atob) ignore those bits, so without this check every token has up to
 * four spellings that verify as the same token, and more for a segment
 * whose length is a multiple of 4: Node's decoder drops one extra character.
 * Anything keyed by the token string (caches, a hash in a table, a log line)
 * would then see several tokens where there is one.
 */

/** 6-bit value of each base64url character, -1 for every other code unit below 128. */
const VALUES: Int8Array = (() => {
  const table = new Int8Array(128).fill(-1);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (let i = 0; i < alphabet.length; i++) table[alphabet.charCodeAt(i)] = i;
  return table;
})();

/**
 * True when `text.slice(start, end)`, already known to hold only base64url
 * characters (the verifier's structural regex has checked them), is
 * canonical: a length that is not 1 modulo 4 and zero spare bits in the last
 * character — exactly the strings that re-encoding their own decoded bytes
 * reproduces. O(1).
 */
export function hasCanonicalEnding(text: string, start: number, end: number): boolean {
  switch ((end - start) % 4) {
    case 0:
      return true;
    case 1:
      // 6 bits: not even one byte. Decoders silently drop the character.
      return false;
    case 2:
      // 12 bits encode one byte: the low 4 bits must be zero.
      return (VALUES[text.charCodeAt(end - 1)]! & 0x0f) === 0;
    default:
      // 18 bits encode two bytes: the low 2 bits must be zero.
      return (VALUES[text.charCodeAt(end - 1)]! & 0x03) === 0;
  }
}

/**
 * The canonical spelling of a compact JWS whose segments are base64url,
 * canonical or not: each segment decoded and re-encoded. Returns `undefined`
 * for anything that is not three non-empty base64url segments. Used to find
 * the token a respelled twin stands for (so presenting a twin of a refresh
 * token can be treated as what it is: a replay), never to accept a twin.
 */
export function canonicalCompactJws(token: string): string | undefined {
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  const canonical: string[] = [];
  for (const part of parts) {
    if (part.length === 0) return undefined;
    for (let i = 0; i < part.length; i++) {
      const c = part.charCodeAt(i);
      if (c >= 128 || VALUES[c]! < 0) return undefined;
    }
    const reencoded = Buffer.from(part, "base64url").toString("base64url");
    if (reencoded.length === 0) return undefined;
    canonical.push(reencoded);
  }
  return canonical.join(".");
}
