/**
 * Token identity (issue 10, items 7 and 8): a token has exactly one accepted
 * spelling, refresh-token reuse detection and logout cannot be dodged with a
 * respelled twin, and time is compared at the precision the issuer writes,
 * so leeway 0 accepts a fresh token.
 */
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { AuthService } from "../gen/protoguard/v1/auth_pb.js";
import { createTestAuth, type TestAuth } from "../src/exports/testing.js";
import { createKeyring, createTokenIssuer, createTokenVerifier } from "../src/exports/protoguard.js";
import type { KeyConfig, TokenVerifier } from "../src/exports/protoguard.js";
import type { VerifyResult } from "../src/exports/core.js";
import { bearer, expectError } from "./helpers/connect.js";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/**
 * Every other spelling of `segment` that a lenient decoder reads as the same
 * bytes: the last character with other spare bits, or (length ≡ 0 mod 4) one
 * extra character, which decoders drop.
 */
function segmentTwins(segment: string): string[] {
  const spare = segment.length % 4;
  if (spare === 0) return [...ALPHABET].map((c) => segment + c);
  const mask = spare === 2 ? 0x30 : 0x3c; // the bits the last character really carries
  const last = ALPHABET.indexOf(segment.at(-1)!);
  const head = segment.slice(0, -1);
  return [...ALPHABET].filter((_, value) => value !== last && (value & mask) === (last & mask)).map((c) => head + c);
}

/** All spellings of the token's signature's last character (4 for HS256's 43 characters, 16 for RS/ES256's). */
function signatureSpellings(token: string): string[] {
  const dot = token.lastIndexOf(".");
  return [token, ...segmentTwins(token.slice(dot + 1)).map((s) => token.slice(0, dot + 1) + s)];
}

/** Twins in each of the three segments. */
function allTwins(token: string): string[] {
  const [h, p, s] = token.split(".") as [string, string, string];
  return [
    ...segmentTwins(h).map((x) => `${x}.${p}.${s}`),
    ...segmentTwins(p).map((x) => `${h}.${x}.${s}`),
    ...segmentTwins(s).map((x) => `${h}.${p}.${x}`),
  ];
}

function rejection(result: VerifyResult): string {
  return result.ok ? "OK" : `${result.reason}/${(result.error as { code?: string }).code}`;
}

const pkcs8 = (key: KeyObject) => key.export({ type: "pkcs8", format: "pem" }) as string;

const KEYS: Record<string, KeyConfig> = {
  HS256: { alg: "HS256", secret: randomBytes(32) },
  RS256: { alg: "RS256", privateKey: pkcs8(generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey) },
  ES256: { alg: "ES256", privateKey: pkcs8(generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey) },
};

describe("canonical tokens: one accepted spelling", () => {
  for (const [alg, key] of Object.entries(KEYS)) {
    it(`${alg}: of the spellings of the signature's last character only the issued one verifies`, async () => {
      const keyring = await createKeyring([key]);
      const issuer = createTokenIssuer({ keyring });
      // Cache off for one verifier, on for the other: a cached canonical token must not vouch for its twin.
      for (const cache of [{ maxEntries: 0 }, { maxEntries: 100 }]) {
        const verifier = createTokenVerifier({ keyring, cache });
        const { token } = await issuer.issueAccess(7);
        const spellings = signatureSpellings(token);
        assert.equal(spellings.length, alg === "HS256" ? 4 : 16);
        assert.equal(new Set(spellings.map((s) => Buffer.from(s.split(".")[2]!, "base64url").toString("hex"))).size, 1);
        const results = [];
        for (const s of spellings) results.push(rejection(await verifier.verify(s, "access")));
        assert.deepEqual(results, ["OK", ...spellings.slice(1).map(() => "TOKEN_MALFORMED/NOT_CANONICAL")]);
        // peek (the auth layer's synchronous path, with the node:crypto pre-check) agrees.
        for (const s of spellings.slice(1))
          assert.equal(rejection(verifier.peek(s, "access")!), "TOKEN_MALFORMED/NOT_CANONICAL");
        // Refresh tokens go through the same check.
        const refresh = await issuer.issueRefresh(7);
        for (const s of signatureSpellings(refresh.token).slice(1)) {
          assert.equal(rejection(await verifier.verify(s, "refresh")), "TOKEN_MALFORMED/NOT_CANONICAL");
        }
        assert.equal(rejection(await verifier.verify(refresh.token, "refresh")), "OK");
      }
    });
  }

  it("a twin in the header or payload segment, or a dangling extra character, is malformed too", async () => {
    const keyring = await createKeyring([KEYS.HS256!]);
    // A frozen clock: the length of a fractional iat would otherwise vary between tokens.
    const now = () => Math.floor(Date.now() / 1000) * 1000 + 250;
    const issuer = createTokenIssuer({ keyring, now });
    const verifier = createTokenVerifier({ keyring, now });
    // Vary the payload length so every residue modulo 4 turns up in the payload segment.
    const residues = new Set<number>();
    for (let pad = 0; pad < 4; pad++) {
      const { token } = await issuer.issueAccess(7, { x: "y".repeat(pad) });
      residues.add(token.split(".")[1]!.length % 4);
      assert.equal(rejection(await verifier.verify(token, "access")), "OK");
      for (const twin of allTwins(token)) {
        assert.equal(rejection(await verifier.verify(twin, "access")), "TOKEN_MALFORMED/NOT_CANONICAL", twin);
      }
    }
    assert.deepEqual([...residues].sort(), [0, 2, 3]);
  });

  it("a hand-made HS256 token (simplejwt's shape) with a respelled signature is refused, the original accepted", async () => {
    const secret = "a-test-secret-that-is-at-least-32-bytes-long";
    const keyring = await createKeyring([{ alg: "HS256", secret }]);
    const verifier = createTokenVerifier({ keyring, leewaySeconds: 0 });
    const now = Math.floor(Date.now() / 1000);
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ token_type: "access", exp: now + 300, iat: now, jti: "j1", user_id: 3 })}`;
    const token = `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
    const results = [];
    for (const s of signatureSpellings(token)) results.push(rejection(await verifier.verify(s, "access")));
    assert.deepEqual(results, [
      "OK",
      "TOKEN_MALFORMED/NOT_CANONICAL",
      "TOKEN_MALFORMED/NOT_CANONICAL",
      "TOKEN_MALFORMED/NOT_CANONICAL",
    ]);
  });
});

interface Fixture {
  t: TestAuth;
  client: Client<typeof AuthService>;
}

/** The AuthService behind the auth layer on the in-memory transport, optionally with another verifier. */
async function authServiceFixture(
  verifierFor: (verifier: TokenVerifier) => TokenVerifier = (verifier) => verifier,
): Promise<Fixture> {
  const t = await createTestAuth({
    routes: () => {},
    // Reuse detection as such: the reuse grace window (refresh-grace.test.ts) is off here.
    authService: ({ verifier }) => ({ verifier: verifierFor(verifier), refreshReuseGraceSeconds: 0 }),
  });
  return { t, client: createClient(AuthService, t.transport) };
}

describe("canonical tokens through the AuthService (in-memory transport)", () => {
  let f: Fixture;
  let n = 0;
  before(async () => {
    f = await authServiceFixture();
  });
  after(async () => {
    await f.t.close();
  });

  /** A fresh user's session: login, so the refresh token is on record. */
  async function session() {
    const username = `user${n++}`;
    await f.t.createUser({ username, password: "correct horse battery" });
    const { accessToken, refreshToken } = await f.client.login({ username, password: "correct horse battery" });
    return { accessToken, refreshToken };
  }

  it("WhoAmI: only the canonical spelling of an access token is served", async () => {
    const { accessToken } = await session();
    const [canonical, ...twins] = signatureSpellings(accessToken);
    assert.equal(twins.length, 3);
    assert.ok((await f.client.whoAmI({}, bearer(canonical!))).user?.username);
    for (const twin of twins)
      await expectError(f.client.whoAmI({}, bearer(twin)), Code.Unauthenticated, "TOKEN_MALFORMED");
  });

  it("a twin of an already-used refresh token is refused and revokes the family (reuse detected)", async () => {
    const first = await session();
    const second = await f.client.refresh({ refreshToken: first.refreshToken });
    for (const twin of signatureSpellings(first.refreshToken).slice(1)) {
      await expectError(f.client.refresh({ refreshToken: twin }), Code.Unauthenticated, "TOKEN_MALFORMED");
    }
    // The family is gone: the live successor and its access token stop working.
    await expectError(f.client.refresh({ refreshToken: second.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(f.client.whoAmI({}, bearer(second.accessToken)), Code.Unauthenticated, "TOKEN_REVOKED");
  });

  it("a twin of a live refresh token cannot rotate it: refused, and the family is revoked", async () => {
    const s = await session();
    const twin = signatureSpellings(s.refreshToken)[1]!;
    await expectError(f.client.refresh({ refreshToken: twin }), Code.Unauthenticated, "TOKEN_MALFORMED");
    await expectError(f.client.refresh({ refreshToken: s.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(f.client.whoAmI({}, bearer(s.accessToken)), Code.Unauthenticated, "TOKEN_REVOKED");
  });

  it("Logout with a twin is refused and leaves nothing usable behind", async () => {
    const s = await session();
    const twin = signatureSpellings(s.refreshToken)[2]!;
    await expectError(f.client.logout({ refreshToken: twin }), Code.Unauthenticated, "TOKEN_MALFORMED");
    // A refused Logout never leaves the session half-alive: the twin revoked it.
    await expectError(f.client.refresh({ refreshToken: s.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(f.client.whoAmI({}, bearer(s.accessToken)), Code.Unauthenticated, "TOKEN_REVOKED");
    // And logging out with the canonical token still succeeds (idempotent).
    await f.client.logout({ refreshToken: s.refreshToken });
  });

  it("after Logout with the canonical token, no twin refreshes or logs out", async () => {
    const s = await session();
    await f.client.logout({ refreshToken: s.refreshToken });
    for (const twin of signatureSpellings(s.refreshToken).slice(1)) {
      await expectError(f.client.refresh({ refreshToken: twin }), Code.Unauthenticated, "TOKEN_MALFORMED");
      await expectError(f.client.logout({ refreshToken: twin }), Code.Unauthenticated, "TOKEN_MALFORMED");
    }
    await expectError(f.client.refresh({ refreshToken: s.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
  });

  it("rotation and reuse detection still work for canonical tokens (keyed by jti)", async () => {
    const first = await session();
    const second = await f.client.refresh({ refreshToken: first.refreshToken });
    const third = await f.client.refresh({ refreshToken: second.refreshToken });
    assert.ok((await f.client.whoAmI({}, bearer(third.accessToken))).user);
    await expectError(f.client.refresh({ refreshToken: first.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(f.client.refresh({ refreshToken: third.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
  });
});

describe("refresh records are keyed by the verified jti, not by the token string", () => {
  let f: Fixture;
  let n = 0;
  before(async () => {
    // A verifier that, unlike protoguard's, reads any spelling (as a lenient
    // third-party verifier would): the store alone must still tell a twin
    // from a new token.
    f = await authServiceFixture((verifier) => ({
      verify: (token, expected) => verifier.verify(respell(token), expected),
      peek: (token, expected) => verifier.peek(respell(token), expected),
      leewaySeconds: verifier.leewaySeconds,
      get cacheSize() {
        return verifier.cacheSize;
      },
    }));
  });
  after(async () => {
    await f.t.close();
  });

  /** Each segment decoded and re-encoded: the canonical spelling, as a lenient decoder sees it. */
  function respell(token: string): string {
    return token
      .split(".")
      .map((s) => Buffer.from(s, "base64url").toString("base64url"))
      .join(".");
  }

  async function session() {
    const username = `lenient${n++}`;
    await f.t.createUser({ username, password: "correct horse battery" });
    return f.client.login({ username, password: "correct horse battery" });
  }

  it("a twin of a used refresh token is reuse: the family is revoked", async () => {
    const first = await session();
    const second = await f.client.refresh({ refreshToken: first.refreshToken });
    const twin = signatureSpellings(first.refreshToken)[3]!;
    await expectError(f.client.refresh({ refreshToken: twin }), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(f.client.refresh({ refreshToken: second.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
  });

  it("Logout with a twin ends the very session the token belongs to", async () => {
    const s = await session();
    await f.client.logout({ refreshToken: signatureSpellings(s.refreshToken)[1]! });
    await expectError(f.client.refresh({ refreshToken: s.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    await expectError(f.client.whoAmI({}, bearer(s.accessToken)), Code.Unauthenticated, "TOKEN_REVOKED");
  });
});

describe("time compared at one precision", () => {
  it("at every leeway 0..60, a token issued at any millisecond of a second verifies at once", async () => {
    const keyring = await createKeyring([KEYS.HS256!]);
    const failures: string[] = [];
    for (let leeway = 0; leeway <= 60; leeway++) {
      for (const ms of [0, 1, 500, 998, 999]) {
        const t = { now: 1_750_000_000_000 + 7 * 1000 + ms };
        const now = () => t.now;
        const issuer = createTokenIssuer({ keyring, now });
        const verifier = createTokenVerifier({ keyring, now, leewaySeconds: leeway, cache: { maxEntries: 0 } });
        for (const kind of ["access", "refresh"] as const) {
          const { token } = kind === "access" ? await issuer.issueAccess(1) : await issuer.issueRefresh(1);
          const r = await verifier.verify(token, kind);
          if (!r.ok) failures.push(`leeway ${leeway}, +${ms} ms, ${kind}: ${rejection(r)}`);
        }
      }
    }
    assert.deepEqual(failures, []);
  });

  it("leeway 0 on a real clock: 50 tokens issued and verified at once all verify", async () => {
    const keyring = await createKeyring([KEYS.HS256!]);
    const issuer = createTokenIssuer({ keyring });
    const verifier = createTokenVerifier({ keyring, leewaySeconds: 0 });
    const refused: string[] = [];
    for (let i = 0; i < 50; i++) {
      const { token } = await issuer.issueAccess(1);
      const r = await verifier.verify(token, "access");
      if (!r.ok) refused.push(rejection(r));
      // Spread the tokens over different milliseconds of a second.
      await new Promise((resolve) => setTimeout(resolve, 7));
    }
    assert.deepEqual(refused, []);
  });

  it("leeway 0 is still exact: iat a millisecond ahead is refused, exp is the first instant of expiry", async () => {
    const keyring = await createKeyring([KEYS.HS256!]);
    const t = { now: 1_750_000_007_500 };
    const verifier = createTokenVerifier({ keyring, now: () => t.now, leewaySeconds: 0, cache: { maxEntries: 0 } });
    const ahead = createTokenIssuer({ keyring, now: () => t.now + 1 });
    assert.equal(
      rejection(await verifier.verify((await ahead.issueAccess(1)).token, "access")),
      "TOKEN_INVALID/ISSUED_IN_FUTURE",
    );
    const issuer = createTokenIssuer({ keyring, now: () => t.now, accessTtlSeconds: 300 });
    const { token, expiresAt } = await issuer.issueAccess(1);
    t.now = expiresAt * 1000 - 1;
    assert.equal(rejection(await verifier.verify(token, "access")), "OK");
    t.now = expiresAt * 1000;
    assert.equal(rejection(await verifier.verify(token, "access")), "TOKEN_EXPIRED/EXPIRED");
  });

  it("integer iat/exp/nbf from other issuers (simplejwt) verify at leeway 0 mid-second", async () => {
    const secret = "a-test-secret-that-is-at-least-32-bytes-long";
    const keyring = await createKeyring([{ alg: "HS256", secret }]);
    const s = 1_750_000_007;
    for (const ms of [0, 1, 999]) {
      const verifier = createTokenVerifier({
        keyring,
        now: () => s * 1000 + ms,
        leewaySeconds: 0,
        cache: { maxEntries: 0 },
      });
      const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
      const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ token_type: "access", exp: s + 300, iat: s, nbf: s, jti: "j", user_id: 3 })}`;
      const token = `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
      assert.equal(rejection(await verifier.verify(token, "access")), "OK", `+${ms} ms`);
    }
  });
});
