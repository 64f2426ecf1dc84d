import { createHmac, generateKeyPairSync, randomBytes, sign } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader } from "jose";
import type { JWK } from "jose";
import {
  createKeyring,
  createTokenIssuer,
  createTokenVerifier,
  generateKeyPairFiles,
  KeyConfigError,
  loadKeyFile,
} from "../src/exports/protoguard.js";
import { jwksDocument } from "../src/exports/core.js";
import type { KeyConfig, Keyring, TokenVerifierOptions } from "../src/exports/protoguard.js";
import type { VerifyResult } from "../src/exports/core.js";

const T0 = 1_750_000_000_000; // frozen clock, ms
const NOW_S = T0 / 1000;
const SECRET = "a-test-secret-that-is-at-least-32-bytes-long";

const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const rsa2 = generateKeyPairSync("rsa", { modulusLength: 2048 });
const ec = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
const attackerEc = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
const pem = (k: KeyObject) =>
  k.type === "private"
    ? (k.export({ type: "pkcs8", format: "pem" }) as string)
    : (k.export({ type: "spki", format: "pem" }) as string);

const b64u = (value: string | Buffer) => Buffer.from(value).toString("base64url");
const json = (value: unknown) => b64u(JSON.stringify(value));

/** Builds a compact JWS by hand: header and payload are raw JSON strings so odd values (1e400) survive. */
function handSigned(headerJson: string, payloadJson: string, signer: (input: string) => Buffer): string {
  const input = `${b64u(headerJson)}.${b64u(payloadJson)}`;
  return `${input}.${signer(input).toString("base64url")}`;
}
const hmacSigner = (secret: string | Buffer) => (input: string) => createHmac("sha256", secret).update(input).digest();
const ecSigner = (key: KeyObject) => (input: string) =>
  sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" });
const rsaSigner = (key: KeyObject) => (input: string) => sign("sha256", Buffer.from(input), key);

/** simplejwt-shaped claims at the frozen time. */
function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    token_type: "access",
    exp: NOW_S + 300,
    iat: NOW_S,
    jti: randomBytes(16).toString("hex"),
    user_id: 42,
    ...overrides,
  };
}

function hsToken(
  payload: Record<string, unknown>,
  header: Record<string, unknown> = { alg: "HS256", typ: "JWT" },
  secret = SECRET,
) {
  return handSigned(JSON.stringify(header), JSON.stringify(payload), hmacSigner(secret));
}

function reason(result: VerifyResult): string {
  return result.ok ? "OK" : result.reason;
}

/** The detailed code behind a refusal (TokenRejectedError or jose error), for log-level assertions. */
function code(result: VerifyResult): string | undefined {
  return result.ok ? undefined : (result.error as { code?: string }).code;
}

function clock(start = T0) {
  const c = { t: start, now: () => c.t };
  return c;
}

async function setup(keys: KeyConfig[], verifierOptions: Partial<TokenVerifierOptions> = {}) {
  const c = clock();
  const keyring = await createKeyring(keys);
  const issuer = createTokenIssuer({ keyring, now: c.now });
  const verifier = createTokenVerifier({ keyring, now: c.now, ...verifierOptions });
  return { c, keyring, issuer, verifier };
}

async function expectKeyError(keys: KeyConfig[], code: string) {
  await assert.rejects(createKeyring(keys), (err: unknown) => err instanceof KeyConfigError && err.code === code);
}

describe("round trip", () => {
  for (const [name, config] of [
    ["HS256", { alg: "HS256", secret: SECRET }],
    ["RS256", { alg: "RS256", privateKey: pem(rsa.privateKey) }],
    ["ES256", { alg: "ES256", privateKey: pem(ec.privateKey) }],
  ] as const) {
    it(`${name}: issues simplejwt-shaped tokens and verifies them`, async () => {
      const { issuer, verifier, keyring } = await setup([config as KeyConfig]);
      const issued = await issuer.issueAccess(42);
      assert.match(issued.jti, /^[0-9a-f]{32}$/);
      assert.equal(issued.issuedAt, NOW_S);
      assert.equal(issued.expiresAt, NOW_S + 300);
      const header = decodeProtectedHeader(issued.token);
      assert.deepEqual(header, { alg: name, kid: keyring.signingKey!.kid, typ: "JWT" });
      assert.deepEqual(Object.keys(decodeJwt(issued.token)), ["token_type", "exp", "iat", "jti", "user_id"]);
      const result = await verifier.verify(issued.token, "access");
      assert.ok(result.ok);
      assert.equal(result.claims.userId, 42);
      assert.equal(result.claims.jti, issued.jti);
      assert.equal(result.claims.tokenType, "access");
      assert.equal(result.claims.expiresAt, issued.expiresAt);
      const refresh = await issuer.issueRefresh(7);
      assert.equal(refresh.expiresAt, NOW_S + 86_400);
      assert.equal(reason(await verifier.verify(refresh.token, "refresh")), "OK");
    });
  }

  it("kid defaults: JWK thumbprint for asymmetric keys, a hash id (not the secret) for HS256", async () => {
    const keyring = await createKeyring([
      { alg: "ES256", privateKey: pem(ec.privateKey) },
      { alg: "HS256", secret: SECRET },
    ]);
    const thumb = await calculateJwkThumbprint(ec.publicKey.export({ format: "jwk" }) as JWK, "sha256");
    assert.equal(keyring.signingKey!.kid, thumb);
    const hsKid = [...keyring.keys.keys()].find((k) => k !== thumb)!;
    assert.ok(!hsKid.includes(SECRET) && hsKid.length < 32);
    assert.equal((await createKeyring([{ alg: "HS256", secret: SECRET }])).signingKey!.kid, hsKid, "stable");
  });

  it("publishes only public asymmetric keys in the JWKS", async () => {
    const keyring = await createKeyring([
      { alg: "RS256", privateKey: pem(rsa.privateKey) },
      { alg: "HS256", secret: SECRET },
      { alg: "ES256", privateKey: ec.privateKey },
    ]);
    const { keys } = keyring.publicJwks();
    assert.equal(keys.length, 2);
    for (const jwk of keys) {
      assert.equal(jwk.use, "sig");
      assert.ok(jwk.kid && jwk.alg);
      for (const secret of ["d", "p", "q", "dp", "dq", "qi", "k"]) assert.equal(secret in jwk, false);
    }
    const doc = jwksDocument(keyring);
    assert.equal(doc.headers["content-type"], "application/jwk-set+json");
    assert.deepEqual(JSON.parse(doc.body), { keys });
  });

  it("an HS256 key and an RS256 key share a keyring; a token without kid is then refused", async () => {
    const { verifier, keyring } = await setup([
      { alg: "HS256", secret: SECRET },
      { alg: "RS256", privateKey: pem(rsa.privateKey) },
    ]);
    const rsIssuer = createTokenIssuer({
      keyring: await createKeyring([{ alg: "RS256", privateKey: pem(rsa.privateKey) }]),
      now: () => T0,
    });
    assert.equal(reason(await verifier.verify((await rsIssuer.issueAccess(1)).token, "access")), "OK");
    assert.deepEqual([...keyring.algorithms].sort(), ["HS256", "RS256"]);
    assert.equal(reason(await verifier.verify(hsToken(claims()), "access")), "TOKEN_INVALID");
  });
});

describe("keys and rotation", () => {
  it("new key signs, old kid still verifies", async () => {
    const c = clock();
    const oldRing = await createKeyring([{ alg: "RS256", privateKey: pem(rsa.privateKey) }]);
    const oldToken = (await createTokenIssuer({ keyring: oldRing, now: c.now }).issueAccess(1)).token;
    const rotated = await createKeyring([
      { alg: "ES256", privateKey: pem(ec.privateKey) },
      { alg: "RS256", publicKey: pem(rsa.publicKey) },
    ]);
    const newToken = (await createTokenIssuer({ keyring: rotated, now: c.now }).issueAccess(2)).token;
    assert.equal(decodeProtectedHeader(newToken).kid, rotated.signingKey!.kid);
    assert.equal(decodeProtectedHeader(newToken).alg, "ES256");
    const verifier = createTokenVerifier({ keyring: rotated, now: c.now });
    assert.equal(reason(await verifier.verify(oldToken, "access")), "OK");
    assert.equal(reason(await verifier.verify(newToken, "access")), "OK");
    // The old keyring does not know the new kid.
    const oldVerifier = createTokenVerifier({ keyring: oldRing, now: c.now });
    assert.equal(reason(await oldVerifier.verify(newToken, "access")), "TOKEN_INVALID");
  });

  it("a verification-only keyring cannot issue", async () => {
    const keyring = await createKeyring([{ alg: "RS256", publicKey: pem(rsa.publicKey) }]);
    assert.throws(
      () => createTokenIssuer({ keyring }),
      (e: unknown) => e instanceof KeyConfigError && e.code === "NO_SIGNING_KEY",
    );
  });

  it("refuses unusable keys with stable codes", async () => {
    await expectKeyError([], "NO_KEYS");
    await expectKeyError([{ alg: "HS256", secret: "x".repeat(31) }], "KEY_TOO_SHORT");
    await expectKeyError([{ alg: "HS256", secret: new Uint8Array(16) }], "KEY_TOO_SHORT");
    const rsa1024 = generateKeyPairSync("rsa", { modulusLength: 1024 });
    await expectKeyError([{ alg: "RS256", privateKey: pem(rsa1024.privateKey) }], "KEY_TOO_SHORT");
    await expectKeyError([{ alg: "RS256", publicKey: rsa1024.publicKey }], "KEY_TOO_SHORT");
    const p384 = generateKeyPairSync("ec", { namedCurve: "secp384r1" });
    await expectKeyError([{ alg: "ES256", privateKey: pem(p384.privateKey) }], "KEY_CURVE_MISMATCH");
    await expectKeyError([{ alg: "RS256", privateKey: pem(ec.privateKey) }], "KEY_TYPE_MISMATCH");
    await expectKeyError([{ alg: "ES256", publicKey: pem(rsa.publicKey) }], "KEY_TYPE_MISMATCH");
    await expectKeyError([{ alg: "RS256", privateKey: pem(rsa.publicKey) }], "KEY_INVALID");
    await expectKeyError([{ alg: "HS256", secret: pem(rsa.publicKey) }], "KEY_TYPE_MISMATCH");
    await expectKeyError([{ alg: "RS256" }], "KEY_MISSING");
    await expectKeyError([{ alg: "PS256", secret: SECRET } as unknown as KeyConfig], "UNSUPPORTED_ALG");
    await expectKeyError(
      [{ alg: "RS256", privateKey: pem(rsa.privateKey), publicKey: pem(rsa2.publicKey) }],
      "KEY_PAIR_MISMATCH",
    );
    await expectKeyError(
      [
        { alg: "HS256", secret: SECRET, kid: "k1" },
        { alg: "HS256", secret: SECRET + "2", kid: "k1" },
      ],
      "DUPLICATE_KID",
    );
    await expectKeyError(
      [
        { alg: "RS256", privateKey: pem(rsa.privateKey) },
        { alg: "RS256", publicKey: pem(rsa.publicKey), kid: "other" },
      ],
      "DUPLICATE_KEY",
    );
    await expectKeyError([{ alg: "HS256", secret: SECRET, kid: "" }], "KID_INVALID");
  });

  it("accepts JWK, CryptoKey and KeyObject inputs", async () => {
    const jwk = rsa.privateKey.export({ format: "jwk" }) as JWK;
    const cryptoKey = await crypto.subtle.importKey(
      "jwk",
      ec.publicKey.export({ format: "jwk" }),
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["verify"],
    );
    const keyring = await createKeyring([
      { alg: "RS256", privateKey: jwk },
      { alg: "ES256", publicKey: cryptoKey },
    ]);
    assert.equal(keyring.keys.size, 2);
  });

  it("generateKeyPairFiles writes PKCS8/SPKI files (private 0600) that loadKeyFile reads", async () => {
    const dir = await mkdtemp(join(tmpdir(), "protoguard-keys-"));
    try {
      for (const alg of ["ES256", "RS256"] as const) {
        const out = join(dir, alg);
        const { privateKeyPath, publicKeyPath, kid } = await generateKeyPairFiles(alg, out);
        assert.equal((await stat(privateKeyPath)).mode & 0o777, 0o600);
        const priv = await loadKeyFile(privateKeyPath);
        const pub = await loadKeyFile(publicKeyPath);
        assert.ok(priv.privateKey && pub.publicKey);
        const signer = await createKeyring([{ alg, ...priv }]);
        assert.equal(signer.signingKey!.kid, kid);
        const verifierRing = await createKeyring([{ alg, ...pub }]);
        const token = (await createTokenIssuer({ keyring: signer, now: () => T0 }).issueAccess(3)).token;
        assert.equal(
          reason(await createTokenVerifier({ keyring: verifierRing, now: () => T0 }).verify(token, "access")),
          "OK",
        );
        await assert.rejects(generateKeyPairFiles(alg, out), { code: "EEXIST" });
      }
      const jwkPath = join(dir, "key.json");
      await writeFile(jwkPath, JSON.stringify({ ...ec.publicKey.export({ format: "jwk" }), kid: "from-file" }));
      const loaded = await loadKeyFile(jwkPath);
      assert.equal(loaded.kid, "from-file");
      assert.ok(loaded.publicKey);
      const junk = join(dir, "junk.txt");
      await writeFile(junk, "hello");
      await assert.rejects(
        loadKeyFile(junk),
        (e: unknown) => e instanceof KeyConfigError && e.code === "KEY_FILE_INVALID",
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("header and signature attacks", () => {
  let rsRing: Keyring;
  let rsKid: string;
  before(async () => {
    rsRing = await createKeyring([{ alg: "RS256", privateKey: pem(rsa.privateKey) }]);
    rsKid = rsRing.signingKey!.kid;
  });
  const rsVerifier = () => createTokenVerifier({ keyring: rsRing, now: () => T0 });

  it("unknown kid", async () => {
    const token = handSigned(
      JSON.stringify({ alg: "RS256", kid: "nope" }),
      JSON.stringify(claims()),
      rsaSigner(rsa.privateKey),
    );
    assert.equal(reason(await rsVerifier().verify(token, "access")), "TOKEN_INVALID");
    assert.equal(code(await rsVerifier().verify(token, "access")), "KID_UNKNOWN");
  });

  it("forgeries are refused synchronously for each algorithm, the genuine token is left to jose", async () => {
    const cases = [
      {
        ring: await createKeyring([{ alg: "HS256", secret: SECRET, kid: "k" }]),
        alg: "HS256",
        good: hmacSigner(SECRET),
        bad: hmacSigner(`${SECRET}-other`),
      },
      {
        ring: await createKeyring([{ alg: "ES256", privateKey: pem(ec.privateKey), kid: "k" }]),
        alg: "ES256",
        good: ecSigner(ec.privateKey),
        bad: ecSigner(attackerEc.privateKey),
      },
      {
        ring: await createKeyring([{ alg: "RS256", privateKey: pem(rsa.privateKey), kid: "k" }]),
        alg: "RS256",
        good: rsaSigner(rsa.privateKey),
        bad: rsaSigner(rsa2.privateKey),
      },
    ];
    for (const c of cases) {
      const verifier = createTokenVerifier({ keyring: c.ring, now: () => T0 });
      const header = JSON.stringify({ alg: c.alg, kid: "k" });
      const forged = handSigned(header, JSON.stringify(claims()), c.bad);
      assert.equal(code(verifier.peek(forged, "access")!), "SIGNATURE_INVALID", c.alg);
      const genuine = handSigned(header, JSON.stringify(claims()), c.good);
      assert.equal(verifier.peek(genuine, "access"), undefined, c.alg);
      assert.equal(reason(await verifier.verify(genuine, "access")), "OK", c.alg);
    }
  });

  it("wrong signature and tampered payload", async () => {
    const token = handSigned(
      JSON.stringify({ alg: "RS256", kid: rsKid }),
      JSON.stringify(claims()),
      rsaSigner(rsa2.privateKey),
    );
    assert.equal(reason(await rsVerifier().verify(token, "access")), "TOKEN_INVALID");
    assert.equal(code(await rsVerifier().verify(token, "access")), "SIGNATURE_INVALID");
    // The forgery is refused without a promise: peek knows it already.
    assert.equal(code(rsVerifier().peek(token, "access")!), "SIGNATURE_INVALID");
    const good = handSigned(
      JSON.stringify({ alg: "RS256", kid: rsKid }),
      JSON.stringify(claims()),
      rsaSigner(rsa.privateKey),
    );
    // A good signature is not judged early: jose decides, then the cache remembers.
    const verifier = rsVerifier();
    assert.equal(verifier.peek(good, "access"), undefined);
    assert.equal(reason(await verifier.verify(good, "access")), "OK");
    assert.equal(reason(verifier.peek(good, "access")!), "OK");
    const [h, , s] = good.split(".");
    const tampered = `${h}.${json(claims({ user_id: 1 }))}.${s}`;
    assert.equal(reason(await rsVerifier().verify(tampered, "access")), "TOKEN_INVALID");
  });

  it("alg confusion: HS256 token keyed with the RSA public PEM is refused", async () => {
    const publicPem = pem(rsa.publicKey);
    for (const header of [
      { alg: "HS256", kid: rsKid, typ: "JWT" },
      { alg: "HS256", typ: "JWT" },
    ]) {
      const token = hsToken(claims(), header, publicPem);
      const result = await rsVerifier().verify(token, "access");
      assert.equal(reason(result), "TOKEN_INVALID");
      // jose refuses HS256 outright: it is not in this keyring's allow-list.
      assert.equal(code(result), "ERR_JOSE_ALG_NOT_ALLOWED");
    }
    // With both algs allowed, the kid's binding still refuses the swap.
    const mixed = createTokenVerifier({
      keyring: await createKeyring([
        { alg: "RS256", publicKey: publicPem },
        { alg: "HS256", secret: SECRET },
      ]),
      now: () => T0,
    });
    for (const secret of [publicPem, SECRET]) {
      const result = await mixed.verify(hsToken(claims(), { alg: "HS256", kid: rsKid }, secret), "access");
      assert.equal(code(result), "ALG_MISMATCH");
    }
  });

  it("alg none in any casing", async () => {
    for (const alg of ["none", "NONE", "None"]) {
      const unsigned = `${json({ alg, typ: "JWT" })}.${json(claims())}.`;
      assert.equal(reason(await rsVerifier().verify(unsigned, "access")), "TOKEN_MALFORMED");
      const withSig = `${json({ alg, kid: rsKid })}.${json(claims())}.AAAA`;
      assert.equal(reason(await rsVerifier().verify(withSig, "access")), "TOKEN_INVALID");
    }
    const hs = createTokenVerifier({ keyring: await createKeyring([{ alg: "HS256", secret: SECRET }]), now: () => T0 });
    assert.equal(reason(await hs.verify(`${json({ alg: "none" })}.${json(claims())}.AAAA`, "access")), "TOKEN_INVALID");
  });

  it("unknown crit and b64:false are refused", async () => {
    const hs = createTokenVerifier({ keyring: await createKeyring([{ alg: "HS256", secret: SECRET }]), now: () => T0 });
    const crit = hsToken(claims(), { alg: "HS256", crit: ["x-custom"], "x-custom": 1 });
    assert.equal(reason(await hs.verify(crit, "access")), "TOKEN_INVALID");
    // Unencoded payload: signing input is header.payload with the payload used as-is.
    const header = json({ alg: "HS256", b64: false, crit: ["b64"] });
    const rawPayload = "abc";
    const b64false = `${header}.${rawPayload}.${hmacSigner(SECRET)(`${header}.${rawPayload}`).toString("base64url")}`;
    assert.equal(reason(await hs.verify(b64false, "access")), "TOKEN_INVALID");
    assert.equal(code(await hs.verify(b64false, "access")), "HEADER_INVALID");
    assert.equal(code(await hs.verify(crit, "access")), "ERR_JOSE_NOT_SUPPORTED");
    const b64True = hsToken(claims(), { alg: "HS256", b64: true, crit: ["b64"] });
    assert.equal(reason(await hs.verify(b64True, "access")), "TOKEN_INVALID");
  });

  it("keys embedded in the header (jwk, jku, x5c) are never used", async () => {
    const ecRing = await createKeyring([{ alg: "ES256", privateKey: pem(ec.privateKey) }]);
    const verifier = createTokenVerifier({ keyring: ecRing, now: () => T0 });
    const attackerJwk = attackerEc.publicKey.export({ format: "jwk" });
    const attackerKid = await calculateJwkThumbprint(attackerJwk as JWK, "sha256");
    for (const header of [
      { alg: "ES256", jwk: attackerJwk },
      { alg: "ES256", kid: attackerKid, jwk: attackerJwk },
      { alg: "ES256", kid: ecRing.signingKey!.kid, jwk: attackerJwk },
      { alg: "ES256", kid: ecRing.signingKey!.kid, jku: "http://127.0.0.1:1/jwks.json" },
      { alg: "ES256", x5c: ["MIIB"] },
    ]) {
      const token = handSigned(JSON.stringify(header), JSON.stringify(claims()), ecSigner(attackerEc.privateKey));
      assert.equal(
        reason(await verifier.verify(token, "access")),
        "TOKEN_INVALID",
        JSON.stringify(Object.keys(header)),
      );
    }
  });

  it("ES256 accepts only the 64-byte r||s signature form", async () => {
    const ecRing = await createKeyring([{ alg: "ES256", privateKey: pem(ec.privateKey) }]);
    const verifier = createTokenVerifier({ keyring: ecRing, now: () => T0 });
    const der = handSigned(JSON.stringify({ alg: "ES256" }), JSON.stringify(claims()), (i) =>
      sign("sha256", Buffer.from(i), ec.privateKey),
    );
    assert.equal(reason(await verifier.verify(der, "access")), "TOKEN_INVALID");
    const p1363 = handSigned(JSON.stringify({ alg: "ES256" }), JSON.stringify(claims()), ecSigner(ec.privateKey));
    assert.equal(reason(await verifier.verify(p1363, "access")), "OK");
  });

  it("structural pre-check: malformed tokens", async () => {
    const v = rsVerifier();
    for (const bad of [
      "",
      "abc",
      "a.b",
      "a.b.c.d",
      "a.b.c d",
      "a+b.c.d",
      "a.b.c=",
      `${"a".repeat(8190)}.b.c`,
      42 as unknown as string,
    ]) {
      assert.equal(reason(await v.verify(bad, "access")), "TOKEN_MALFORMED");
    }
    // Well-formed but meaningless: refused after decoding, not by the pre-check.
    assert.equal(reason(await v.verify("YQ.Yg.Yw", "access")), "TOKEN_INVALID");
    // One character is not a byte: "a.b.c" is not canonical base64url.
    assert.equal(code(await v.verify("a.b.c", "access")), "NOT_CANONICAL");
  });
});

describe("claims", () => {
  const hsVerifier = async (options: Partial<TokenVerifierOptions> = {}) =>
    createTokenVerifier({
      keyring: await createKeyring([{ alg: "HS256", secret: SECRET }]),
      now: () => T0,
      cache: { maxEntries: 0 },
      ...options,
    });

  it("accepts a token made by another implementation (simplejwt shape, no kid)", async () => {
    const token = handSigned(
      '{"alg":"HS256","typ":"JWT"}',
      `{"token_type":"access","exp":${NOW_S + 300},"iat":${NOW_S},"jti":"3f1c5e0a9b7d4e2c8a6f1b3d5c7e9a0b","user_id":12}`,
      hmacSigner(SECRET),
    );
    const result = await (await hsVerifier()).verify(token, "access");
    assert.ok(result.ok);
    assert.equal(result.claims.userId, 12);
    assert.equal(result.claims.jti, "3f1c5e0a9b7d4e2c8a6f1b3d5c7e9a0b");
  });

  it("expiry, leeway (default 30 s)", async () => {
    const c = clock();
    const v = await hsVerifier({ now: c.now });
    const token = hsToken(claims({ exp: NOW_S + 10 }));
    c.t = T0 + 10_000;
    assert.equal(reason(await v.verify(token, "access")), "OK");
    c.t = T0 + 39_000;
    assert.equal(reason(await v.verify(token, "access")), "OK");
    c.t = T0 + 40_000;
    assert.equal(reason(await v.verify(token, "access")), "TOKEN_EXPIRED");
    const strict = await hsVerifier({ now: c.now, leewaySeconds: 0 });
    c.t = T0 + 10_000;
    assert.equal(reason(await strict.verify(token, "access")), "TOKEN_EXPIRED");
    assert.throws(
      () => createTokenVerifier({ keyring: undefined as never, jwksUrl: "https://x.example/jwks", leewaySeconds: 61 }),
      RangeError,
    );
  });

  it("nbf and iat in the future", async () => {
    const v = await hsVerifier();
    assert.equal(code(await v.verify(hsToken(claims({ nbf: NOW_S + 120 })), "access")), "NOT_YET_VALID");
    assert.equal(reason(await v.verify(hsToken(claims({ nbf: NOW_S + 20 })), "access")), "OK");
    assert.equal(
      code(await v.verify(hsToken(claims({ iat: NOW_S + 120, exp: NOW_S + 300 })), "access")),
      "ISSUED_IN_FUTURE",
    );
    assert.equal(reason(await v.verify(hsToken(claims({ iat: NOW_S + 20 })), "access")), "OK");
  });

  it("exp/iat/nbf must be finite numbers; exp and iat required", async () => {
    const v = await hsVerifier();
    const base = `"token_type":"access","jti":"abc","user_id":1`;
    for (const body of [
      `{${base},"iat":${NOW_S},"exp":1e400}`,
      `{${base},"iat":1e400,"exp":${NOW_S + 60}}`,
      `{${base},"iat":-1e400,"exp":${NOW_S + 60}}`,
      `{${base},"iat":${NOW_S},"exp":${NOW_S + 60},"nbf":-1e400}`,
      `{${base},"iat":${NOW_S},"exp":"${NOW_S + 60}"}`,
      `{${base},"iat":${NOW_S}}`,
      `{${base},"exp":${NOW_S + 60}}`,
      `[1,2]`,
      `"just a string"`,
    ]) {
      const token = handSigned('{"alg":"HS256"}', body, hmacSigner(SECRET));
      const result = await v.verify(token, "access");
      assert.equal(reason(result), "TOKEN_INVALID", body);
      assert.match(code(result) ?? "", /^(CLAIM_INVALID|CLAIM_MISSING|CLAIMS_NOT_OBJECT)$/, body);
    }
  });

  it("iss and aud match exactly", async () => {
    const v = await hsVerifier({ issuer: "https://auth.example.com", audience: "api" });
    const ok = hsToken(claims({ iss: "https://auth.example.com", aud: "api" }));
    assert.equal(reason(await v.verify(ok, "access")), "OK");
    assert.equal(
      reason(await v.verify(hsToken(claims({ iss: "https://auth.example.com", aud: ["other", "api"] })), "access")),
      "OK",
    );
    for (const overrides of [
      { iss: "https://auth.example.com.evil.test", aud: "api" },
      { iss: "https://auth.example", aud: "api" },
      { aud: "api" },
      { iss: "https://auth.example.com", aud: "api2" },
      { iss: "https://auth.example.com", aud: "ap" },
      { iss: "https://auth.example.com", aud: ["apis"] },
      { iss: "https://auth.example.com" },
    ]) {
      assert.equal(
        reason(await v.verify(hsToken(claims(overrides)), "access")),
        "TOKEN_INVALID",
        JSON.stringify(overrides),
      );
    }
    // A token naming an audience is refused by a verifier that has none (RFC 7519 §4.1.3).
    assert.equal(reason(await (await hsVerifier()).verify(hsToken(claims({ aud: "api" })), "access")), "TOKEN_INVALID");
  });

  it("access and refresh tokens cannot be swapped", async () => {
    const { issuer, verifier } = await setup([{ alg: "HS256", secret: SECRET }]);
    const access = (await issuer.issueAccess(1)).token;
    const refresh = (await issuer.issueRefresh(1)).token;
    assert.equal(reason(await verifier.verify(refresh, "access")), "TOKEN_WRONG_TYPE");
    assert.equal(reason(await verifier.verify(access, "refresh")), "TOKEN_WRONG_TYPE");
    const v = await hsVerifier();
    assert.equal(reason(await v.verify(hsToken(claims({ token_type: "sliding" })), "access")), "TOKEN_INVALID");
    assert.equal(reason(await v.verify(hsToken(claims({ token_type: undefined })), "access")), "TOKEN_INVALID");
  });

  it("user id: positive 32-bit integer, as number or decimal string", async () => {
    const v = await hsVerifier();
    for (const [value, expected] of [
      [12, 12],
      ["12", 12],
      [2147483647, 2147483647],
      ["2147483647", 2147483647],
    ] as const) {
      const result = await v.verify(hsToken(claims({ user_id: value })), "access");
      assert.ok(result.ok, String(value));
      assert.equal(result.claims.userId, expected);
    }
    for (const value of [
      "12a",
      "012",
      " 12",
      "1e3",
      "",
      -1,
      0,
      1.5,
      2 ** 31,
      "2147483648",
      1e300,
      "99999999999999999999",
      null,
      true,
      [12],
      { id: 12 },
    ]) {
      assert.equal(
        reason(await v.verify(hsToken(claims({ user_id: value })), "access")),
        "TOKEN_INVALID",
        JSON.stringify(value),
      );
    }
    assert.equal(reason(await v.verify(hsToken(claims({ user_id: undefined })), "access")), "TOKEN_INVALID");
    const custom = await hsVerifier({ userIdClaim: "sub" });
    assert.equal(reason(await custom.verify(hsToken(claims({ user_id: undefined, sub: "5" })), "access")), "OK");
  });

  it("__proto__ and constructor claims grant nothing", async () => {
    const v = await hsVerifier();
    const viaProto = handSigned(
      '{"alg":"HS256"}',
      `{"token_type":"access","exp":${NOW_S + 60},"iat":${NOW_S},"jti":"j","__proto__":{"user_id":5,"token_type":"access"}}`,
      hmacSigner(SECRET),
    );
    assert.equal(reason(await v.verify(viaProto, "access")), "TOKEN_INVALID");
    assert.equal(code(await v.verify(viaProto, "access")), "CLAIM_INVALID");
    const extra = handSigned(
      '{"alg":"HS256"}',
      `{"token_type":"access","exp":${NOW_S + 60},"iat":${NOW_S},"jti":"j","user_id":5,"__proto__":{"is_superuser":true},"constructor":{"prototype":{"is_staff":true}}}`,
      hmacSigner(SECRET),
    );
    const result = await v.verify(extra, "access");
    assert.ok(result.ok);
    assert.equal(Object.getPrototypeOf(result.claims.payload), Object.prototype);
    assert.equal((result.claims.payload as Record<string, unknown>).is_superuser, undefined);
    assert.equal(({} as Record<string, unknown>).is_staff, undefined);
    assert.ok(Object.isFrozen(result.claims.payload));
  });

  it("jti is required by default", async () => {
    assert.equal(
      reason(await (await hsVerifier()).verify(hsToken(claims({ jti: undefined })), "access")),
      "TOKEN_INVALID",
    );
    assert.equal(reason(await (await hsVerifier()).verify(hsToken(claims({ jti: 5 })), "access")), "TOKEN_INVALID");
    const lax = await hsVerifier({ requireJti: false });
    const result = await lax.verify(hsToken(claims({ jti: undefined })), "access");
    assert.ok(result.ok);
    assert.equal(result.claims.jti, "");
  });

  it("exp - iat above the maximum lifetime is refused", async () => {
    const v = await hsVerifier();
    assert.equal(code(await v.verify(hsToken(claims({ exp: NOW_S + 3600 })), "access")), "LIFETIME_EXCEEDED");
    assert.equal(
      reason(await v.verify(hsToken(claims({ token_type: "refresh", exp: NOW_S + 86_400 })), "refresh")),
      "OK",
    );
    assert.equal(
      reason(await v.verify(hsToken(claims({ token_type: "refresh", exp: NOW_S + 86_401 })), "refresh")),
      "TOKEN_LIFETIME_EXCEEDED",
    );
    const longer = await hsVerifier({ maxLifetimeSeconds: { access: 3600, refresh: 86_400 } });
    assert.equal(reason(await longer.verify(hsToken(claims({ exp: NOW_S + 3600 })), "access")), "OK");
  });

  it("issuer refuses bad user ids and reserved extra claims", async () => {
    const { issuer, verifier } = await setup([{ alg: "HS256", secret: SECRET }], { issuer: "me", audience: "you" });
    for (const id of [0, -1, 1.5, 2 ** 31, Number.NaN]) await assert.rejects(issuer.issueAccess(id), RangeError);
    await assert.rejects(issuer.issueAccess(1, { exp: 1 }), RangeError);
    await assert.rejects(issuer.issueAccess(1, { user_id: 2 }), RangeError);
    const withIss = createTokenIssuer({
      keyring: await createKeyring([{ alg: "HS256", secret: SECRET }]),
      issuer: "me",
      audience: "you",
      now: () => T0,
    });
    const issued = await withIss.issueAccess(9, { scope: "read" });
    const result = await verifier.verify(issued.token, "access");
    assert.ok(result.ok);
    assert.equal(result.claims.payload.iss, "me");
    assert.equal((result.claims.payload as Record<string, unknown>).scope, "read");
  });
});

describe("cache", () => {
  it("hit returns the same claims, and expiry is still enforced on cached entries", async () => {
    const { c, issuer, verifier } = await setup([{ alg: "HS256", secret: SECRET }]);
    const { token } = await issuer.issueAccess(5);
    const first = await verifier.verify(token, "access");
    const second = await verifier.verify(token, "access");
    assert.ok(first.ok && second.ok);
    assert.equal(second.claims, first.claims);
    assert.equal(verifier.cacheSize, 1);
    assert.equal(reason(await verifier.verify(token, "refresh")), "TOKEN_WRONG_TYPE");
    c.t = T0 + (300 + 30) * 1000;
    assert.equal(reason(await verifier.verify(token, "access")), "TOKEN_EXPIRED");
    assert.equal(verifier.cacheSize, 0);
  });

  it("is bounded and can be disabled", async () => {
    const { issuer, verifier } = await setup([{ alg: "HS256", secret: SECRET }], { cache: { maxEntries: 2 } });
    for (let id = 1; id <= 5; id++)
      assert.ok((await verifier.verify((await issuer.issueAccess(id)).token, "access")).ok);
    assert.equal(verifier.cacheSize, 2);
    const off = await setup([{ alg: "HS256", secret: SECRET }], { cache: { maxEntries: 0 } });
    const { token } = await off.issuer.issueAccess(1);
    const a = await off.verifier.verify(token, "access");
    const b = await off.verifier.verify(token, "access");
    assert.ok(a.ok && b.ok);
    assert.notEqual(a.claims, b.claims);
    assert.equal(off.verifier.cacheSize, 0);
  });

  it("failures are not cached", async () => {
    const { verifier } = await setup([{ alg: "HS256", secret: SECRET }]);
    await verifier.verify(hsToken(claims({ user_id: "x" })), "access");
    assert.equal(verifier.cacheSize, 0);
  });
});

describe("remote JWKS", () => {
  let server: ReturnType<typeof createServer>;
  let url: string;
  let requests = 0;
  let keyring: Keyring;

  before(async () => {
    keyring = await createKeyring([
      { alg: "ES256", privateKey: pem(ec.privateKey) },
      { alg: "RS256", privateKey: pem(rsa.privateKey) },
    ]);
    const doc = jwksDocument(keyring);
    server = createServer((req, res) => {
      requests++;
      if (req.url !== "/.well-known/jwks.json") {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, doc.headers).end(doc.body);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it("an external issuer's own user claim maps to a local user, for its tokens only", async () => {
    const local = await createKeyring([{ alg: "HS256", secret: SECRET, kid: "local" }]);
    const verifier = createTokenVerifier({ keyring: local, jwksUrl: url, jwksUserIdClaim: "uid", now: () => T0 });
    const external = handSigned(
      JSON.stringify({ alg: "ES256", kid: keyring.signingKey!.kid }),
      JSON.stringify(claims({ user_id: undefined, uid: 41 })),
      ecSigner(ec.privateKey),
    );
    const result = await verifier.verify(external, "access");
    assert.ok(result.ok, result.ok ? "" : String(result.error));
    assert.equal(result.claims.userId, 41);
    // Local tokens keep the local claim: `uid` means nothing in them.
    const localToken = hsToken(claims({ user_id: undefined, uid: 41 }), { alg: "HS256", kid: "local" });
    assert.equal(code(await verifier.verify(localToken, "access")), "CLAIM_INVALID");
    assert.equal(reason(await verifier.verify(hsToken(claims(), { alg: "HS256", kid: "local" }), "access")), "OK");
  });

  it("a second verifier consumes the published keys", async () => {
    const issuer = createTokenIssuer({ keyring, now: () => T0 });
    const verifier = createTokenVerifier({
      jwksUrl: url,
      now: () => T0,
      jwksOptions: { cacheMaxAge: 60_000, cooldownDuration: 10_000 },
    });
    const issued = await issuer.issueAccess(77);
    const result = await verifier.verify(issued.token, "access");
    assert.ok(result.ok, result.ok ? "" : String(result.error));
    assert.equal(result.claims.userId, 77);
    // The RS256 key (not signing) is published too.
    const rsOnly = await createKeyring([{ alg: "RS256", privateKey: pem(rsa.privateKey) }]);
    const rsToken = (await createTokenIssuer({ keyring: rsOnly, now: () => T0 }).issueAccess(78)).token;
    assert.equal(reason(await verifier.verify(rsToken, "access")), "OK");
    // HMAC tokens are never checked against a JWKS.
    assert.equal(
      reason(await verifier.verify(hsToken(claims(), { alg: "HS256", kid: keyring.signingKey!.kid }), "access")),
      "TOKEN_INVALID",
    );
    const unknown = handSigned(
      JSON.stringify({ alg: "ES256", kid: "nope" }),
      JSON.stringify(claims()),
      ecSigner(attackerEc.privateKey),
    );
    assert.equal(reason(await verifier.verify(unknown, "access")), "TOKEN_INVALID");
  });

  it("an expired token costs no JWKS fetch", async () => {
    const c = clock();
    const verifier = createTokenVerifier({ jwksUrl: url, now: c.now });
    const issued = await createTokenIssuer({ keyring, now: () => T0 - 3_600_000 }).issueAccess(1);
    const before = requests;
    assert.equal(reason(await verifier.verify(issued.token, "access")), "TOKEN_EXPIRED");
    assert.equal(requests, before);
  });

  it("JWKS down → KEYS_UNAVAILABLE (fail closed)", async () => {
    const dead = createServer();
    await new Promise<void>((resolve) => dead.listen(0, "127.0.0.1", resolve));
    const port = (dead.address() as AddressInfo).port;
    await new Promise<void>((resolve) => dead.close(() => resolve()));
    const verifier = createTokenVerifier({
      jwksUrl: `http://127.0.0.1:${port}/jwks.json`,
      now: () => T0,
      jwksOptions: { timeoutDuration: 2000 },
    });
    const issued = await createTokenIssuer({ keyring, now: () => T0 }).issueAccess(1);
    assert.equal(reason(await verifier.verify(issued.token, "access")), "KEYS_UNAVAILABLE");
    const notFound = createTokenVerifier({ jwksUrl: url.replace("jwks.json", "missing.json"), now: () => T0 });
    assert.equal(reason(await notFound.verify(issued.token, "access")), "KEYS_UNAVAILABLE");
  });

  it("refuses plain http for non-loopback hosts", () => {
    assert.throws(() => createTokenVerifier({ jwksUrl: "http://auth.example.com/jwks.json" }), RangeError);
  });
});
