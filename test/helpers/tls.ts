/** A throw-away TLS certificate for tests of the TLS listener (needs openssl: see env.ts's skipWithoutOpenssl). */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * Makes a self-signed P-256 certificate for `localhost` and 127.0.0.1, valid one day, writing
 * `key.pem` and `cert.pem` into `dir` (which the caller creates and removes), and returns both
 * PEM texts. openssl rather than node:crypto: Node cannot issue X.509 certificates.
 */
export async function selfSignedCertificate(dir: string): Promise<{ cert: string; key: string }> {
  await run(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      join(dir, "key.pem"),
      "-out",
      join(dir, "cert.pem"),
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ],
    { timeout: 30_000 },
  );
  return { cert: await readFile(join(dir, "cert.pem"), "utf8"), key: await readFile(join(dir, "key.pem"), "utf8") };
}
