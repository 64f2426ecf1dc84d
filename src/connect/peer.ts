/**
 * The client address of a call, for limits that must hold per client (login
 * admission). Taken from the socket; taken from a forwarded header only when
 * the socket's peer is a configured trusted proxy, so a client cannot name
 * its own address.
 */
import { isIPv4 } from "node:net";
import type { IncomingHttpHeaders } from "node:http";
import { createContextKey, createContextValues, type ContextValues } from "@connectrpc/connect";
import { canonicalAddress, parseTrustedProxies } from "../util/ip-address.js";

/**
 * The address given to calls whose client cannot be determined (a socket
 * already closed, or a forwarded header with an obfuscated or malformed hop):
 * they all share it, and so share one budget.
 */
export const UNKNOWN_PEER = "unknown";

/**
 * Context value holding the client address of the call: a canonical IPv4 or
 * IPv6 address (IPv4-mapped IPv6 written as IPv4, no zone), or
 * {@link UNKNOWN_PEER}. `undefined` means the front-end supplies no address
 * at all (Connect's in-memory transport, or an adapter without
 * {@link peerContextValues}). `startServer` sets it for every call.
 */
export const peerAddressKey = createContextKey<string | undefined>(undefined, {
  description: "protoguard peer address",
});

/**
 * Context value holding the address of the socket the call arrived on (canonical, as
 * {@link peerAddressKey}, but never taken from a forwarded header): the immediate peer, which
 * gateway mode trusts or not. `undefined` when the front-end supplies none. Set by
 * {@link peerContextValues}, so `startServer` sets it for every call.
 */
export const socketAddressKey = createContextKey<string | undefined>(undefined, {
  description: "protoguard socket address",
});

/** Which forwarded header a trusted proxy writes. */
export type ForwardedHeader = "x-forwarded-for" | "forwarded";

/** Options of {@link createClientAddressResolver} and {@link peerContextValues}. */
export interface ClientAddressOptions {
  /**
   * Addresses and CIDR ranges of the reverse proxies in front of the server
   * (`"10.0.0.0/8"`, `"192.0.2.7"`, `"fd00::/8"`). Only when the socket's
   * peer is one of them is {@link forwardedHeader} read. Default: none, so the
   * socket's peer is always the client.
   */
  trustedProxies?: readonly string[];
  /**
   * The header those proxies append the client address to: `x-forwarded-for`
   * (nginx, Envoy, HAProxy, cloud load balancers) or RFC 7239 `forwarded`.
   * Only this one is read: a proxy that writes the other passes a client's
   * forged copy of this one through untouched. Default `"x-forwarded-for"`.
   */
  forwardedHeader?: ForwardedHeader;
}

/** Request fields the resolver reads; both Node request types have them. */
export interface PeerRequest {
  readonly socket?: { readonly remoteAddress?: string | undefined } | null;
  readonly headers: IncomingHttpHeaders;
}

/**
 * Builds the function that names the client of a request: the socket's peer,
 * or, while that peer is a trusted proxy, the hop before it in the forwarded
 * header, read from the right (the entries a proxy appended) and stopping at
 * the first address that is not a trusted proxy. Entries further left were
 * written by the client and are never read. A hop that is not an IP address
 * (`unknown`, `_hidden`, garbage) gives {@link UNKNOWN_PEER}; a trusted proxy
 * that sent no header is itself the client.
 *
 * @throws {RangeError} for a malformed trusted-proxy entry.
 * @example
 * ```ts
 * const clientOf = createClientAddressResolver({ trustedProxies: ["10.0.0.0/8"] });
 * clientOf(req); // "203.0.113.9" for a request from 10.0.0.2 with x-forwarded-for: 203.0.113.9
 * ```
 */
export function createClientAddressResolver(options: ClientAddressOptions = {}): (req: PeerRequest) => string {
  const entries = options.trustedProxies ?? [];
  const header = options.forwardedHeader ?? "x-forwarded-for";
  if (header !== "x-forwarded-for" && header !== "forwarded") {
    throw new RangeError(`forwardedHeader must be "x-forwarded-for" or "forwarded", got ${JSON.stringify(header)}`);
  }
  const trusted = parseTrustedProxies(entries);
  const isTrusted = (address: string) => trusted.check(address, isIPv4(address) ? "ipv4" : "ipv6");
  const hopsOf = header === "forwarded" ? forwardedHops : xForwardedForHops;

  return function clientAddress(req) {
    const peer = canonicalAddress(req.socket?.remoteAddress);
    if (peer === undefined) return UNKNOWN_PEER;
    if (entries.length === 0 || !isTrusted(peer)) return peer;
    const value = req.headers[header];
    const hops = hopsOf(Array.isArray(value) ? value.join(",") : (value ?? ""));
    let client = peer;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = canonicalAddress(hops[i]);
      if (hop === undefined) return UNKNOWN_PEER;
      client = hop;
      if (!isTrusted(hop)) break;
    }
    return client;
  };
}

/**
 * `contextValues` for `connectNodeAdapter` that sets {@link peerAddressKey}
 * (on `values` when given, e.g. another front-end's values).
 *
 * @throws {RangeError} for a malformed trusted-proxy entry.
 * @example
 * ```ts
 * const peer = peerContextValues({ trustedProxies: ["10.0.0.0/8"] });
 * connectNodeAdapter({ routes, contextValues: (req) => peer(req) });
 * ```
 */
export function peerContextValues(
  options: ClientAddressOptions = {},
): (req: PeerRequest, values?: ContextValues) => ContextValues {
  const clientAddress = createClientAddressResolver(options);
  return (req, values = createContextValues()) =>
    values.set(peerAddressKey, clientAddress(req)).set(socketAddressKey, canonicalAddress(req.socket?.remoteAddress));
}

/** The hops of `x-forwarded-for`, leftmost (furthest) first. */
function xForwardedForHops(value: string): string[] {
  return value === "" ? [] : value.split(",").map((hop) => hop.trim());
}

/** The `for=` of each element of an RFC 7239 `forwarded` header, leftmost first ("" when absent). */
function forwardedHops(value: string): string[] {
  if (value.trim() === "") return [];
  return value.split(",").map((element) => {
    for (const pair of element.split(";")) {
      const eq = pair.indexOf("=");
      if (eq === -1 || pair.slice(0, eq).trim().toLowerCase() !== "for") continue;
      const raw = pair.slice(eq + 1).trim();
      return raw.startsWith('"') && raw.endsWith('"') && raw.length >= 2 ? raw.slice(1, -1) : raw;
    }
    return "";
  });
}
