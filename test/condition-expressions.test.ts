/**
 * What the start-up check of conditions accepts and refuses, and that what
 * it accepts evaluates as CEL says, through `createAuthPolicy` (a default
 * rule's condition is compiled against each method's request message).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { DocumentRequestSchema, PlainDocumentService } from "../gen/guardtest/v1/conditions_pb.js";
import { PolicyError } from "../src/exports/protoguard.js";
import { createAuthPolicy } from "../src/exports/core.js";

const method = PlainDocumentService.method.read;

function compiled(condition: string) {
  const plan = createAuthPolicy({ defaultRule: { condition } }).planFor(method);
  assert.ok(plan.condition, `no condition planned for ${condition}`);
  return plan.condition;
}

function problem(condition: string): string {
  try {
    createAuthPolicy({ defaultRule: { condition } }).planFor(method);
  } catch (error) {
    assert.ok(error instanceof PolicyError, String(error));
    assert.equal(error.problems.length, 1, error.message);
    assert.match(error.problems[0]!, /guardtest\.v1\.PlainDocumentService\/Read/);
    assert.ok(error.problems[0]!.includes(JSON.stringify(condition).slice(1, -1)), error.problems[0]);
    return error.problems[0]!;
  }
  assert.fail(`accepted: ${condition}`);
}

const principal = {
  id: 7n,
  username: "ann",
  kind: "user",
  is_staff: false,
  is_superuser: false,
  permissions: ["docs.view_document"],
  groups: ["editors"],
};
const request = create(DocumentRequestSchema, { documentId: 7, text: "hello", tags: ["a", "b"] });
const resource = { owner_id: 7, labels: { color: "red" }, score: 2.5 };

describe("condition expressions", () => {
  it("accepts and evaluates what CEL allows", () => {
    const cases: [string, boolean][] = [
      ["principal.id == 7", true],
      ["request.document_id == principal.id", true],
      ["resource.owner_id == principal.id", true],
      ["resource.owner_id == request.document_id", true],
      ["request.document_id == 7.0", true],
      ["'docs.view_document' in principal.permissions", true],
      ["'editors' in principal.groups && principal.kind == 'user'", true],
      ["principal.is_staff || principal.is_superuser", false],
      ["request.tags.exists(t, t == 'b')", true],
      ["request.tags.all(t, t.size() == 1)", true],
      ["size(request.tags) == 2 && request.text.startsWith('he')", true],
      ["request.text.contains('ll') && request.text.endsWith('lo') && request.text.matches('^h.*o$')", true],
      ["request.tags.map(t, t + '!').exists(t, t == 'a!')", true],
      ["request.tags.filter(t, t != 'a').size() == 1", true],
      ["resource.labels.color == 'red' && resource.score > 2", true],
      ["has(resource.labels) && !has(resource.missing)", true],
      ["request.document_id > 0 ? principal.id > 0 : false", true],
      ["[1, 2, 3].exists(x, x == request.document_id)", false],
      ["{'a': 1}['a'] == 1", true],
      ["int(request.text.size()) + 1 == 6", true],
      ["string(principal.id) == '7'", true],
      ["principal != null", true],
      ["request.tags[0] == 'a'", true],
    ];
    for (const [expression, expected] of cases) {
      assert.equal(compiled(expression).evaluate({ principal, request, resource }), expected, expression);
    }
  });

  it("refuses at start-up what cannot work, naming the problem", () => {
    assert.match(problem("request.document_id =="), /does not parse/);
    assert.match(problem("request.documentId == 1"), /has no field 'documentId' \(fields: document_id, text, tags\)/);
    assert.match(problem("principal.email == 'x'"), /principal has no field 'email'/);
    assert.match(problem("user.id == 1"), /undeclared reference to 'user'/);
    assert.match(problem("request.text == 1"), /no overload of == for \(string, int\)/);
    assert.match(problem("request.text > 1"), /no overload/);
    assert.match(problem("request.document_id + 1.5 > 0"), /no overload of \+ for \(int, double\)/);
    assert.match(problem("request.document_id"), /must be a bool, this one is int/);
    assert.match(problem("request.text.size() && true"), /no overload/);
    assert.match(problem("request.document_id.size() == 1"), /no overload of size/);
    assert.match(problem("request.tags.exists(t, t.nope)"), /cannot select field 'nope' from string/);
    assert.match(problem("1 in request.tags"), /no overload of @in/);
    assert.match(problem("lowerAscii(request.text) == 'x'"), /unknown function 'lowerAscii'/);
    assert.match(problem("request.text.startsWith(1)"), /no overload of startsWith/);
  });

  it("fails closed at run time: an error is not a bool", () => {
    const missing = compiled("resource.owner_id == principal.id").evaluate({ principal, request, resource: {} });
    assert.ok(missing instanceof Error, "a missing key is an error");
    const division = compiled("10 / (request.document_id - 7) > 1").evaluate({ principal, request, resource });
    assert.ok(division instanceof Error, "a division by zero is an error");
    const anonymous = compiled("principal.is_staff").evaluate({ principal: null, request, resource });
    assert.ok(anonymous instanceof Error, "a field of null is an error");
  });
});
