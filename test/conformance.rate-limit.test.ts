// The conformance tables protoc-gen-protoguard generates for rules with a `rate_limit`
// (gen/guardtest/v1/limits_protoguard.ts): a row spends the caller's budget and expects the next
// call refused RESOURCE_EXHAUSTED RATE_LIMITED; a table whose limit differs from the server's fails.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { LimitedService, ServiceLimitedService } from "../gen/guardtest/v1/limits_pb.js";
import { LimitedServiceConformance, ServiceLimitedServiceConformance } from "../gen/guardtest/v1/limits_protoguard.js";
import { getUser, type ConformanceTable } from "../src/exports/protoguard.js";
import { checkConformance, createTestDatabase, runConformance, type TestDatabase } from "../src/exports/testing.js";

function routes(router: ConnectRouter): void {
  const pong = (req: { text: string }, ctx: HandlerContext) => ({
    text: req.text,
    username: getUser(ctx)?.username ?? "",
  });
  router.service(LimitedService, {
    publicLimited: pong,
    userLimited: pong,
    burstLimited: pong,
    permissionLimited: pong,
    conditionLimited: pong,
    unlimited: pong,
  });
  router.service(ServiceLimitedService, { first: pong, second: pong });
}

describe("conformance tables of rate-limited rules", () => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase();
  });
  after(async () => {
    await database?.close();
  });

  it("the table states the limit and has a row past it", () => {
    const burst = LimitedServiceConformance.methods.find((m) => m.method === "burstLimited");
    assert.deepEqual(burst?.rateLimit, { requests: 2, per: "60s", burst: 1 });
    const over = burst?.cases.find((c) => c.name === "over rate_limit: 2/60s burst 1");
    assert.equal(over?.precedingCalls, 3);
    assert.deepEqual(over?.expect, { outcome: "deny", code: "resource_exhausted", reason: "RATE_LIMITED" });
    const unlimited = LimitedServiceConformance.methods.find((m) => m.method === "unlimited");
    assert.equal(unlimited?.rateLimit, undefined);
    assert.ok(unlimited?.cases.every((c) => c.precedingCalls === undefined));
  });

  it("LimitedService conforms, its condition holding for the request sent", (t) =>
    runConformance(t, LimitedServiceConformance, {
      routes,
      database,
      requests: { conditionLimited: { text: "yes" } },
      conditions: { conditionLimited: true },
    }));

  it("ServiceLimitedService conforms (a service rule's limit, per method)", (t) =>
    runConformance(t, ServiceLimitedServiceConformance, { routes, database }));

  it("a table whose limit is not the server's fails, saying what happened", async () => {
    const withBudget = (precedingCalls: number): ConformanceTable<typeof LimitedService> => ({
      service: LimitedService,
      methods: LimitedServiceConformance.methods
        .filter((m) => m.method === "userLimited")
        .map((m) => ({
          ...m,
          cases: m.cases.filter((c) => c.precedingCalls !== undefined).map((c) => ({ ...c, precedingCalls })),
        })),
    });
    // The table believes in a larger budget than the server grants.
    const [tooLarge] = await checkConformance(withBudget(3), { routes, database });
    assert.equal(tooLarge?.ok, false);
    assert.match(tooLarge!.message, /call 3 of 3 before it was already refused ResourceExhausted \(RATE_LIMITED\)/);
    // The table believes in a smaller one: the judged call is still admitted.
    const [tooSmall] = await checkConformance(withBudget(1), { routes, database });
    assert.equal(tooSmall?.ok, false);
    assert.match(
      tooSmall!.message,
      /demands ResourceExhausted \(RATE_LIMITED\) past the budget, but the call was admitted/,
    );
  });
});
