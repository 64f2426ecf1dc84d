/**
 * Writing a refusal without reading the request body: on a raw HTTP/2
 * stream, or on an HTTP/1.1 response whose unread body may need a
 * lingering close.
 */
import type { ServerResponse } from "node:http";
import { constants as http2, type ServerHttp2Stream } from "node:http2";
import type { NodeRequest, NodeResponse } from "../http.js";
import type { Answer } from "./answer.js";

/** How an HTTP/1.1 refusal deals with the body it never reads; see `PrefilterOptions`. */
export interface DiscardLimits {
  readonly maxDiscardBytes: number;
  readonly lingerMs: number;
  readonly maxLingerBytes: number;
}

/** Answers a refused call with `answer`, on whichever protocol `res` speaks. */
export function refuse(req: NodeRequest, res: NodeResponse, answer: Answer, discard: DiscardLimits): void {
  if ("stream" in res && res.stream !== undefined) {
    refuseStream(res.stream, answer);
    return;
  }
  const h1 = res as ServerResponse;
  const length = Number(req.headers["content-length"] ?? Number.NaN);
  const discardable = Number.isFinite(length) && length <= discard.maxDiscardBytes;
  // A connection that will not be kept says so: answered keep-alive and then half-closed, a
  // client's next call on it fails ("socket hang up").
  h1.writeHead(answer.status, discardable ? answer.headers : { ...answer.headers, connection: "close" });
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
 * flushed, unread body and all, which resets the connection; so the answer
 * says `connection: close`, and Node's destroy-once-flushed is taken back,
 * the lingering read ending the socket instead.)
 */
function lingeringClose(req: NodeRequest, res: ServerResponse, discard: DiscardLimits): void {
  const socket = req.socket;
  // 'finish' comes after Node's own finish handler, which resumed the body
  // to drop it and armed the keep-alive timer.
  res.once("finish", () => {
    if (socket.destroyed) return;
    // Node's finish handler, for a `connection: close` answer, ended the socket and set it
    // to be destroyed once flushed (socket.destroySoon): the lingering read below does that.
    socket.removeListener("finish", socket.destroy);
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

/** Answers a refused raw HTTP/2 stream with `answer` and stops its body. */
export function refuseStream(stream: ServerHttp2Stream, answer: Answer): void {
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
