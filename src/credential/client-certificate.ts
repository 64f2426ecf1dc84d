/**
 * The TLS client certificate as a credential: a verified certificate's
 * SPIFFE ID (URI SAN) or, failing that, its subject DN, and the service
 * account mapped to it through `service_accounts.tls_identity`. A call that
 * brings no bearer token but such a certificate is that service account.
 *
 * Only certificates the TLS layer verified against the configured client CA
 * count (`socket.authorized`); any other certificate is ignored, so its
 * holder is just anonymous. The identity is read once per connection.
 */
import type { X509Certificate } from "node:crypto";
import { createContextKey, createContextValues, type ContextValues } from "@connectrpc/connect";
import type { PrincipalLookup } from "../principal.js";

/** The identity of a verified TLS client certificate. */
export interface ClientCertificate {
  /**
   * The SPIFFE ID from the certificate's URI SAN (`spiffe://example.org/billing`)
   * or, when it has none, its subject DN in RFC 4514 order
   * (`CN=billing,O=Example`), the form `service_accounts.tls_identity` holds.
   */
  readonly identity: string;
}

/**
 * Context value holding the verified client certificate of the call's
 * connection, undefined without one. `startServer` sets it when client
 * certificates are configured; another front-end sets it with
 * {@link clientCertificateContextValues}.
 */
export const clientCertificateKey = createContextKey<ClientCertificate | undefined>(undefined, {
  description: "protoguard client certificate",
});

/** The parts of a TLS socket read here; `tls.TLSSocket` has them. */
export interface CertificateSocket {
  readonly authorized?: boolean;
  getPeerX509Certificate?(): X509Certificate | undefined;
}

/** Request fields read here; both Node request types have them. */
export interface CertificateRequest {
  readonly socket?: unknown;
  readonly stream?: { readonly session?: { readonly socket?: unknown } | undefined } | undefined;
}

/**
 * The identity of `socket`'s client certificate when the TLS layer verified
 * it against the client CA; undefined otherwise (no certificate, one from
 * another CA, expired, a plaintext socket).
 */
export function readClientCertificate(socket: CertificateSocket | undefined): ClientCertificate | undefined {
  if (socket?.authorized !== true || typeof socket.getPeerX509Certificate !== "function") return undefined;
  const certificate = socket.getPeerX509Certificate();
  if (certificate === undefined) return undefined;
  // A SPIFFE SVID carries exactly one SPIFFE URI; a certificate with several
  // names none of them, rather than letting the first one win.
  const spiffe = sanEntries(certificate.subjectAltName ?? "").filter(
    (entry) => entry.type === "URI" && /^spiffe:\/\/[^\s,"]+$/i.test(entry.value),
  );
  if (spiffe.length > 1) return undefined;
  if (spiffe.length === 1) return { identity: `spiffe://${spiffe[0]!.value.slice("spiffe://".length)}` };
  // Node lists the subject one attribute per line, most general first;
  // RFC 4514 writes the most specific first.
  const subject = certificate.subject
    .split("\n")
    .filter((line) => line !== "")
    .reverse()
    .join(",");
  return subject === "" ? undefined : { identity: subject };
}

/**
 * The entries of Node's `subjectAltName` text (`URI:spiffe://a/b, DNS:x`).
 * Node writes a value that contains a separator or a quote as a JSON string
 * (`URI:"spiffe://x, URI:spiffe://y"`); such a value is read whole, so text
 * inside it can never pass for an entry of its own.
 */
function sanEntries(text: string): { type: string; value: string }[] {
  const entries: { type: string; value: string }[] = [];
  let at = 0;
  while (at < text.length) {
    const colon = text.indexOf(":", at);
    if (colon === -1) break;
    const type = text.slice(at, colon);
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      // A JSON string: find its closing quote, skipping escaped characters.
      let end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, end + 1)) as string;
      } catch {
        return entries; // Malformed: stop rather than guess.
      }
      next = text.startsWith(", ", end + 1) ? end + 3 : end + 1;
    } else {
      const comma = text.indexOf(", ", colon + 1);
      value = text.slice(colon + 1, comma === -1 ? text.length : comma);
      next = comma === -1 ? text.length : comma + 2;
    }
    entries.push({ type, value });
    at = next;
  }
  return entries;
}

/**
 * `contextValues` for `connectNodeAdapter` that sets
 * {@link clientCertificateKey} (on `values` when given). The identity is
 * read once per TLS connection and remembered with it.
 *
 * @example
 * ```ts
 * const certificate = clientCertificateContextValues();
 * connectNodeAdapter({ routes, contextValues: (req) => certificate(req) });
 * ```
 */
export function clientCertificateContextValues(): (req: CertificateRequest, values?: ContextValues) => ContextValues {
  const byConnection = new WeakMap<object, ClientCertificate | null>();
  return (req, values = createContextValues()) => {
    const certificate = clientCertificateOf(req, byConnection);
    return certificate === undefined ? values : values.set(clientCertificateKey, certificate);
  };
}

/** The verified certificate of `req`'s connection, cached in `cache` by connection. */
export function clientCertificateOf(
  req: CertificateRequest,
  cache?: WeakMap<object, ClientCertificate | null>,
): ClientCertificate | undefined {
  // HTTP/2: one socket object per session (requests get per-stream proxies).
  const socket = (req.stream?.session?.socket ?? req.socket) as (CertificateSocket & object) | undefined;
  if (socket === undefined || socket === null) return undefined;
  const cached = cache?.get(socket);
  if (cached !== undefined) return cached ?? undefined;
  const certificate = readClientCertificate(socket);
  cache?.set(socket, certificate ?? null);
  return certificate;
}

/**
 * What open streaming calls identified by a certificate are watched under
 * (see `createAuth`'s `revalidateStreams`): keyed by the service's user id,
 * like a token, so a change to the account (deactivation, deletion, lost
 * permission, changed identity) re-checks them. No `exp`: a certificate's
 * validity is the TLS layer's concern, checked at the handshake.
 */
export function certificateCallIdentity(
  principalId: number,
  certificate: ClientCertificate,
): { readonly userId: number; readonly jti: string; readonly issuedAt: number } {
  // Not a jti any issuer writes (those are hex), so token events never match it.
  return { userId: principalId, jti: `tls:${certificate.identity}`, issuedAt: 0 };
}

/**
 * Finds the principal a verified client certificate stands for. `not_found`
 * means no service account is mapped to it: the caller is then anonymous.
 * Throwing means "backend unavailable".
 */
export interface CertificatePrincipalSource {
  load(certificate: ClientCertificate): Promise<PrincipalLookup>;
  /** The cached answer, without I/O, when there is a fresh one; optional. */
  peek?(certificate: ClientCertificate): PrincipalLookup | undefined;
}
