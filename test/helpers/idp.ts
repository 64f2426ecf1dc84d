/**
 * A stand-in identity provider for tests: real RSA keys, a real JWKS served over HTTP on
 * loopback (per path, so several IdPs share one server), key rotation, going down, and a count
 * of fetches. Tokens are signed with jose exactly as an IdP signs them.
 */
import { once } from "node:events";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from "jose";

/** One signing key of a fake IdP. */
export interface IdpKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
}

/** Makes an RS256 (2048-bit) or ES256 key with `kid`. */
export async function idpKey(kid: string, alg: "RS256" | "ES256" = "RS256"): Promise<IdpKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

/** Signs `payload` with `key`, header `{ alg, typ: "JWT", kid }` like Keycloak, Auth0 and Entra ID. */
export function signToken(key: IdpKey, payload: JWTPayload, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(payload)
    .setProtectedHeader({ alg: (key.jwk.alg as string) ?? "RS256", typ: "JWT", kid: key.kid, ...header })
    .sign(key.privateKey);
}

/** A JWKS server: `publish(path, keys)` sets what `GET path` serves. */
export interface JwksServer {
  readonly origin: string;
  publish(path: string, keys: readonly IdpKey[]): void;
  /** GET requests served for `path` so far. */
  fetches(path: string): number;
  close(): Promise<void>;
}

/** Starts a JWKS server on 127.0.0.1 with a free port. */
export async function startJwksServer(): Promise<JwksServer> {
  const published = new Map<string, string>();
  const counts = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const path = req.url ?? "/";
    counts.set(path, (counts.get(path) ?? 0) + 1);
    const body = published.get(path);
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "application/json" }).end(body);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    publish(path, keys) {
      published.set(path, JSON.stringify({ keys: keys.map((k) => k.jwk) }));
    },
    fetches: (path) => counts.get(path) ?? 0,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A loopback URL nothing listens on (a server was bound there and closed). */
export async function deadUrl(path: string): Promise<string> {
  const server = http.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}${path}`;
}
