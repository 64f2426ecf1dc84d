/**
 * Gateway mode: behind a proxy that already verified the token (Envoy `jwt_authn` with
 * `forward_payload_header`, Istio `outputPayloadToHeader`, an API gateway), the verified claims
 * arrive in a request header instead of a bearer token. They are taken only from an immediate
 * peer (the socket's address, never a forwarded header) in the configured gateway ranges; the
 * same header from anyone else is refused. After the claims, the path is the bearer token's:
 * the same subject mapping, user lookup, rules and reasons.
 */
import { isIPv4 } from "node:net";
import type { HeaderReader } from "../credential/bearer.js";
import type { AccessTokenResult } from "../claims.js";
import { canonicalAddress, parseTrustedProxies } from "../util/ip-address.js";
import { checkClaims, DEFAULT_USER_ID_CLAIM, userIdClaimName, type ClaimRules } from "../token/claims.js";
import { TOKEN_DEFAULTS } from "../token/defaults.js";
import { TokenRejectedError } from "../token/errors.js";
import { checkExternalClaims, failure } from "./external-verifier.js";
import { resolveTrustedIssuers, type TrustedIssuer, type TrustedIssuerInit } from "./trusted-issuers.js";

/** Options of {@link createGatewayReader} (and `createAuth`/`startServer`'s `gateway`). */
export interface GatewayOptions {
  /**
   * The request header holding the verified JWT payload: base64url of its JSON, as Envoy's
   * `forward_payload_header` writes it (padding tolerated), or the JSON itself. Required,
   * e.g. `"x-jwt-payload"`.
   */
  header: string;
  /**
   * Addresses and CIDR ranges of the gateways (`"10.0.0.0/8"`, `"127.0.0.1"`, `"fd00::/8"`).
   * Only when the socket's peer is one of them is {@link header} read; from any other peer a
   * request carrying it is refused (UNAUTHENTICATED `GATEWAY_UNTRUSTED`), and so is one
   * whose socket is unknown (Connect's in-memory transport). Required, not empty.
   */
  trustedPeers: readonly string[];
  /**
   * Issuers whose claims the gateway forwards: a payload whose `iss` is one of them is mapped
   * as that issuer's tokens are (subject, groups, provisioning; `aud` and `exp` checked).
   * Default: none; through `createAuth`/`startServer`, their own `trustedIssuers` option.
   */
  trustedIssuers?: readonly TrustedIssuerInit[] | readonly TrustedIssuer[];
  /**
   * Any other payload is read as protoguard's own access token claims: this claim names the
   * local user; `token_type` must be `access`; `jti`, `iat` and `exp` are required (revocation
   * and expiry work as for a bearer token). Default `"user_id"`.
   */
  userIdClaim?: string;
  /** Required `iss` of protoguard-shaped payloads. Default: not checked. */
  issuer?: string;
  /** Required audience of protoguard-shaped payloads. Default: none (a payload naming one is refused). */
  audience?: string;
  /** Clock skew tolerated on `exp`, `nbf` and `iat` of protoguard-shaped payloads, seconds, 0..60. Default 30. */
  leewaySeconds?: number;
  /** Clock in milliseconds. Default `Date.now`. */
  now?: () => number;
}

/** Built by {@link createGatewayReader}: what the decision asks before looking for a bearer token. */
export interface GatewayReader {
  /** The header name, lower case. */
  readonly header: string;
  /** The `iss` of every trusted issuer whose payloads are mapped to external subjects. */
  readonly trustedIssuers: readonly string[];
  /**
   * The claims of the gateway header, or undefined when the request has none (the bearer token
   * decides then). `peer` is the socket's address; undefined (unknown) is never trusted.
   */
  read(headers: HeaderReader, peer: string | undefined): AccessTokenResult | undefined;
}

/** Largest header value looked at: a payload, not a token, but of the same order. */
const MAX_HEADER_LENGTH = 16_384;
const BASE64URL = /^[A-Za-z0-9_-]+={0,2}$/;
const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
const utf8 = new TextDecoder("utf-8", { fatal: true });

const UNTRUSTED: AccessTokenResult = Object.freeze({
  ok: false,
  reason: "GATEWAY_UNTRUSTED",
  error: Object.freeze(new Error("the gateway claims header came from a peer outside the trusted gateway ranges")),
});
const MALFORMED: AccessTokenResult = Object.freeze({
  ok: false,
  reason: "TOKEN_MALFORMED",
  error: Object.freeze(
    new TokenRejectedError("TOKEN_STRUCTURE", "the gateway claims header is not a JSON object (or its base64url)"),
  ),
});

/**
 * Creates the gateway-mode reader. Everything is validated now.
 *
 * @throws {TypeError} for a missing or malformed header name, no trusted peers, or bad issuers.
 * @throws {RangeError} for a malformed peer range or leeway.
 * @example
 * ```ts
 * const gateway = createGatewayReader({ header: "x-jwt-payload", trustedPeers: ["10.0.0.0/8"] });
 * const auth = createAuth({ verifier, principals, identities, gateway, services });
 * ```
 */
export function createGatewayReader(options: GatewayOptions): GatewayReader {
  const header = typeof options.header === "string" ? options.header.toLowerCase() : "";
  if (!HEADER_NAME.test(header) || header === "authorization") {
    throw new TypeError(
      `gateway.header must be a header name other than authorization, got ${JSON.stringify(options.header)}`,
    );
  }
  if (!Array.isArray(options.trustedPeers) || options.trustedPeers.length === 0) {
    throw new TypeError("gateway.trustedPeers must list the gateways' addresses or CIDR ranges");
  }
  const peers = parseTrustedProxies(options.trustedPeers);
  const issuers = new Map(
    resolveTrustedIssuers(options.trustedIssuers ?? []).map((config) => [config.issuer, config] as const),
  );
  const leewaySeconds = options.leewaySeconds ?? TOKEN_DEFAULTS.leewaySeconds;
  const maxLeeway = TOKEN_DEFAULTS.maxLeewaySeconds;
  if (!(Number.isInteger(leewaySeconds) && leewaySeconds >= 0 && leewaySeconds <= maxLeeway)) {
    throw new RangeError(`gateway.leewaySeconds must be an integer within 0..${maxLeeway}`);
  }
  const rules: ClaimRules = Object.freeze({
    issuer: options.issuer,
    audience: options.audience,
    leewaySeconds,
    // The gateway's issuer decides lifetimes.
    maxLifetime: Object.freeze({ access: Infinity, refresh: Infinity }),
    userIdClaim: userIdClaimName(options.userIdClaim, DEFAULT_USER_ID_CLAIM, "gateway.userIdClaim"),
    requireJti: true,
  });
  const now = options.now ?? Date.now;

  function trusted(peer: string | undefined): boolean {
    const address = canonicalAddress(peer);
    return address !== undefined && peers.check(address, isIPv4(address) ? "ipv4" : "ipv6");
  }

  return Object.freeze({
    header,
    trustedIssuers: Object.freeze([...issuers.keys()]),
    read(headers: HeaderReader, peer: string | undefined): AccessTokenResult | undefined {
      const value = headers.get(header);
      if (value === null) return undefined;
      if (!trusted(peer)) return UNTRUSTED;
      const payload = decodePayload(value);
      if (payload === undefined) return MALFORMED;
      try {
        const iss = Object.hasOwn(payload, "iss") ? payload.iss : undefined;
        const config = typeof iss === "string" ? issuers.get(iss) : undefined;
        const claims =
          config !== undefined
            ? checkExternalClaims(payload, config, value, now() / 1000)
            : checkClaims(payload, "access", rules, now() / 1000);
        return { ok: true, claims };
      } catch (error) {
        return failure(error);
      }
    },
  });
}

/** The JSON object in a header value: plain JSON, or base64url (Envoy) of it. */
function decodePayload(raw: string): Record<string, unknown> | undefined {
  const value = raw.trim();
  if (value.length === 0 || value.length > MAX_HEADER_LENGTH) return undefined;
  try {
    const json = value.startsWith("{")
      ? value
      : BASE64URL.test(value)
        ? utf8.decode(Buffer.from(value.replace(/=+$/, ""), "base64url"))
        : undefined;
    if (json === undefined) return undefined;
    const parsed: unknown = JSON.parse(json);
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
