// `protoguard serve` configured only by environment: PROTOGUARD_TRUSTED_ISSUERS names a JSON
// file of issuers, PROTOGUARD_GATEWAY_* turn gateway mode on. A child process, a JWKS server
// in this test, and plain HTTP calls: the variables reach the decision.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, it } from "node:test";
import { idpKey, signToken, startJwksServer } from "./helpers/idp.js";

const root = join(import.meta.dirname, "..");
const ISSUER = "https://sso.example.com/realms/shop";

async function getProfile(url: string, headers: Record<string, string>) {
  const res = await fetch(`${url}/example.v1.AccountService/GetProfile`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: "{}",
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe("protoguard serve with PROTOGUARD_TRUSTED_ISSUERS and PROTOGUARD_GATEWAY_*", () => {
  it("accepts the IdP's tokens and a trusted gateway's header, refuses an unknown issuer", {
    timeout: 180_000,
  }, async () => {
    const dir = await mkdtemp(join(tmpdir(), "protoguard-idp-serve-"));
    const jwks = await startJwksServer();
    try {
      const key = await idpKey("kc-1");
      jwks.publish("/certs", [key]);
      const file = join(dir, "issuers.json");
      await writeFile(
        file,
        JSON.stringify([
          {
            issuer: ISSUER,
            jwks_url: `${jwks.origin}/certs`,
            audience: "shop-api",
            subject_claim: "sub",
            groups_claim: "realm_access.roles",
            provision: true,
          },
        ]),
      );
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        PROTOGUARD_DATA_DIR: join(dir, "data"),
        PROTOGUARD_SCRYPT_LOG_N: "10",
        PROTOGUARD_TRUSTED_ISSUERS: file,
        PROTOGUARD_GATEWAY_HEADER: "x-jwt-payload",
        PROTOGUARD_GATEWAY_TRUSTED_PEERS: "127.0.0.1,::1",
        PROTOGUARD_LOG_LEVEL: "warn",
      };
      delete env["DATABASE_URL"];
      delete env["PORT"];
      delete env["PROTOGUARD_JWT_SECRET"];
      const child = spawn(process.execPath, ["--import", "tsx", join(root, "example/cli.ts"), "serve", "--port", "0"], {
        cwd: root,
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      let err = "";
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
      const exited = once(child, "exit");
      try {
        let url: string | undefined;
        for (
          let waited = 0;
          (url = /serving on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1]) === undefined;
          waited += 100
        ) {
          if (child.exitCode !== null || waited > 150_000) assert.fail(`serve did not start:\n${out}\n${err}`);
          await sleep(100);
        }
        const iat = Math.floor(Date.now() / 1000);
        const claims = (sub: string, username: string) => ({
          iss: ISSUER,
          aud: ["shop-api", "account"],
          sub,
          iat,
          exp: iat + 300,
          jti: randomUUID(),
          azp: "shop-web",
          preferred_username: username,
          realm_access: { roles: ["default-roles-shop"] },
        });

        const bearer = await getProfile(url, {
          authorization: `Bearer ${await signToken(key, claims(randomUUID(), "kc-user"))}`,
        });
        assert.equal(bearer.status, 200, JSON.stringify(bearer.body));
        assert.equal(bearer.body["username"], "kc-user");

        const gateway = await getProfile(url, {
          "x-jwt-payload": Buffer.from(JSON.stringify(claims(randomUUID(), "gw-user"))).toString("base64url"),
        });
        assert.equal(gateway.status, 200, JSON.stringify(gateway.body));
        assert.equal(gateway.body["username"], "gw-user");

        const unknown = await getProfile(url, {
          authorization: `Bearer ${await signToken(key, { ...claims(randomUUID(), "x"), iss: "https://other.example/" })}`,
        });
        assert.equal(unknown.status, 401);
        assert.match(JSON.stringify(unknown.body), /UNKNOWN_ISSUER/);

        child.kill("SIGTERM");
        const [code] = await exited;
        assert.equal(code, 0, err);
      } finally {
        if (child.exitCode === null) child.kill("SIGKILL");
      }
    } finally {
      await jwks.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
