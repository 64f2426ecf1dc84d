/**
 * `npx tsx bench/service-identity.ts [exchanges] [decisions]`: what service
 * identities cost, on PGlite in this process.
 *
 * 1. ServiceToken at the production password cost (scrypt N=2^17): mean
 *    wall time of an exchange with the right secret, a wrong secret and an
 *    unknown client id. The last two should be close: an unknown id pays a
 *    dummy hash, so timing does not tell which client ids exist.
 * 2. The decision for a warm cache: a bearer-token call and a
 *    certificate-identified call (no token) of the same service account on
 *    a permission rule, in microseconds per decision (`auth.decide`, no
 *    transport), so the certificate path's cost is seen next to the token's.
 *
 * Prints one line per figure; nothing is asserted.
 */
import { cpus, loadavg } from "node:os";
import { createClient } from "@connectrpc/connect";
import { KindService } from "../gen/guardtest/v1/kinds_pb.js";
import { createAuth } from "../src/exports/protoguard.js";
import { createCertificatePrincipalSource } from "../src/exports/store.js";
import {
  AuthService,
  createPasswordHasher,
  generateClientCredentials,
  generateClientSecret,
} from "../src/exports/auth-service.js";
import { createServiceAccount, grantUserPermissions } from "../src/exports/store.js";
import { createTestAuth } from "../src/exports/testing.js";

const EXCHANGES = Number(process.argv[2] ?? 6);
const DECISIONS = Number(process.argv[3] ?? 20_000);

const hasher = createPasswordHasher();
const t = await createTestAuth({ routes: () => {}, authService: true, passwordHasher: hasher });
try {
  const credentials = generateClientCredentials();
  const account = await createServiceAccount(t.database.db, {
    name: "bench",
    clientId: credentials.clientId,
    secretHash: await hasher.hash(credentials.clientSecret),
    tlsIdentity: "spiffe://bench.example/bench",
  });
  await grantUserPermissions(t.database.db, "bench", ["billing.charge"]);
  const auth = createClient(AuthService, t.transport);

  // Interleaved, round by round, so a change in the machine's load during
  // the run weighs on the three series alike.
  const series = [
    {
      label: "right secret",
      clientId: credentials.clientId,
      clientSecret: credentials.clientSecret,
      times: [] as number[],
    },
    {
      label: "wrong secret",
      clientId: credentials.clientId,
      clientSecret: generateClientSecret(),
      times: [] as number[],
    },
    {
      label: "unknown client id",
      clientId: "svc_00000000000000000000000000000000",
      clientSecret: credentials.clientSecret,
      times: [] as number[],
    },
  ];
  for (let i = 0; i < EXCHANGES; i++) {
    for (const s of series) {
      const started = performance.now();
      await auth.serviceToken({ clientId: s.clientId, clientSecret: s.clientSecret }).catch(() => undefined);
      s.times.push(performance.now() - started);
    }
  }
  for (const { label, times } of series) {
    times.sort((a, b) => a - b);
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    console.log(
      `ServiceToken ${label.padEnd(18)} mean ${mean.toFixed(1)} ms, median ${times[times.length >> 1]!.toFixed(1)} ms (n=${EXCHANGES}, scrypt N=2^17)`,
    );
  }

  const certificates = createCertificatePrincipalSource({
    database: t.database,
    onInvalidation: (listener) => t.principals.onInvalidation(listener),
  });
  const decider = createAuth({ verifier: t.verifier, principals: t.principals, certificates, services: [KindService] });
  const method = KindService.method.charge;
  const token = new Headers({ authorization: `Bearer ${await t.accessToken(account.id)}` });
  const none = new Headers();
  const certificate = { identity: "spiffe://bench.example/bench" };

  async function perDecision(label: string, decide: () => ReturnType<typeof decider.decide>): Promise<void> {
    const first = await decide(); // warms the caches
    if (first.outcome !== "allow") throw new Error(`${label}: expected allow, got ${first.outcome}`);
    const started = performance.now();
    for (let i = 0; i < DECISIONS; i++) await decide();
    const us = ((performance.now() - started) * 1000) / DECISIONS;
    console.log(`decision ${label.padEnd(22)} ${us.toFixed(2)} µs (n=${DECISIONS}, warm cache)`);
  }
  await perDecision("bearer token", () => decider.decide(method, token));
  await perDecision("client certificate", () => decider.decide(method, none, undefined, { certificate }));
  certificates.close();
  console.log(`machine: ${cpus().length} cores, load ${loadavg()[0]!.toFixed(2)}`);
} finally {
  await t.close();
}
