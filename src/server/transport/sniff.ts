/**
 * Telling HTTP/2 from HTTP/1.1 on a plaintext connection. Without TLS there
 * is no ALPN: the 24-byte HTTP/2 client preface means h2c with prior
 * knowledge (what gRPC clients send), anything else is HTTP/1.1.
 */
import type * as net from "node:net";

/** The first bytes an HTTP/2 client sends on a connection (RFC 9113, section 3.4). */
const http2Preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/**
 * Reads just enough of a new connection to tell HTTP/2 from HTTP/1.1, puts
 * the bytes back, and calls `decide` once. The preface may arrive split over
 * several packets, so a matching prefix keeps waiting; the first mismatching
 * byte decides HTTP/1.1 at once (a request line differs by its second byte).
 */
export function sniff(socket: net.Socket, timeoutMs: number, decide: (isHttp2: boolean) => void): void {
  const chunks: Buffer[] = [];
  let length = 0;
  const finish = (isHttp2: boolean): void => {
    socket.off("data", onData);
    socket.off("end", onEnd);
    clearTimeout(deadline);
    socket.pause();
    socket.unshift(Buffer.concat(chunks, length));
    decide(isHttp2);
  };
  const onData = (chunk: Buffer): void => {
    chunks.push(chunk);
    const offset = length;
    length += chunk.length;
    const compare = Math.min(chunk.length, http2Preface.length - offset);
    if (compare > 0 && !chunk.subarray(0, compare).equals(http2Preface.subarray(offset, offset + compare))) {
      finish(false);
    } else if (length >= http2Preface.length) {
      finish(true);
    }
  };
  // A peer that half-closes before sending a request gets nothing.
  const onEnd = (): void => {
    socket.destroy();
  };
  socket.on("data", onData);
  socket.on("end", onEnd);
  // A deadline from accept, not an idle timeout: a peer trickling the
  // preface a byte at a time must not hold the socket either.
  const deadline = setTimeout(() => socket.destroy(), timeoutMs);
  deadline.unref();
  socket.once("close", () => clearTimeout(deadline));
}
