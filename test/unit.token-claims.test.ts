/**
 * Unit tests for src/token/claims.ts. The clock is a parameter (`nowSeconds`), frozen at NOW;
 * failures are asserted by their stable `code` (and `claim`), never by message.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkClaims, parseUserId, refuseUnverified, userIdClaimName, type ClaimRules } from "../src/token/claims.js";
import { TokenRejectedError, type TokenRejectionCode } from "../src/token/errors.js";

const NOW = 1_800_000_000;

const RULES: ClaimRules = {
  issuer: undefined,
  audience: undefined,
  leewaySeconds: 0,
  maxLifetime: { access: 300, refresh: 86_400 },
  userIdClaim: "user_id",
  requireJti: true,
};

const access = (extra: Record<string, unknown> = {}) => ({
  token_type: "access",
  exp: NOW + 60,
  iat: NOW - 60,
  jti: "j1",
  user_id: 7,
  ...extra,
});

function rejection(fn: () => unknown, code: TokenRejectionCode, claim?: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof TokenRejectedError, String(error));
    assert.equal(error.code, code);
    if (claim !== undefined) assert.equal(error.claim, claim);
    return true;
  });
}

describe("checkClaims", () => {
  it("returns the claims of a valid token, frozen", () => {
    const claims = checkClaims(access(), "access", RULES, NOW);
    assert.equal(claims.userId, 7);
    assert.equal(claims.jti, "j1");
    assert.equal(claims.issuedAt, NOW - 60);
    assert.equal(claims.expiresAt, NOW + 60);
    assert.equal(claims.tokenType, "access");
    assert.ok(Object.isFrozen(claims));
    assert.ok(Object.isFrozen(claims.payload));
  });

  it("refuses a payload that is not an object", () => {
    for (const payload of [null, 1, "x", []])
      rejection(() => checkClaims(payload, "access", RULES, NOW), "CLAIMS_NOT_OBJECT");
  });

  it("requires exp and iat as finite numbers", () => {
    const { exp: _exp, ...noExp } = access();
    rejection(() => checkClaims(noExp, "access", RULES, NOW), "CLAIM_MISSING", "exp");
    rejection(() => checkClaims(access({ iat: undefined }), "access", RULES, NOW), "CLAIM_MISSING", "iat");
    rejection(() => checkClaims(access({ exp: Infinity }), "access", RULES, NOW), "CLAIM_INVALID", "exp");
    rejection(() => checkClaims(access({ iat: "1" }), "access", RULES, NOW), "CLAIM_INVALID", "iat");
    rejection(() => checkClaims(access({ nbf: Number.NaN }), "access", RULES, NOW), "CLAIM_INVALID", "nbf");
  });

  it("tells a wrong token type from an unknown one", () => {
    rejection(() => checkClaims(access(), "refresh", RULES, NOW), "WRONG_TYPE", "token_type");
    rejection(() => checkClaims(access({ token_type: "id" }), "access", RULES, NOW), "CLAIM_INVALID", "token_type");
  });

  it("checks issuer and audience only as configured, by exact equality", () => {
    const rules = { ...RULES, issuer: "https://issuer", audience: "api" };
    assert.equal(checkClaims(access({ iss: "https://issuer", aud: "api" }), "access", rules, NOW).userId, 7);
    assert.equal(checkClaims(access({ iss: "https://issuer", aud: ["x", "api"] }), "access", rules, NOW).userId, 7);
    rejection(() => checkClaims(access({ iss: "https://other", aud: "api" }), "access", rules, NOW), "ISSUER_MISMATCH");
    rejection(
      () => checkClaims(access({ iss: "https://issuer", aud: "API" }), "access", rules, NOW),
      "AUDIENCE_MISMATCH",
    );
    rejection(() => checkClaims(access({ iss: "https://issuer" }), "access", rules, NOW), "AUDIENCE_MISMATCH");
    // A token naming an audience when none is configured is not for us.
    rejection(() => checkClaims(access({ aud: "api" }), "access", RULES, NOW), "AUDIENCE_MISMATCH");
  });

  it("reads the user id from the configured claim, and refuses bad ones", () => {
    const rules = { ...RULES, userIdClaim: "uid" };
    assert.equal(checkClaims(access({ uid: "42" }), "access", rules, NOW).userId, 42);
    rejection(() => checkClaims(access(), "access", rules, NOW), "CLAIM_INVALID", "uid");
    rejection(() => checkClaims(access({ user_id: 0 }), "access", RULES, NOW), "CLAIM_INVALID", "user_id");
  });

  it("requires a short jti unless requireJti is off", () => {
    rejection(() => checkClaims(access({ jti: undefined }), "access", RULES, NOW), "CLAIM_MISSING", "jti");
    rejection(() => checkClaims(access({ jti: "" }), "access", RULES, NOW), "CLAIM_INVALID", "jti");
    rejection(() => checkClaims(access({ jti: "x".repeat(256) }), "access", RULES, NOW), "CLAIM_INVALID", "jti");
    const { jti: _jti, ...noJti } = access();
    assert.equal(checkClaims(noJti, "access", { ...RULES, requireJti: false }, NOW).jti, "");
  });

  it("applies nbf, iat, lifetime and exp against the same instant, with leeway", () => {
    rejection(() => checkClaims(access({ nbf: NOW + 1 }), "access", RULES, NOW), "NOT_YET_VALID", "nbf");
    rejection(() => checkClaims(access({ iat: NOW + 1 }), "access", RULES, NOW), "ISSUED_IN_FUTURE", "iat");
    rejection(() => checkClaims(access({ iat: NOW - 60, exp: NOW + 241 }), "access", RULES, NOW), "LIFETIME_EXCEEDED");
    rejection(() => checkClaims(access({ exp: NOW }), "access", RULES, NOW), "EXPIRED", "exp");
    assert.equal(checkClaims(access({ exp: NOW }), "access", RULES, NOW - 0.001).expiresAt, NOW);
    const lenient = { ...RULES, leewaySeconds: 5 };
    assert.equal(checkClaims(access({ exp: NOW - 4, iat: NOW - 60 }), "access", lenient, NOW).userId, 7);
    assert.equal(checkClaims(access({ nbf: NOW + 5 }), "access", lenient, NOW).userId, 7);
  });

  it("reports EXPIRED only for a token that is otherwise fine", () => {
    rejection(() => checkClaims(access({ exp: NOW - 10, user_id: -1 }), "access", RULES, NOW), "CLAIM_INVALID");
    rejection(() => checkClaims(access({ exp: NOW - 10 }), "refresh", RULES, NOW), "WRONG_TYPE");
  });

  it("never reads claims from the prototype", () => {
    const payload = Object.create({ user_id: 7 }) as Record<string, unknown>;
    Object.assign(payload, access({ user_id: undefined }));
    delete payload["user_id"];
    rejection(() => checkClaims(payload, "access", RULES, NOW), "CLAIM_INVALID", "user_id");
  });
});

describe("parseUserId", () => {
  it("accepts positive 32-bit integers and their canonical decimal strings", () => {
    assert.equal(parseUserId(1), 1);
    assert.equal(parseUserId(2 ** 31 - 1), 2 ** 31 - 1);
    assert.equal(parseUserId("2147483647"), 2 ** 31 - 1);
    for (const value of [0, -1, 1.5, 2 ** 31, "0", "012", "2147483648", " 1", "1e3", null, undefined, true]) {
      assert.equal(parseUserId(value), undefined, String(value));
    }
  });
});

describe("userIdClaimName", () => {
  it("falls back, and refuses empty or registered names", () => {
    assert.equal(userIdClaimName(undefined, "user_id", "userIdClaim"), "user_id");
    assert.equal(userIdClaimName("uid", "user_id", "userIdClaim"), "uid");
    assert.throws(() => userIdClaimName("", "user_id", "userIdClaim"), RangeError);
    assert.throws(() => userIdClaimName("exp", "user_id", "userIdClaim"), RangeError);
  });
});

describe("refuseUnverified", () => {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

  it("refuses expired or foreign tokens cheaply, and lets the rest through", () => {
    refuseUnverified(encode(access()), RULES, NOW);
    rejection(() => refuseUnverified(encode(access({ exp: NOW })), RULES, NOW), "EXPIRED");
    const rules = { ...RULES, issuer: "https://issuer" };
    rejection(() => refuseUnverified(encode(access({ iss: "https://other" })), rules, NOW), "ISSUER_MISMATCH");
    rejection(() => refuseUnverified(encode(access()), rules, NOW), "ISSUER_MISMATCH");
    rejection(() => refuseUnverified(Buffer.from("not json").toString("base64url"), RULES, NOW), "CLAIMS_NOT_OBJECT");
    rejection(() => refuseUnverified(encode(null), RULES, NOW), "CLAIMS_NOT_OBJECT");
  });
});
