/**
 * The request id of a call, for correlating the audit log with proxy and
 * application logs: the `x-request-id` a front proxy (or the client) sent,
 * when it is a plausible id, or a new random one.
 */
import { randomUUID } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { createContextKey, createContextValues, type ContextValues } from "@connectrpc/connect";

/** The header read for an incoming request id. */
export const REQUEST_ID_HEADER = "x-request-id";

/**
 * Context value holding the call's request id. `undefined` when the
 * front-end sets none (Connect's in-memory transport, an adapter without
 * {@link requestIdContextValues}). `startServer` sets it for every call.
 */
export const requestIdKey = createContextKey<string | undefined>(undefined, {
  description: "protoguard request id",
});

// What an id may look like: UUIDs, nginx's $request_id (hex), AWS trace ids
// (`Root=1-…`), W3C-ish ids. Anything else (long, with spaces or control
// characters) is replaced, so a client cannot write arbitrary text into logs.
const PLAUSIBLE_ID = /^[A-Za-z0-9._:=/+-]{1,128}$/;

/**
 * `contextValues` for `connectNodeAdapter` that sets {@link requestIdKey}
 * (on `values` when given): the request's `x-request-id` when it is 1–128
 * characters of `[A-Za-z0-9._:=/+-]`, otherwise a random UUID.
 *
 * @example
 * ```ts
 * connectNodeAdapter({ routes, contextValues: (req) => requestIdContextValues(req) });
 * ```
 */
export function requestIdContextValues(
  req: { readonly headers: IncomingHttpHeaders },
  values: ContextValues = createContextValues(),
): ContextValues {
  const sent = req.headers[REQUEST_ID_HEADER];
  const candidate = Array.isArray(sent) ? sent[0] : sent;
  return values.set(requestIdKey, candidate !== undefined && PLAUSIBLE_ID.test(candidate) ? candidate : randomUUID());
}
