import type { ContextKey } from "@connectrpc/connect";
import { clientCertificateKey } from "../credential/client-certificate.js";
import type { CallOrigin } from "../decide/decide.js";
import { socketAddressKey } from "./peer.js";

const NO_ORIGIN: CallOrigin = Object.freeze({});

/**
 * What the transport put in a call's context values about where the call
 * came from (`startServer` sets both; the in-memory transport neither).
 * Shared and frozen when there is nothing, the common case, so a call
 * without mTLS or gateway mode allocates nothing for it.
 */
export function originOf(values: { get<T>(key: ContextKey<T>): T }): CallOrigin {
  const certificate = values.get(clientCertificateKey);
  const peer = values.get(socketAddressKey);
  return certificate === undefined && peer === undefined ? NO_ORIGIN : { certificate, peer };
}
