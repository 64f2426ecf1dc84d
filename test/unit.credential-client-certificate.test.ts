/**
 * `readClientCertificate`: which identity a verified client certificate
 * carries, as Node describes the certificate (`subjectAltName` and
 * `subject` text). Real certificates from openssl are in
 * service-mtls.test.ts; these are the shapes openssl will not easily make.
 */
import assert from "node:assert/strict";
import type { X509Certificate } from "node:crypto";
import { describe, it } from "node:test";
import { readClientCertificate } from "../src/exports/core.js";

function socket(subjectAltName: string | undefined, subject: string, authorized = true) {
  const certificate = { subjectAltName, subject } as unknown as X509Certificate;
  return { authorized, getPeerX509Certificate: () => certificate };
}

describe("readClientCertificate", () => {
  it("takes the one SPIFFE URI SAN, else the subject in RFC 4514 order", () => {
    assert.deepEqual(
      readClientCertificate(socket("DNS:billing.internal, URI:spiffe://example.org/billing", "O=Example\nCN=billing")),
      {
        identity: "spiffe://example.org/billing",
      },
    );
    assert.deepEqual(
      readClientCertificate(socket("DNS:reports.internal, URI:https://example.org/x", "C=DE\nO=Example\nCN=reports")),
      {
        identity: "CN=reports,O=Example,C=DE",
      },
    );
    assert.deepEqual(readClientCertificate(socket(undefined, "CN=solo")), { identity: "CN=solo" });
  });

  it("never reads an entry out of a quoted value, and names nobody when two SPIFFE IDs compete", () => {
    // Node quotes a SAN value holding a separator; the text inside is one value, not two entries.
    const quoted = 'URI:"spiffe://evil.example/x, URI:spiffe://example.org/billing"';
    assert.deepEqual(readClientCertificate(socket(quoted, "CN=mallory")), { identity: "CN=mallory" });
    const two = "URI:spiffe://example.org/billing, URI:spiffe://example.org/reports";
    assert.equal(readClientCertificate(socket(two, "CN=both")), undefined);
  });

  it("ignores certificates the TLS layer did not verify, and sockets without one", () => {
    assert.equal(readClientCertificate(socket("URI:spiffe://example.org/billing", "CN=billing", false)), undefined);
    assert.equal(readClientCertificate({ authorized: true, getPeerX509Certificate: () => undefined }), undefined);
    assert.equal(readClientCertificate({}), undefined);
    assert.equal(readClientCertificate(undefined), undefined);
  });
});
