/** Unit tests for src/policy/rule.ts: planning and describing rules, no database. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { describeRule, planRule, type PlannedRule } from "../src/policy/rule.js";

function planned(result: ReturnType<typeof planRule>): PlannedRule {
  assert.ok(!("problems" in result), `unexpected problems: ${JSON.stringify(result)}`);
  return result;
}

function problems(result: ReturnType<typeof planRule>): string[] {
  assert.ok("problems" in result, `expected problems, got ${JSON.stringify(result)}`);
  return result.problems;
}

describe("planRule", () => {
  it("plans a public rule as the shared frozen public plan", () => {
    const a = planned(planRule({ public: true }));
    assert.deepEqual(a, { kind: "public" });
    assert.ok(Object.isFrozen(a));
    assert.equal(planRule({ public: true }), a);
  });

  it("plans authenticated, staff, superuser and permissions as a user rule", () => {
    assert.deepEqual(planned(planRule({ authenticated: true })), {
      kind: "user",
      permissions: [],
      staff: false,
      superuser: false,
    });
    assert.deepEqual(planned(planRule({ staff: true, superuser: true, permissions: ["shop.view_product"] })), {
      kind: "user",
      permissions: ["shop.view_product"],
      staff: true,
      superuser: true,
    });
  });

  it("copies and freezes the permission list", () => {
    const permissions = ["shop.view_product"];
    const rule = planned(planRule({ permissions }));
    assert.equal(rule.kind, "user");
    if (rule.kind !== "user") return;
    permissions.push("shop.add_product");
    assert.deepEqual(rule.permissions, ["shop.view_product"]);
    assert.ok(Object.isFrozen(rule.permissions));
  });

  it("refuses an empty rule", () => {
    assert.equal(problems(planRule({})).length, 1);
    assert.equal(problems(planRule({ public: false, authenticated: false, permissions: [] })).length, 1);
  });

  it("refuses public combined with any requirement", () => {
    for (const extra of [{ authenticated: true }, { staff: true }, { superuser: true }, { permissions: ["a.b"] }]) {
      assert.equal(problems(planRule({ public: true, ...extra })).length, 1, JSON.stringify(extra));
    }
  });

  it("reports every problem at once: bad permissions and duplicates", () => {
    // Two malformed permissions and one listed twice: three problems.
    const found = problems(planRule({ permissions: ["nodot", "a.b.c", "shop.x", "shop.x"] }));
    assert.equal(found.length, 3);
  });
});

describe("describeRule", () => {
  it("writes each kind of rule the way a .proto option reads", () => {
    assert.equal(describeRule(planned(planRule({ public: true }))), "public");
    assert.equal(describeRule(planned(planRule({ authenticated: true }))), "authenticated");
    assert.equal(describeRule(planned(planRule({ staff: true }))), "staff");
    assert.equal(
      describeRule(planned(planRule({ superuser: true, staff: true, permissions: ["a.b", "c.d"] }))),
      "superuser; staff; permissions: a.b, c.d",
    );
  });
});
