/** Unit tests for src/credential/bearer.ts: reading the bearer token before any cryptography. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MAX_AUTHORIZATION_LENGTH, parseAuthorization, readBearer } from "../src/credential/bearer.js";

const TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";

describe("parseAuthorization", () => {
  it("reads a bearer token, with the scheme in any case", () => {
    for (const scheme of ["Bearer", "bearer", "BEARER", "bEaReR"]) {
      assert.deepEqual(parseAuthorization(`${scheme} ${TOKEN}`), { kind: "token", token: TOKEN });
    }
  });

  it("calls anything else malformed", () => {
    for (const value of [
      "",
      "Bearer",
      "Bearer ",
      `Bearer  ${TOKEN}`, // two spaces
      `Basic ${TOKEN}`,
      `Bearer ${TOKEN} `,
      ` Bearer ${TOKEN}`,
      `Bearer ${TOKEN}, Bearer ${TOKEN}`, // the header sent twice, joined
      "Bearer a.b", // two segments
      "Bearer a.b.c.d",
      "Bearer a..c",
      "Bearer a+b.c/d.e=", // base64, not base64url
      `Bearer\t${TOKEN}`,
    ]) {
      assert.deepEqual(parseAuthorization(value), { kind: "malformed" }, JSON.stringify(value));
    }
  });

  it("refuses a value above the size cap before matching it", () => {
    const prefix = "Bearer a.b.";
    const atCap = prefix + "c".repeat(MAX_AUTHORIZATION_LENGTH - prefix.length);
    assert.equal(parseAuthorization(atCap).kind, "token");
    assert.equal(parseAuthorization(atCap + "c").kind, "malformed");
  });
});

describe("readBearer", () => {
  it("is none without the header, and parses it otherwise", () => {
    assert.deepEqual(readBearer(new Headers()), { kind: "none" });
    assert.deepEqual(readBearer(new Headers({ authorization: `Bearer ${TOKEN}` })), { kind: "token", token: TOKEN });
    assert.deepEqual(readBearer(new Headers({ authorization: "" })), { kind: "malformed" });
  });

  it("reads through any object with get()", () => {
    const reader = { get: (name: string) => (name === "authorization" ? `Bearer ${TOKEN}` : null) };
    assert.deepEqual(readBearer(reader), { kind: "token", token: TOKEN });
  });
});
