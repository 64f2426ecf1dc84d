/**
 * `npx tsx bench/refusal-cost.ts [--quick] [--json]`: what a refused call costs the auth layer,
 * and what a flood of refusals costs the decision log.
 *
 * 1. CPU per refusal, µs: N refusals of each kind run through `createAuth(...).check` (the
 *    decision function every adapter calls: the pre-filter, the gate, the interceptor), with
 *    protoguard's own keys (an HS256 keyring, and an RS256 one for the asymmetric kinds) and
 *    the decision log and metrics of `createObservability` attached (writing to a counting sink):
 *    missing token, malformed header, unknown `kid`, forged HS256 signature, forged RS256
 *    signature, expired RS256 token (validly signed), expired HS256 token. Each token is
 *    distinct per call (a flood does not repeat itself), ~1 KiB unless named 8 KiB. Rounds are
 *    interleaved; the median of the rounds is printed. The principal source is never reached:
 *    it throws, and a refusal that reached it fails the bench.
 * 2. Log bytes per refused call under a flood: 10 seconds of refusals (a clock the script moves,
 *    so the figure does not depend on this machine's speed) at 20 000 refusals per second spread
 *    over every method of the test services and five reasons, through the server's decision log;
 *    the bytes and lines written, per refused call.
 *
 * With `--json` the last line is a JSON summary, which `npm run bench` reads into
 * bench/results.json and its table.
 */
import { cpuUsage } from "node:process";
import { Writable } from "node:stream";
import { createPrivateKey, generateKeyPairSync, randomBytes, sign as cryptoSign } from "node:crypto";
import type { DescMethod } from "@bufbuild/protobuf";
import { pino } from "pino";
import { GuardedService, StaffOnlyService, UnannotatedService } from "../gen/guardtest/v1/guarded_pb.js";
import { createAuthPolicy } from "../src/exports/core.js";
import { createAuth, createKeyring, createTokenIssuer, createTokenVerifier } from "../src/exports/protoguard.js";
import type { DecisionEvent } from "../src/exports/protoguard.js";
import { unauthenticated } from "../src/decide/verdict.js";
import type { UnauthenticatedReason } from "../src/reasons.js";
import { createObservability } from "../src/server/observe/observability.js";

const quick = process.argv.includes("--quick");
const json = process.argv.includes("--json");
const ROUNDS = quick ? 3 : 7;
const PER_ROUND = quick ? 2_000 : 10_000;

/** A sink that counts what the logger writes. */
function countingSink() {
  const counts = { bytes: 0, lines: 0 };
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      counts.bytes += chunk.length;
      for (let i = 0; i < chunk.length; i++) if (chunk[i] === 10) counts.lines++;
      done();
    },
  });
  return { counts, stream };
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
const pad = (bytes: number) =>
  randomBytes(Math.ceil((bytes * 3) / 4))
    .toString("base64url")
    .slice(0, bytes);

function headersOf(authorization: string | undefined) {
  return { get: (name: string) => (name === "authorization" ? (authorization ?? null) : null) };
}

interface Kind {
  readonly name: string;
  /** The `authorization` header of call `i`. */
  readonly header: (i: number) => string | undefined;
  readonly expect: string;
  readonly auth: "hs" | "rs";
}

async function main(): Promise<void> {
  const secret = randomBytes(32).toString("base64url");
  const hsKeyring = await createKeyring([{ alg: "HS256", secret, kid: "hs-1" }]);
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const rsKeyring = await createKeyring([
    {
      alg: "RS256",
      kid: "rs-1",
      privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      publicKey: publicKey.export({ type: "spki", format: "pem" }).toString(),
    },
  ]);
  const unreachable = {
    load(): never {
      throw new Error("a refusal reached the principal source");
    },
  };
  const { stream } = countingSink();
  const observability = createObservability({ logger: pino({ level: "info" }, stream), defaultMetrics: false });
  const services = [GuardedService];
  const auths = {
    hs: createAuth({
      verifier: createTokenVerifier({ keyring: hsKeyring, cache: { maxEntries: 10_000 } }),
      principals: unreachable,
      services,
      onDecision: observability.onDecision,
    }),
    rs: createAuth({
      verifier: createTokenVerifier({ keyring: rsKeyring, cache: { maxEntries: 10_000 } }),
      principals: unreachable,
      services,
      onDecision: observability.onDecision,
    }),
  };
  const method = GuardedService.method.authenticatedUnary;
  const nowSeconds = () => Date.now() / 1000;
  const claims = (i: number, exp: number, extra = 0) => ({
    token_type: "access",
    exp,
    iat: exp - 300,
    jti: `${i}-${randomBytes(8).toString("hex")}`,
    user_id: 1 + (i % 1000),
    ...(extra > 0 ? { pad: pad(extra) } : {}),
  });
  const fakeSig = (bytes: number) => randomBytes(bytes).toString("base64url");
  const rsKey = createPrivateKey(privateKey.export({ type: "pkcs8", format: "pem" }));
  const rsSign = (input: string) => cryptoSign("sha256", Buffer.from(input), rsKey).toString("base64url");
  const hsIssuer = createTokenIssuer({ keyring: hsKeyring, now: () => Date.now() - 3_600_000 });
  const expiredHs: string[] = [];
  for (let i = 0; i < 256; i++) expiredHs.push((await hsIssuer.issueAccess(1 + i)).token);
  const expiredRs: string[] = [];
  for (let i = 0; i < 256; i++) {
    const input = `${b64({ alg: "RS256", kid: "rs-1", typ: "JWT" })}.${b64(claims(i, Math.floor(nowSeconds()) - 3_600))}`;
    expiredRs.push(`${input}.${rsSign(input)}`);
  }
  const hsHeader = b64({ alg: "HS256", kid: "hs-1", typ: "JWT" });
  const rsHeader = b64({ alg: "RS256", kid: "rs-1", typ: "JWT" });
  const future = () => Math.floor(nowSeconds()) + 300;
  const kinds: Kind[] = [
    { name: "missing token", header: () => undefined, expect: "TOKEN_MISSING", auth: "hs" },
    { name: "malformed header", header: (i) => `Bearer not-a-token-${i}`, expect: "TOKEN_MALFORMED", auth: "hs" },
    {
      name: "unknown kid",
      header: (i) =>
        `Bearer ${b64({ alg: "HS256", kid: `nope-${i}`, typ: "JWT" })}.${b64(claims(i, future()))}.${fakeSig(32)}`,
      expect: "TOKEN_INVALID",
      auth: "hs",
    },
    {
      name: "forged HS256",
      header: (i) => `Bearer ${hsHeader}.${b64(claims(i, future()))}.${fakeSig(32)}`,
      expect: "TOKEN_INVALID",
      auth: "hs",
    },
    {
      name: "forged HS256, 8 KiB",
      header: (i) => `Bearer ${hsHeader}.${b64(claims(i, future(), 5_900))}.${fakeSig(32)}`,
      expect: "TOKEN_INVALID",
      auth: "hs",
    },
    {
      name: "forged RS256",
      header: (i) => `Bearer ${rsHeader}.${b64(claims(i, future()))}.${fakeSig(256)}`,
      expect: "TOKEN_INVALID",
      auth: "rs",
    },
    {
      name: "expired RS256 (signed)",
      header: (i) => `Bearer ${expiredRs[i % expiredRs.length]}`,
      expect: "TOKEN_EXPIRED",
      auth: "rs",
    },
    {
      name: "expired HS256 (signed)",
      header: (i) => `Bearer ${expiredHs[i % expiredHs.length]}`,
      expect: "TOKEN_EXPIRED",
      auth: "hs",
    },
  ];

  const samples = new Map<string, number[]>(kinds.map((k) => [k.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? kinds : [...kinds].reverse();
    for (const kind of order) {
      // Headers are built before the clock starts: only the refusal is timed.
      const headers = Array.from({ length: PER_ROUND }, (_, i) => headersOf(kind.header(round * PER_ROUND + i)));
      const auth = auths[kind.auth];
      const start = cpuUsage();
      for (const h of headers) {
        let verdict = auth.check(method, h, "prefilter");
        if (verdict instanceof Promise) verdict = await verdict;
        if (verdict.outcome !== "deny" || verdict.reason !== kind.expect) {
          throw new Error(
            `${kind.name}: expected ${kind.expect}, got ${verdict.outcome} ${"reason" in verdict ? verdict.reason : ""}`,
          );
        }
      }
      const used = cpuUsage(start);
      samples.get(kind.name)!.push((used.user + used.system) / PER_ROUND);
    }
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const perRefusal = Object.fromEntries(kinds.map((k) => [k.name, median(samples.get(k.name)!)]));

  const flood = floodLogBytes();
  const lines = [
    `CPU per refusal through createAuth(...).check with decision log and metrics (median of ${ROUNDS} rounds × ${PER_ROUND}):`,
    ...kinds.map((k) => `  ${k.name.padEnd(28)} ${perRefusal[k.name]!.toFixed(1).padStart(7)} µs  (${k.expect})`),
    `decision log under a flood: ${flood.calls} refusals over ${flood.seconds} s across ${flood.methods} methods × ${flood.reasons} reasons: ` +
      `${flood.lines} lines, ${flood.bytes} bytes, ${flood.bytesPerCall.toFixed(2)} B per refused call`,
  ];
  for (const line of lines) process.stdout.write(`${line}\n`);
  if (json) process.stdout.write(`${JSON.stringify({ cpuUsPerRefusal: perRefusal, flood })}\n`);
}

/** Log bytes per refused call when a flood spreads over every known method and several reasons. */
function floodLogBytes() {
  const SECONDS = 10;
  const PER_SECOND = 20_000;
  const { counts, stream } = countingSink();
  let clock = 1_000_000;
  const observability = createObservability({
    logger: pino({ level: "info" }, stream),
    defaultMetrics: false,
    now: () => clock,
  });
  const methods: DescMethod[] = [GuardedService, StaffOnlyService, UnannotatedService].flatMap((s) => s.methods);
  const reasons: UnauthenticatedReason[] = [
    "TOKEN_MISSING",
    "TOKEN_MALFORMED",
    "TOKEN_INVALID",
    "TOKEN_EXPIRED",
    "TOKEN_WRONG_TYPE",
  ];
  const policy = createAuthPolicy();
  const events: DecisionEvent[] = [];
  for (const method of methods) {
    const plan = policy.planFor(method);
    for (const reason of reasons) {
      events.push({
        method,
        verdict: unauthenticated(plan, reason),
        stage: "prefilter",
        durationMs: 0.02,
      });
    }
  }
  let calls = 0;
  for (let s = 0; s < SECONDS; s++) {
    for (let i = 0; i < PER_SECOND; i++) {
      clock = 1_000_000 + s * 1000 + Math.floor((i * 1000) / PER_SECOND);
      observability.onDecision(events[calls % events.length]!);
      calls++;
    }
  }
  // One more second passes: what was suppressed is summarised.
  clock += 1000;
  observability.onDecision(events[0]!);
  calls++;
  observability.logger.flush?.();
  return {
    seconds: SECONDS,
    calls,
    methods: methods.length,
    reasons: reasons.length,
    lines: counts.lines,
    bytes: counts.bytes,
    bytesPerCall: counts.bytes / calls,
  };
}

main().catch((error: unknown) => {
  process.stderr.write(
    `refusal-cost failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
