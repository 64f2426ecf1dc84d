/**
 * Repeated `authorization` headers, which Node would otherwise hide: every
 * front-end (the listener and the pre-filter) makes them visible.
 */
import type * as http from "node:http";
import type * as http2 from "node:http2";

/**
 * Node keeps only the first of several `authorization` headers in
 * `headers` (HTTP/1.1 and HTTP/2 alike), so everything reading it,
 * Connect included, would serve the first of two credentials: a proxy that
 * appends its own header without removing the client's would be bypassed.
 * This puts every value back, joined with ", " as a fetch `Headers` joins
 * them, which no bearer credential can match, so the call is refused as
 * TOKEN_MALFORMED in its own protocol by whatever decides it.
 *
 * @returns whether the header was repeated
 */
export function exposeRepeatedAuthorization(
  headers: http.IncomingHttpHeaders | http2.IncomingHttpHeaders,
  rawHeaders: readonly string[] | undefined,
): boolean {
  const values = authorizationValues(rawHeaders);
  if (values.length < 2) return false;
  headers.authorization = values.join(", ");
  return true;
}

/** Every `authorization` value of a raw header list (name, value, name, value...), in order. */
function authorizationValues(rawHeaders: readonly string[] | undefined): string[] {
  const values: string[] = [];
  if (rawHeaders === undefined) return values;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    // Length first: most names are not 13 characters long.
    if (name.length === 13 && name.toLowerCase() === "authorization") values.push(rawHeaders[i + 1]!);
  }
  return values;
}
