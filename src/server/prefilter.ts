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
import { constants as http2, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
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
import { authorizationValues, type RequestHandler } from "./listen.js";

/** A Node request handler, as `connectNodeAdapter` returns. */
export type NodeHandler = RequestHandler;
/** The request a {@link NodeHandler} receives (HTTP/1.1 or HTTP/2). */
export type NodeRequest = Parameters<RequestHandler>[0];
type NodeResponse = Parameters<RequestHandler>[1];

const VERDICT = Symbol("protoguard.verdict");
type TaggedRequest = NodeRequest & { [VERDICT]?: Verdict };
type TaggedStream = ServerHttp2Stream & { [VERDICT]?: Verdict };

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

/** Options for {@link createPrefilter} and {@link createStreamPrefilter}. */
export interface PrefilterOptions {
  /** The auth layer whose decision function is used. Required. */
  auth: Pick<Auth, "check">;
  /** Services routed behind it; other paths pass through untouched. Required. */
  services: readonly DescService[];
  /**
   * HTTP/1.1 request bodies larger than this (or of unknown length) make a
   * refusal close the connection instead of letting Node discard the body.
   * Default: 65536 bytes.
   */
  maxDiscardBytes?: number;
  /**
   * After refusing an HTTP/1.1 call whose body is too large to keep the
   * connection for, the server closes its side and keeps reading (and
   * dropping) what the client still sends for at most this long: closing a
   * socket with unread data makes the kernel reset the connection, and the
   * client then often loses the refusal (EPIPE, ECONNRESET) instead of
   * reading its 401 or 403. nginx's "lingering close" and Go's server do the
   * same. Default 5000 ms.
   */
  lingerMs?: number;
  /** The most bytes such a lingering read drops before closing anyway. Default 16 MiB. */
  maxLingerBytes?: number;
}

/**
 * Answers a raw HTTP/2 stream, before Node's compatibility layer builds a
 * request and response for it: returns true when it refused the call itself,
 * false to hand the stream on (with the verdict attached when one was made).
 */
export type StreamPrefilter = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => boolean;

/** The part both front-ends share: which calls to judge, and the judging. */
function createCore(options: PrefilterOptions) {
  const { auth } = options;
  const methods = new Map<string, DescMethod>();
  for (const service of options.services) {
    for (const method of service.methods) methods.set(`/${service.typeName}/${method.name}`, method);
  }
  const answers = new Map<string, Answer>();
  return {
    /** The method and protocol of a call worth judging, or undefined to pass it through. */
    recognise(httpMethod: string | undefined, path: string | undefined, contentType: string | undefined) {
      if (httpMethod !== "POST" || path === undefined) return undefined;
      const query = path.indexOf("?");
      const method = methods.get(query === -1 ? path : path.slice(0, query));
      if (method === undefined) return undefined;
      const protocol = detectProtocol(contentType);
      return protocol === undefined ? undefined : { method, protocol };
    },
    judge(method: DescMethod, headers: IncomingHttpHeaders, rawHeaders: readonly string[] | undefined) {
      // Node keeps only the first of repeated `authorization` headers in
      // `headers`; all of them, joined, match no credential (TOKEN_MALFORMED).
      const credentials = authorizationValues(rawHeaders);
      const reader = credentials.length > 1 ? repeatedAuthorizationReader(headers, credentials) : nodeHeaderReader(headers);
      return auth.check(method, reader, "prefilter");
    },
    answer: (protocol: Protocol, verdict: Deny | Unavailable) => answerFor(answers, protocol, verdict),
  };
}

/**
 * Creates the pre-filter as a Node request handler in front of `next`. It
 * serves HTTP/1.1 and TLS; on plaintext HTTP/2 {@link createStreamPrefilter}
 * does the same job before Node builds request objects, which is cheaper.
 * Pass {@link prefilterContextValues} as `connectNodeAdapter`'s
 * `contextValues` so Connect's gate reuses the verdict.
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
export function createPrefilter(options: PrefilterOptions & { /** Where accepted and unrecognised requests go (Connect's handler). */ next: NodeHandler }): NodeHandler {
  const { next } = options;
  const core = createCore(options);
  const discard: DiscardLimits = {
    maxDiscardBytes: options.maxDiscardBytes ?? 65_536,
    lingerMs: options.lingerMs ?? 5_000,
    maxLingerBytes: options.maxLingerBytes ?? 16 * 1024 * 1024,
  };
  return function prefilter(req, res) {
    // Already judged on its raw HTTP/2 stream by createStreamPrefilter.
    if (taggedVerdict(req) !== undefined) return next(req, res);
    const call = core.recognise(req.method, req.url, req.headers["content-type"]);
    if (call === undefined) return next(req, res);
    const act = (verdict: Verdict) => {
      if (verdict.outcome === "allow") {
        (req as TaggedRequest)[VERDICT] = verdict;
        next(req, res);
      } else {
        refuse(req, res, core.answer(call.protocol, verdict), discard);
      }
    };
    const verdict = core.judge(call.method, req.headers, req.rawHeaders);
    if (verdict instanceof Promise) verdict.then(act, () => next(req, res));
    else act(verdict);
  };
}

/**
 * Creates the pre-filter for raw HTTP/2 streams (see `listen`'s
 * `streamPrefilter` option). Refusals that need no I/O are answered at once;
 * a verdict that needs the database or a signature check is awaited, and
 * the stream is refused or handed on with it.
 */
export function createStreamPrefilter(options: PrefilterOptions): (
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  next: () => void,
  rawHeaders?: readonly string[],
) => void {
  const core = createCore(options);
  return function streamPrefilter(stream, headers, next, rawHeaders) {
    const call = core.recognise(headers[":method"], headers[":path"], headers["content-type"]);
    if (call === undefined) return next();
    const act = (verdict: Verdict) => {
      if (verdict.outcome === "allow") {
        (stream as TaggedStream)[VERDICT] = verdict;
        next();
      } else {
        refuseStream(stream, core.answer(call.protocol, verdict));
      }
    };
    const verdict = core.judge(call.method, headers, rawHeaders);
    if (verdict instanceof Promise) verdict.then(act, next);
    else act(verdict);
  };
}

/**
 * `contextValues` for `connectNodeAdapter`: carries the pre-filter's verdict
 * into the call so the request gate and interceptor reuse it.
 */
export function prefilterContextValues(req: NodeRequest): ContextValues {
  const values = createContextValues();
  const verdict = taggedVerdict(req);
  if (verdict !== undefined) values.set(verdictKey, verdict);
  return values;
}

function taggedVerdict(req: NodeRequest): Verdict | undefined {
  return (req as TaggedRequest)[VERDICT] ?? ("stream" in req ? (req.stream as TaggedStream | undefined)?.[VERDICT] : undefined);
}

function nodeHeaderReader(headers: IncomingHttpHeaders): HeaderReader {
  return {
    get(name: string) {
      const value = headers[name];
      if (value === undefined) return null;
      return Array.isArray(value) ? value.join(", ") : value;
    },
  };
}

/** `headers`, except that `authorization` reads as all of `values`, joined as fetch `Headers` joins them. */
function repeatedAuthorizationReader(headers: IncomingHttpHeaders, values: readonly string[]): HeaderReader {
  const joined = values.join(", ");
  const rest = nodeHeaderReader(headers);
  return { get: (name: string) => (name.toLowerCase() === "authorization" ? joined : rest.get(name)) };
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

/** How an HTTP/1.1 refusal deals with the body it never reads; see {@link PrefilterOptions}. */
interface DiscardLimits {
  readonly maxDiscardBytes: number;
  readonly lingerMs: number;
  readonly maxLingerBytes: number;
}

function refuse(req: NodeRequest, res: NodeResponse, answer: Answer, discard: DiscardLimits): void {
  if ("stream" in res && res.stream !== undefined) {
    refuseStream(res.stream, answer);
    return;
  }
  const h1 = res as ServerResponse;
  const length = Number(req.headers["content-length"] ?? Number.NaN);
  const discardable = Number.isFinite(length) && length <= discard.maxDiscardBytes;
  h1.writeHead(answer.status, answer.headers);
  h1.end(answer.body);
  // Node reads and drops a small unread body to keep the connection; a
  // large or unbounded one is not worth receiving.
  if (!discardable) lingeringClose(req, h1, discard);
}

/**
 * Closes the connection of a refused HTTP/1.1 call without losing the
 * refusal. Once the answer is written, the server half-closes (FIN), and
 * Node keeps reading the request body and dropping it, never buffering it;
 * the socket is destroyed when the client closes too, after `lingerMs`, or
 * after `maxLingerBytes`, whichever comes first. (A `connection: close`
 * header would make Node destroy the socket as soon as the answer is
 * flushed, unread body and all, which resets the connection.)
 */
function lingeringClose(req: NodeRequest, res: ServerResponse, discard: DiscardLimits): void {
  const socket = req.socket;
  // 'finish' comes after Node's own finish handler, which resumed the body
  // to drop it and armed the keep-alive timer.
  res.once("finish", () => {
    if (socket.destroyed) return;
    socket.end();
    let dropped = 0;
    const onData = (chunk: Buffer | string): void => {
      dropped += chunk.length;
      if (dropped > discard.maxLingerBytes) socket.destroy();
    };
    const timer = setTimeout(() => socket.destroy(), discard.lingerMs);
    timer.unref();
    // On the request, not the socket: Node's parser may read the socket's
    // handle directly, without 'data' events.
    req.on("data", onData);
    socket.once("close", () => {
      clearTimeout(timer);
      req.off("data", onData);
    });
  });
}

function refuseStream(stream: ServerHttp2Stream, answer: Answer): void {
  if (stream.destroyed || stream.headersSent) return;
  // Nothing else listens on a stream refused before Node's compatibility
  // layer saw it; a peer's reset must not become an uncaught error.
  stream.on("error", ignore);
  const headers = { ":status": answer.status, ...answer.headers };
  if (answer.body === undefined) {
    // gRPC trailers-only: one HEADERS frame with END_STREAM.
    stream.respond(headers, { endStream: true });
  } else {
    stream.respond(headers);
    stream.end(answer.body);
  }
  // The request body is never read: tell the client to stop sending it
  // (RST_STREAM NO_ERROR after the response, RFC 9113 §8.1). Closing the
  // stream also hands whatever already arrived back to the connection's
  // flow-control window, so unread bodies cannot stall other calls (the
  // 1 MiB test sends twenty of them on one connection).
  if (!stream.readableEnded) stream.close(http2.NGHTTP2_NO_ERROR);
}

function ignore(): void {}
