/**
 * Checking TLS material before binding, so that a wrong file says which of
 * certificate and key is wrong, and how.
 */
import * as tls from "node:tls";
import { ServerError } from "./errors.js";

/** PEM certificate chain and private key for `listen` and `startServer`. */
export interface TlsOptions {
  /** PEM certificate (chain), as text or bytes; not a file path. */
  cert: string | Buffer;
  /** PEM private key matching `cert`, as text or bytes; not a file path. */
  key: string | Buffer;
  /**
   * PEM certificate(s) of the CA that issues client certificates, as text or
   * bytes; not a file path. When set, the server asks every client for a
   * certificate and verifies it against these (and only these) CAs; a call
   * with a verified certificate and no bearer token is the service account
   * whose `tls_identity` matches the certificate's SPIFFE ID or subject. A
   * client without a certificate, or with one that does not verify, is not
   * refused at the handshake: it is simply not identified by it. Default:
   * none, so no client certificate is requested.
   */
  clientCa?: string | Buffer;
}

/**
 * Validates certificate and key one at a time, because a combined failure
 * from OpenSSL ("no start line", "key values mismatch") does not say which
 * of the two is wrong.
 *
 * @throws {ServerError} with a `TLS_*` code naming what is wrong.
 */
export function checkTls(options: TlsOptions): void {
  for (const [label, value] of [
    ["certificate", options.cert],
    ["private key", options.key],
  ] as const) {
    const text = typeof value === "string" ? value : value.toString("latin1");
    if (!text.includes("-----BEGIN")) {
      const hint =
        typeof value === "string" && !value.includes("\n")
          ? " It looks like a file path; pass the file's contents (fs.readFileSync(path))."
          : "";
      throw new ServerError("TLS_NOT_PEM", `TLS ${label} is not PEM: expected a "-----BEGIN" block.${hint}`);
    }
  }
  if (options.clientCa !== undefined) {
    const text = typeof options.clientCa === "string" ? options.clientCa : options.clientCa.toString("latin1");
    if (!text.includes("-----BEGIN CERTIFICATE")) {
      throw new ServerError("TLS_NOT_PEM", 'TLS client CA is not PEM: expected a "-----BEGIN CERTIFICATE" block.');
    }
    try {
      tls.createSecureContext({ ca: options.clientCa });
    } catch (err) {
      throw new ServerError("TLS_CERT_INVALID", `TLS client CA is invalid: ${(err as Error).message}`, { cause: err });
    }
  }
  try {
    tls.createSecureContext({ cert: options.cert });
  } catch (err) {
    throw new ServerError("TLS_CERT_INVALID", `TLS certificate is invalid: ${(err as Error).message}`, { cause: err });
  }
  try {
    tls.createSecureContext({ key: options.key });
  } catch (err) {
    throw new ServerError(
      "TLS_KEY_INVALID",
      `TLS private key is invalid (encrypted keys are not supported): ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  try {
    tls.createSecureContext({ cert: options.cert, key: options.key });
  } catch (err) {
    throw new ServerError(
      "TLS_KEY_MISMATCH",
      `TLS private key does not match the certificate: ${(err as Error).message}`,
      { cause: err },
    );
  }
}
