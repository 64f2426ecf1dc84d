/**
 * Which wire protocol a call speaks, from its content type: what the
 * pre-filter needs to answer a refusal the way the caller reads it.
 */

/** The wire protocol of a request, from its content type. */
export type Protocol =
  | { kind: "grpc"; contentType: string }
  | { kind: "grpc-web"; contentType: string }
  | { kind: "connect-unary" }
  | { kind: "connect-stream"; contentType: string };

// The same content types Connect's handlers accept (gRPC-Web text is not
// served by Connect either, so it passes through to get Connect's answer).
const GRPC = /^application\/grpc(?:\+(?:proto|json))?$/i;
const GRPC_WEB = /^application\/grpc-web(?:\+(?:proto|json))?$/i;
const CONNECT_UNARY = /^application\/(?:proto|json)(?:;\s*charset=utf-?8)?$/i;
const CONNECT_STREAM = /^application\/connect\+(?:proto|json)$/i;

/** The protocol of a content type Connect's handlers accept, else undefined (the call passes through). */
export function detectProtocol(contentType: string | undefined): Protocol | undefined {
  if (contentType === undefined) return undefined;
  if (GRPC.test(contentType)) return { kind: "grpc", contentType };
  if (GRPC_WEB.test(contentType)) return { kind: "grpc-web", contentType };
  if (CONNECT_UNARY.test(contentType)) return { kind: "connect-unary" };
  if (CONNECT_STREAM.test(contentType)) return { kind: "connect-stream", contentType };
  return undefined;
}
