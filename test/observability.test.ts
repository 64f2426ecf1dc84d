/** Decision logs: one line per decision, with floods of refusals summarised instead of written out. */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, it } from "node:test";
import type { DescMethod } from "@bufbuild/protobuf";
import { pino } from "pino";
import { GuardedService, StaffOnlyService, UnannotatedService } from "../gen/guardtest/v1/guarded_pb.js";
import { permissionDenied, unauthenticated, type Verdict } from "../src/decide/verdict.js";
import { createAuthPolicy } from "../src/exports/core.js";
import type { Principal } from "../src/exports/protoguard.js";
import { createObservability } from "../src/server/observe/observability.js";
import type { UnauthenticatedReason } from "../src/reasons.js";

function sink() {
  const lines: Record<string, unknown>[] = [];
  let bytes = 0;
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      for (const line of chunk.toString("utf8").split("\n"))
        if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { lines, stream, bytes: () => bytes };
}

const policy = createAuthPolicy();
const methods: DescMethod[] = [GuardedService, StaffOnlyService, UnannotatedService].flatMap((s) => s.methods);
const REASONS: UnauthenticatedReason[] = ["TOKEN_MISSING", "TOKEN_MALFORMED", "TOKEN_INVALID", "TOKEN_EXPIRED"];
const user: Principal = {
  id: 7,
  username: "ada",
  email: "ada@example.com",
  isStaff: false,
  isSuperuser: false,
  permissions: new Set<string>(),
};

describe("decision logs", () => {
  it("cap refusals and anonymous calls as a whole, whatever their spread, and summarise the rest once a second", async () => {
    const out = sink();
    let clock = 1_000_000;
    const o = createObservability({
      logger: pino({ level: "info" }, out.stream),
      defaultMetrics: false,
      maxRefusalLogsPerSecond: 5,
      now: () => clock,
    });
    const event = (method: DescMethod, verdict: Verdict) =>
      o.onDecision({ method, verdict, stage: "prefilter", durationMs: 0.01 });
    // A flood spread over every method and several reasons, plus anonymous calls.
    let flood = 0;
    for (let i = 0; i < 2_000; i++) {
      const method = methods[i % methods.length]!;
      const plan = policy.planFor(method);
      event(
        method,
        i % 5 === 4
          ? { outcome: "allow", plan, principal: undefined }
          : unauthenticated(plan, REASONS[i % REASONS.length]!),
      );
      flood++;
    }
    // Security events and identified callers, in the middle of the flood: all written in full.
    const method = GuardedService.method.authenticatedUnary;
    const plan = policy.planFor(method);
    for (let i = 0; i < 20; i++) {
      event(method, unauthenticated(plan, "TOKEN_REVOKED"));
      event(method, unauthenticated(plan, "USER_INACTIVE"));
      event(method, { outcome: "allow", plan, principal: user });
      event(method, permissionDenied(plan, user, "STAFF_REQUIRED", "staff access required"));
    }
    clock += 1_000;
    event(method, unauthenticated(plan, "TOKEN_MISSING"));
    await new Promise((r) => setImmediate(r));

    const decisions = out.lines.filter((l) => l.msg === "auth decision");
    const budgeted = decisions.filter(
      (l) => l.userId === undefined && !["TOKEN_REVOKED", "USER_INACTIVE"].includes(l.reason as string),
    );
    assert.equal(budgeted.length, 5 + 1, "5 lines in the flooded second, 1 in the next");
    assert.equal(decisions.filter((l) => l.reason === "TOKEN_REVOKED").length, 20);
    assert.equal(decisions.filter((l) => l.reason === "USER_INACTIVE").length, 20);
    assert.equal(decisions.filter((l) => l.outcome === "allow" && l.userId === 7).length, 20);
    assert.equal(decisions.filter((l) => l.reason === "STAFF_REQUIRED" && l.userId === 7).length, 20);

    const summaries = out.lines.filter((l) => l.msg === "auth decisions suppressed");
    assert.equal(summaries.length, 1);
    const summary = summaries[0]!;
    assert.equal(summary.suppressed, flood - 5);
    const byKind = summary.byKind as Record<string, number>;
    assert.equal(
      Object.values(byKind).reduce((a, b) => a + b, 0),
      flood - 5,
    );
    // 400 anonymous calls, the fifth call (one of them) among the 5 written in full.
    assert.equal(byKind["allow/none"], 399);
    assert.ok(byKind["deny/TOKEN_MISSING"]! > 0 && byKind["deny/TOKEN_EXPIRED"]! > 0);
    assert.equal(summary.methods, methods.length);
    assert.equal(summary.sinceMs, 1_000_000);
    assert.equal(summary.level, 40, "warn");
    // Every call is still counted.
    const metrics = await o.registry.metrics();
    assert.match(
      metrics,
      /protoguard_auth_decisions_total\{method="\/guardtest\.v1\.GuardedService\/AuthenticatedUnary",outcome="deny",reason="TOKEN_REVOKED"\} 20/,
    );
  });

  it("write a bounded number of bytes per second however long the flood, so bytes per refusal tend to zero", async () => {
    const bytesPerRefusal: number[] = [];
    for (const perSecond of [1_000, 10_000]) {
      const out = sink();
      let clock = 5_000_000;
      const o = createObservability({
        logger: pino({ level: "info" }, out.stream),
        defaultMetrics: false,
        now: () => clock,
      });
      let calls = 0;
      for (let s = 0; s < 5; s++) {
        for (let i = 0; i < perSecond; i++) {
          clock = 5_000_000 + s * 1000 + Math.floor((i * 1000) / perSecond);
          const method = methods[calls % methods.length]!;
          o.onDecision({
            method,
            verdict: unauthenticated(policy.planFor(method), REASONS[calls % REASONS.length]!),
            stage: "gate",
            durationMs: 0.01,
          });
          calls++;
        }
      }
      clock += 1_000;
      o.onDecision({
        method: methods[0]!,
        verdict: unauthenticated(policy.planFor(methods[0]!), "TOKEN_MISSING"),
        stage: "gate",
        durationMs: 0,
      });
      await new Promise((r) => setImmediate(r));
      const full = out.lines.filter((l) => l.msg === "auth decision").length;
      const summaries = out.lines.filter((l) => l.msg === "auth decisions suppressed");
      // The default budget: 100 lines a second, one summary for each flooded second.
      assert.equal(full, 5 * 100 + 1);
      assert.equal(summaries.length, 5);
      assert.equal(
        summaries.reduce((sum, l) => sum + (l.suppressed as number), 0),
        5 * (perSecond - 100),
      );
      bytesPerRefusal.push(out.bytes() / (calls + 1));
    }
    // Ten times the flood, about a tenth of the bytes per refusal.
    assert.ok(bytesPerRefusal[1]! < bytesPerRefusal[0]! / 5, JSON.stringify(bytesPerRefusal));
  });

  it("summarise a flood that stops, without waiting for another call", async () => {
    const out = sink();
    const o = createObservability({
      logger: pino({ level: "info" }, out.stream),
      defaultMetrics: false,
      maxRefusalLogsPerSecond: 1,
    });
    const method = GuardedService.method.authenticatedUnary;
    for (let i = 0; i < 4; i++) {
      o.onDecision({
        method,
        verdict: unauthenticated(policy.planFor(method), "TOKEN_INVALID"),
        stage: "gate",
        durationMs: 0,
      });
    }
    for (
      let waited = 0;
      waited < 3_000 && !out.lines.some((l) => l.msg === "auth decisions suppressed");
      waited += 100
    ) {
      await sleep(100);
    }
    const summary = out.lines.find((l) => l.msg === "auth decisions suppressed");
    assert.ok(summary, "a summary once the second is over");
    assert.equal(summary.suppressed, 3);
    assert.deepEqual(summary.byKind, { "deny/TOKEN_INVALID": 3 });
  });
});

describe("decision metrics", () => {
  it("have label values only from the server's methods and the known reasons", async () => {
    const out = sink();
    const o = createObservability({
      logger: pino({ level: "silent" }, out.stream),
      defaultMetrics: false,
      services: [GuardedService],
    });
    const known = GuardedService.method.authenticatedUnary;
    const foreign = StaffOnlyService.methods[0]!;
    o.onDecision({
      method: known,
      verdict: unauthenticated(policy.planFor(known), "TOKEN_MISSING"),
      stage: "gate",
      durationMs: 0,
    });
    o.onDecision({
      method: foreign,
      verdict: unauthenticated(policy.planFor(foreign), "TOKEN_MISSING"),
      stage: "gate",
      durationMs: 0,
    });
    // A reason no part of protoguard gives (as a careless callback might make up).
    const invented = {
      ...unauthenticated(policy.planFor(known), "TOKEN_MISSING"),
      reason: "x-invented-by-client",
    } as unknown as Verdict;
    for (let i = 0; i < 3; i++) o.onDecision({ method: known, verdict: invented, stage: "gate", durationMs: 0 });
    const metrics = await o.registry.metrics();
    const methodsSeen = new Set([...metrics.matchAll(/method="([^"]*)"/g)].map((m) => m[1]));
    const reasonsSeen = new Set([...metrics.matchAll(/reason="([^"]*)"/g)].map((m) => m[1]));
    assert.deepEqual([...methodsSeen].sort(), ["/guardtest.v1.GuardedService/AuthenticatedUnary", "unknown"]);
    assert.deepEqual([...reasonsSeen].sort(), ["TOKEN_MISSING", "unknown"]);
    assert.match(metrics, /method="unknown",outcome="deny",reason="TOKEN_MISSING"\} 1/);
    assert.match(metrics, /reason="unknown"\} 3/);
  });
});
