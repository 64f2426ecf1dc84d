/**
 * The pre-filter's refusals as bytes: status, headers and body in the
 * caller's protocol, built once per protocol and reason.
 */
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  createEndStreamSerialization,
  endStreamFlag,
  errorToJsonBytes,
} from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import { verdictToConnectError } from "../../connect/errors.js";
import type { Deny, Unavailable } from "../../decide/verdict.js";
import type { Protocol } from "./protocol.js";

/** A ready refusal: status, headers and body, built once per protocol and reason. */
export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array | undefined;
}

const endStreamSerialization = createEndStreamSerialization(undefined);

/** Most answers kept per pre-filter. */
const MAX_CACHED_ANSWERS = 512;

/** The refusal for `verdict` in `protocol`, from `cache` or built and kept there. */
export function answerFor(cache: Map<string, Answer>, protocol: Protocol, verdict: Deny | Unavailable): Answer {
  const contentType = protocol.kind === "connect-unary" ? "" : protocol.contentType.toLowerCase();
  const key = `${protocol.kind}\u0000${contentType}\u0000${verdict.reason}\u0000${verdict.message}`;
  let answer = cache.get(key);
  if (answer === undefined) {
    answer = buildAnswer(protocol, verdict);
    // Keys are bounded by protocols × reasons × messages; permission
    // messages name a permission from the rules, so the set is finite. The
    // cap holds whatever messages a deny carries (an application's own, say):
    // past it, answers are built per call and never kept.
    if (cache.size < MAX_CACHED_ANSWERS) cache.set(key, answer);
  }
  return answer;
}

function buildAnswer(protocol: Protocol, verdict: Deny | Unavailable): Answer {
  // Without the cause: only what Connect itself would put on the wire.
  const error = verdictToConnectError({ ...verdict, cause: undefined });
  switch (protocol.kind) {
    case "grpc": {
      const headers = setTrailerStatus(new Headers({ "content-type": protocol.contentType }), error);
      return { status: 200, headers: Object.fromEntries(headers), body: undefined };
    }
    case "grpc-web": {
      const trailer = setTrailerStatus(new Headers(), error);
      return {
        status: 200,
        headers: { "content-type": protocol.contentType },
        body: encodeEnvelope(trailerFlag, trailerSerialize(trailer)),
      };
    }
    case "connect-unary":
      return {
        status: codeToHttpStatus(error.code),
        headers: { "content-type": "application/json" },
        body: errorToJsonBytes(error, undefined),
      };
    case "connect-stream":
      return {
        status: 200,
        headers: { "content-type": protocol.contentType },
        body: encodeEnvelope(endStreamFlag, endStreamSerialization.serialize({ metadata: new Headers(), error })),
      };
  }
}
