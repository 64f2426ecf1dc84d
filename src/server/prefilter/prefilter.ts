/**
 * The HTTP pre-filter: turns away calls that fail authentication before
 * Connect parses anything (the way connectrpc/authn-go wraps a Go handler).
 *
 * It maps the request path to a method descriptor, runs the same decision
 * function as the request gate and interceptor, and either answers a
 * refusal itself in the caller's protocol or hands the call on with the
 * verdict attached, so the gate does not decide twice.
 */
import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { createContextValues, type ContextValues } from "@connectrpc/connect";
import type { Auth } from "../../connect/auth.js";
import { verdictKey } from "../../connect/context.js";
import type { HeaderReader } from "../../credential/bearer.js";
import { clientCertificateOf, type ClientCertificate } from "../../credential/client-certificate.js";
import type { CallOrigin } from "../../decide/decide.js";
import type { Deny, Unavailable, Verdict } from "../../decide/verdict.js";
import type { NodeHandler, NodeRequest } from "../http.js";
import { exposeRepeatedAuthorization } from "../transport/authorization.js";
import { answerFor, type Answer } from "./answer.js";
import { detectProtocol, type Protocol } from "./protocol.js";
import { refuse, refuseStream, type DiscardLimits } from "./refuse.js";

const VERDICT = Symbol("protoguard.verdict");
type TaggedRequest = NodeRequest & { [VERDICT]?: Verdict };
type TaggedStream = ServerHttp2Stream & { [VERDICT]?: Verdict };

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
    judge(
      method: DescMethod,
      headers: IncomingHttpHeaders,
      rawHeaders: readonly string[] | undefined,
      origin: CallOrigin,
    ) {
      // The listener's own mechanism, again here so the pre-filter holds on
      // its own: repeated values joined match no credential (TOKEN_MALFORMED).
      exposeRepeatedAuthorization(headers, rawHeaders);
      // The origin's peer is the socket's, for gateway mode: never a forwarded header.
      return auth.check(method, nodeHeaderReader(headers), "prefilter", undefined, origin);
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
export function createPrefilter(
  options: PrefilterOptions & {
    /** Where accepted and unrecognised requests go (Connect's handler). */ next: NodeHandler;
  },
): NodeHandler {
  const { next } = options;
  const core = createCore(options);
  const discard: DiscardLimits = {
    maxDiscardBytes: options.maxDiscardBytes ?? 65_536,
    lingerMs: options.lingerMs ?? 5_000,
    maxLingerBytes: options.maxLingerBytes ?? 16 * 1024 * 1024,
  };
  // A TLS connection's verified client certificate, read once per connection.
  const certificates = new WeakMap<object, ClientCertificate | null>();
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
    const verdict = core.judge(call.method, req.headers, req.rawHeaders, {
      certificate: clientCertificateOf(req, certificates),
      peer: req.socket?.remoteAddress,
    });
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
export function createStreamPrefilter(
  options: PrefilterOptions,
): (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, next: () => void, rawHeaders?: readonly string[]) => void {
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
    // Plaintext HTTP/2 only (see listen): no client certificate to pass.
    const verdict = core.judge(call.method, headers, rawHeaders, { peer: stream.session?.socket?.remoteAddress });
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
  return (
    (req as TaggedRequest)[VERDICT] ??
    ("stream" in req ? (req.stream as TaggedStream | undefined)?.[VERDICT] : undefined)
  );
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
