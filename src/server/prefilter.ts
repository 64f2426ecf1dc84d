/**
 * The HTTP pre-filter: turns away calls that fail authentication before
 * Connect parses anything (the way connectrpc/authn-go wraps a Go handler).
 *
 * It maps the request path to a method descriptor, runs the same decision
 * function as the request gate and interceptor, and either answers a
 * refusal itself in the caller's protocol or hands the call on with the
 * verdict attached, so the gate does not decide twice.
 */
import type { ServerResponse } from "node:http";
import { constants as http2 } from "node:http2";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { createContextValues, type ContextValues } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  createEndStreamSerialization,
  endStreamFlag,
  errorToJsonBytes,
} from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import type { Auth } from "../connect/auth.js";
import { verdictKey } from "../connect/context.js";
import { verdictToConnectError } from "../connect/errors.js";
import type { HeaderReader } from "../credential/bearer.js";
import type { Deny, Unavailable, Verdict } from "../decide/verdict.js";
import type { RequestHandler } from "./listen.js";

/** A Node request handler, as `connectNodeAdapter` returns. */
export type NodeHandler = RequestHandler;
type NodeRequest = Parameters<RequestHandler>[0];
type NodeResponse = Parameters<RequestHandler>[1];

const VERDICT = Symbol("protoguard.verdict");
type TaggedRequest = NodeRequest & { [VERDICT]?: Verdict };

/** The wire protocol of a request, from its content type. */
type Protocol =
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

function detectProtocol(contentType: string | undefined): Protocol | undefined {
  if (contentType === undefined) return undefined;
  if (GRPC.test(contentType)) return { kind: "grpc", contentType };
  if (GRPC_WEB.test(contentType)) return { kind: "grpc-web", contentType };
  if (CONNECT_UNARY.test(contentType)) return { kind: "connect-unary" };
  if (CONNECT_STREAM.test(contentType)) return { kind: "connect-stream", contentType };
  return undefined;
}

/** Options for {@link createPrefilter}. */
export interface PrefilterOptions {
  /** The auth layer whose decision function is used. Required. */
  auth: Pick<Auth, "check">;
  /** Services routed behind it; other paths pass through untouched. Required. */
  services: readonly DescService[];
  /** The handler to pass accepted and unrecognised requests to (Connect's). Required. */
  next: NodeHandler;
  /**
   * HTTP/1.1 request bodies larger than this (or of unknown length) make a
   * refusal close the connection instead of letting Node discard the body.
   * Default: 65536 bytes.
   */
  maxDiscardBytes?: number;
}

/**
 * Creates the pre-filter handler. Pass {@link prefilterContextValues} as
 * `connectNodeAdapter`'s `contextValues` so Connect's gate reuses the
 * verdict instead of deciding again.
 *
 * @example
 * ```ts
 * const connect = connectNodeAdapter({
 *   routes,
 *   interceptors: [auth.interceptor],
 *   requestGate: auth.requestGate,
 *   contextValues: prefilterContextValues,
 * });
 * const handler = createPrefilter({ auth, services: [ProductService], next: connect });
 * ```
 */
export function createPrefilter(options: PrefilterOptions): NodeHandler {
  const { auth, next } = options;
  const maxDiscardBytes = options.maxDiscardBytes ?? 65_536;
  const methods = new Map<string, DescMethod>();
  for (const service of options.services) {
    for (const method of service.methods) methods.set(`/${service.typeName}/${method.name}`, method);
  }
  const answers = new Map<string, Answer>();

  return function prefilter(req, res) {
    if (req.method !== "POST") return next(req, res);
    const url = req.url ?? "";
    const query = url.indexOf("?");
    const method = methods.get(query === -1 ? url : url.slice(0, query));
    if (method === undefined) return next(req, res);
    const protocol = detectProtocol(req.headers["content-type"]);
    if (protocol === undefined) return next(req, res);

    const act = (verdict: Verdict) => {
      if (verdict.outcome === "allow") {
        (req as TaggedRequest)[VERDICT] = verdict;
        next(req, res);
      } else {
        refuse(req, res, answerFor(answers, protocol, verdict), maxDiscardBytes);
      }
    };
    const verdict = auth.check(method, nodeHeaderReader(req), "prefilter");
    if (verdict instanceof Promise) verdict.then(act, () => next(req, res));
    else act(verdict);
  };
}

/**
 * `contextValues` for `connectNodeAdapter`: carries the pre-filter's verdict
 * into the call so the request gate and interceptor reuse it.
 */
export function prefilterContextValues(req: NodeRequest): ContextValues {
  const values = createContextValues();
  const verdict = (req as TaggedRequest)[VERDICT];
  if (verdict !== undefined) values.set(verdictKey, verdict);
  return values;
}

function nodeHeaderReader(req: NodeRequest): HeaderReader {
  const headers = req.headers;
  return {
    get(name: string) {
      const value = headers[name];
      if (value === undefined) return null;
      return Array.isArray(value) ? value.join(", ") : value;
    },
  };
}

/** A ready refusal: status, headers and body, built once per protocol and reason. */
interface Answer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array | undefined;
}

const endStreamSerialization = createEndStreamSerialization(undefined);

function answerFor(cache: Map<string, Answer>, protocol: Protocol, verdict: Deny | Unavailable): Answer {
  const contentType = protocol.kind === "connect-unary" ? "" : protocol.contentType.toLowerCase();
  const key = `${protocol.kind}\u0000${contentType}\u0000${verdict.reason}\u0000${verdict.message}`;
  let answer = cache.get(key);
  if (answer === undefined) {
    answer = buildAnswer(protocol, verdict);
    // Keys are bounded by protocols × reasons × messages; permission
    // messages name a permission from the rules, so the set is finite.
    cache.set(key, answer);
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

function refuse(req: NodeRequest, res: NodeResponse, answer: Answer, maxDiscardBytes: number): void {
  if ("stream" in res && res.stream !== undefined) {
    const stream = res.stream;
    if (stream.destroyed || stream.headersSent) return;
    const headers = { ":status": answer.status, ...answer.headers };
    if (answer.body === undefined) {
      // gRPC trailers-only: one HEADERS frame with END_STREAM.
      stream.respond(headers, { endStream: true });
    } else {
      stream.respond(headers);
      stream.end(answer.body);
    }
    // The request body is never parsed or kept: tell the client to stop
    // sending it (RST_STREAM NO_ERROR after the response, RFC 9113 §8.1), and
    // let what is already in flight flow into the void, which returns its
    // bytes to the connection's flow-control window; otherwise a few unread
    // bodies would stall every other call on the connection.
    if (!stream.readableEnded) {
      stream.resume();
      stream.close(http2.NGHTTP2_NO_ERROR);
    }
    return;
  }
  const h1 = res as ServerResponse;
  const length = Number(req.headers["content-length"] ?? Number.NaN);
  const discardable = Number.isFinite(length) && length <= maxDiscardBytes;
  h1.writeHead(answer.status, discardable ? answer.headers : { ...answer.headers, connection: "close" });
  h1.end(answer.body);
  // Node reads and drops a small unread body to keep the connection; a
  // large or unbounded one is not worth receiving.
  if (!discardable) req.socket?.destroySoon?.();
}
