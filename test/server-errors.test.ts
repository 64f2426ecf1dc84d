// listen() and so startServer() reject with a ServerError whose stable
// `code` says what went wrong, with the readable message kept as it was.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { listen, ServerError, type NodeHandler } from "../src/exports/server.js";
import { selfSignedCertificate } from "./helpers/tls.js";

const run = promisify(execFile);
const handler: NodeHandler = (_req, res) => res.end();
const opensslMissing = await run("openssl", ["version"]).then(
  () => false,
  () => true,
);

describe("ServerError", () => {
  it("PORT_IN_USE when the port is taken, with the system error as cause", async () => {
    const first = await listen({ handler, port: 0 });
    try {
      const error = await listen({ handler, port: first.port }).then(
        () => assert.fail("the second listen must fail"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof ServerError);
      assert.equal(error.name, "ServerError");
      assert.equal(error.code, "PORT_IN_USE");
      assert.equal(error.message, `port ${first.port} is already in use on 127.0.0.1`);
      assert.equal((error.cause as NodeJS.ErrnoException).code, "EADDRINUSE");
    } finally {
      await first.close();
    }
  });

  it("ADDRESS_UNAVAILABLE for a host that is not this machine's", async () => {
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never assigned to a local interface.
    await assert.rejects(listen({ handler, port: 0, host: "192.0.2.1" }), {
      name: "ServerError",
      code: "ADDRESS_UNAVAILABLE",
      message: /the address is not available on this machine/,
    });
  });

  it("TLS_NOT_PEM for a file path passed as the certificate", async () => {
    await assert.rejects(listen({ handler, port: 0, tls: { cert: "/etc/ssl/cert.pem", key: "/etc/ssl/key.pem" } }), {
      name: "ServerError",
      code: "TLS_NOT_PEM",
      message: /certificate is not PEM.*file path/,
    });
  });

  describe("with a certificate", {
    skip: opensslMissing && "openssl not installed: no certificate to test with",
  }, () => {
    let dir: string;
    let cert: string;
    let key: string;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), "protoguard-server-errors-"));
      ({ cert, key } = await selfSignedCertificate(dir));
    });
    after(() => rm(dir, { recursive: true, force: true }));

    it("TLS_CERT_INVALID, TLS_KEY_INVALID and TLS_KEY_MISMATCH name the part that is wrong", async () => {
      const bad = (label: string) => `-----BEGIN ${label}-----\nnope\n-----END ${label}-----\n`;
      await assert.rejects(listen({ handler, port: 0, tls: { cert: bad("CERTIFICATE"), key } }), {
        code: "TLS_CERT_INVALID",
        message: /TLS certificate is invalid/,
      });
      await assert.rejects(listen({ handler, port: 0, tls: { cert, key: bad("PRIVATE KEY") } }), {
        code: "TLS_KEY_INVALID",
        message: /TLS private key is invalid/,
      });
      const other = await run("openssl", ["genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]);
      await assert.rejects(listen({ handler, port: 0, tls: { cert, key: other.stdout } }), (error: unknown) => {
        assert.ok(error instanceof ServerError);
        assert.equal(error.code, "TLS_KEY_MISMATCH");
        assert.match(error.message, /private key does not match the certificate/);
        return true;
      });
    });
  });
});
