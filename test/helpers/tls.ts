/** A throw-away TLS certificate for tests of the TLS listener (needs openssl: see env.ts's skipWithoutOpenssl). */
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
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

/** A certificate and its private key, PEM-encoded. */
export interface Pem {
  cert: string;
  key: string;
}

/** A CA certificate and key, self-signed, valid one day. */
export async function makeCa(dir: string, name: string): Promise<Pem> {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.pem`);
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
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      `/CN=${name}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    { timeout: 30_000 },
  );
  return { cert: await readFile(cert, "utf8"), key: await readFile(key, "utf8") };
}

/** A client certificate signed by `ca` (files `<ca>.pem`/`.key` in `dir`), with `subject` and optional URI SAN. */
export async function makeClientCertificate(
  dir: string,
  ca: string,
  name: string,
  subject: string,
  uri?: string,
): Promise<Pem> {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.pem`);
  const ext = join(dir, `${name}.ext`);
  await writeFile(ext, `extendedKeyUsage=clientAuth\n${uri === undefined ? "" : `subjectAltName=URI:${uri}\n`}`);
  await run(
    "openssl",
    [
      "req",
      "-new",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      csr,
      "-subj",
      subject,
    ],
    { timeout: 30_000 },
  );
  await run(
    "openssl",
    [
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      join(dir, `${ca}.pem`),
      "-CAkey",
      join(dir, `${ca}.key`),
      "-set_serial",
      String(Date.now()),
      "-out",
      cert,
      "-days",
      "1",
      "-extfile",
      ext,
    ],
    { timeout: 30_000 },
  );
  return { cert: await readFile(cert, "utf8"), key: await readFile(key, "utf8") };
}
