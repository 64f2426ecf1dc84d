/** Decision logs: one line per decision, with floods of refusals summarised instead of written out. */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { pino } from "pino";
import { GuardedService } from "../gen/guardtest/v1/guarded_pb.js";
import { unauthenticated } from "../src/decide/verdict.js";
import { createAuthPolicy } from "../src/exports/core.js";
import { createObservability } from "../src/server/observe/observability.js";

describe("decision logs", () => {
  it("cap refusals of one kind per second, report the rest as suppressed, and count them all", async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString("utf8").split("\n"))
          if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    let clock = 1_000_000;
    const o = createObservability({
      logger: pino({ level: "info" }, sink),
      defaultMetrics: false,
      maxRefusalLogsPerSecond: 2,
      now: () => clock,
    });
    const method = GuardedService.method.authenticatedUnary;
    const plan = createAuthPolicy().planFor(method);
    const deny = unauthenticated(plan, "TOKEN_MISSING");
    const allow = { outcome: "allow" as const, plan, principal: undefined };
    for (let i = 0; i < 5; i++) o.onDecision({ method, verdict: deny, stage: "prefilter", durationMs: 0.01 });
    for (let i = 0; i < 3; i++) o.onDecision({ method, verdict: allow, stage: "prefilter", durationMs: 0.01 });
    // Another kind of refusal has a budget of its own.
    o.onDecision({ method, verdict: unauthenticated(plan, "TOKEN_EXPIRED"), stage: "gate", durationMs: 0.01 });
    clock += 1000;
    o.onDecision({ method, verdict: deny, stage: "prefilter", durationMs: 0.01 });
    await new Promise((r) => setImmediate(r));

    const refusals = lines.filter((l) => l.reason === "TOKEN_MISSING");
    assert.equal(refusals.length, 3);
    assert.equal(refusals[2]!.suppressed, 3);
    assert.equal(refusals[0]!.suppressed, undefined);
    assert.equal(lines.filter((l) => l.outcome === "allow").length, 3);
    assert.equal(lines.filter((l) => l.reason === "TOKEN_EXPIRED").length, 1);
    const metrics = await o.registry.metrics();
    assert.match(
      metrics,
      /protoguard_auth_decisions_total\{method="\/guardtest\.v1\.GuardedService\/AuthenticatedUnary",outcome="deny",reason="TOKEN_MISSING"\} 6/,
    );
  });
});
