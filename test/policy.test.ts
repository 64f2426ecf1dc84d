// `protoguard policy`: the report, its formats, and --check, on the services
// `serve` registers and on test services that rely on the server default.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { GuardedService, StaffOnlyService, UnannotatedService } from "../gen/guardtest/v1/guarded_pb.js";
import { MalformedService } from "../gen/guardtest/v1/malformed_pb.js";
import { BadFieldService, ConditionService, ShadowedService } from "../gen/guardtest/v1/conditions_pb.js";
import { createAuthPolicy } from "../src/exports/core.js";
import { formatPolicy, policyCommand, policyReport, runPolicy } from "../src/cli/policy.js";
import { type PolicyRow } from "../src/cli/policy-report.js";
import { readImageServices } from "../src/cli/image.js";
import { servedServices } from "../src/cli/serve.js";
import exampleApp from "../example/app.js";

const SERVED_SERVICES = servedServices(exampleApp);
/** What this repository's CLI (example/cli.ts) passes: the example as the default app. */
const EXAMPLE_CLI = { defaultApp: async () => exampleApp };
import { UsageError } from "../src/cli/errors.js";
import { SERVER_SERVICES } from "../src/server/services/server-services.js";

const run = promisify(execFile);
const root = join(import.meta.dirname, "..");

function captureIo() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (line: string) => void out.push(line), err: (line: string) => void err.push(line) } };
}

function rowOf(rows: readonly PolicyRow[], method: string): PolicyRow {
  const row = rows.find((r) => r.method === method);
  assert.ok(row, `no row for ${method}`);
  return row;
}

describe("policyReport", () => {
  const report = policyReport(SERVED_SERVICES, createAuthPolicy(), { publicByServer: SERVER_SERVICES });

  it("lists every method served, application services first", () => {
    const expected = [...SERVED_SERVICES, ...SERVER_SERVICES].flatMap((s) =>
      s.methods.map((m) => `/${s.typeName}/${m.name}`),
    );
    assert.deepEqual(
      report.rows.map((r) => r.method),
      expected,
    );
    assert.equal(report.defaultRule, "authenticated");
  });

  it("gives each example method its declared rule and where it came from", () => {
    const expect = (method: string, rule: string, source: string, kind = "unary") =>
      assert.deepEqual(
        { ...rowOf(report.rows, method) },
        { method, service: method.split("/")[1], kind, rule, source },
      );
    expect("/example.v1.UserService/GetUser", "public", "method");
    expect("/example.v1.ProductService/GetProduct", "public", "method");
    expect("/example.v1.ProductService/UpdateProduct", "permissions: products.change_product", "method");
    expect("/example.v1.AccountService/GetProfile", "authenticated", "service");
    assert.deepEqual(
      { ...rowOf(report.rows, "/example.v1.AccountService/UpdateProfile") },
      {
        method: "/example.v1.AccountService/UpdateProfile",
        service: "example.v1.AccountService",
        kind: "unary",
        rule: "authenticated; rate_limit: 10/1m burst 5",
        source: "method",
        rateLimit: { requests: 10, per: "1m", burst: 5 },
      },
    );
    expect("/example.v1.AccountService/WatchNotifications", "authenticated", "service", "server_streaming");
    expect("/example.v1.AdminService/ListUsers", "staff", "method");
    expect("/example.v1.AdminService/DeleteUser", "superuser", "method");
    assert.deepEqual(
      { ...rowOf(report.rows, "/example.v1.OrderService/UpdateOrder") },
      {
        method: "/example.v1.OrderService/UpdateOrder",
        service: "example.v1.OrderService",
        kind: "unary",
        rule: "authenticated; condition: resource.user_id == principal.id || principal.is_staff",
        source: "method",
        condition: {
          expression: "resource.user_id == principal.id || principal.is_staff",
          message: "you can only update your own orders",
        },
      },
    );
    expect("/protoguard.v1.AuthService/Login", "public", "method");
    expect("/protoguard.v1.AuthService/WhoAmI", "authenticated", "method");
    expect("/grpc.health.v1.Health/Check", "public", "server");
    expect("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "public", "server", "bidi_streaming");
  });

  it("leaves no served method to the server default", () => {
    assert.deepEqual(
      report.rows.filter((r) => r.source === "default" || r.source === "invalid"),
      [],
    );
  });

  it("reports methods relying on the default, and a custom default", () => {
    const rows = policyReport([GuardedService, StaffOnlyService, UnannotatedService], createAuthPolicy()).rows;
    assert.equal(rowOf(rows, "/guardtest.v1.GuardedService/DefaultUnary").source, "default");
    assert.equal(rowOf(rows, "/guardtest.v1.UnannotatedService/Anything").source, "default");
    assert.equal(rowOf(rows, "/guardtest.v1.StaffOnlyService/Inherited").source, "service");
    assert.equal(rowOf(rows, "/guardtest.v1.StaffOnlyService/Inherited").rule, "staff");
    assert.equal(rowOf(rows, "/guardtest.v1.StaffOnlyService/Overridden").rule, "public");
    const staffDefault = policyReport([UnannotatedService], createAuthPolicy({ defaultRule: { staff: true } }));
    assert.equal(staffDefault.defaultRule, "staff");
    assert.equal(rowOf(staffDefault.rows, "/guardtest.v1.UnannotatedService/Anything").rule, "staff");
  });

  it("marks malformed rules invalid with their problems instead of throwing", () => {
    const rows = policyReport([MalformedService], createAuthPolicy()).rows;
    const empty = rowOf(rows, "/guardtest.v1.MalformedService/EmptyRule");
    assert.equal(empty.source, "invalid");
    assert.match(empty.problems?.join(" ") ?? "", /rule is empty/);
    assert.match(rowOf(rows, "/guardtest.v1.MalformedService/NotAPermission").problems?.join(" ") ?? "", /view order/);
  });
});

describe("formatPolicy", () => {
  const report = policyReport(SERVED_SERVICES, createAuthPolicy(), { publicByServer: SERVER_SERVICES });

  it("table: a header, one aligned line per method, then the notes", () => {
    const lines = formatPolicy(report, "table");
    assert.match(lines[0]!, /^METHOD +KIND +RULE +SOURCE$/);
    const ruleColumn = lines[0]!.indexOf("RULE");
    const update = lines.find((l) => l.startsWith("/example.v1.ProductService/UpdateProduct "))!;
    assert.equal(update.indexOf("permissions: products.change_product"), ruleColumn);
    assert.match(update, /method$/);
    assert.equal(lines.filter((l) => l.startsWith("/")).length, report.rows.length);
    assert.ok(lines.some((l) => l.includes("default rule") && l.endsWith("authenticated")));
  });

  it("markdown: a table with code-formatted methods", () => {
    const lines = formatPolicy(report, "markdown");
    assert.equal(lines[0], "| method | kind | rule | source |");
    assert.equal(lines[1], "| --- | --- | --- | --- |");
    assert.ok(lines.includes("| `/example.v1.AccountService/GetProfile` | unary | authenticated | service |"));
    assert.ok(lines.includes("| `/grpc.health.v1.Health/Watch` | server_streaming | public | server |"));
  });

  it("json: the report itself", () => {
    assert.deepEqual(JSON.parse(formatPolicy(report, "json").join("\n")), JSON.parse(JSON.stringify(report)));
  });

  it("markdown escapes pipes inside cells", () => {
    const lines = formatPolicy(
      {
        defaultRule: "authenticated",
        rows: [{ method: "/a.B/C", service: "a.B", kind: "unary", rule: "x|y", source: "method" }],
      },
      "markdown",
    );
    assert.ok(lines.includes("| `/a.B/C` | unary | x\\|y | method |"));
  });
});

describe("runPolicy and policyCommand", () => {
  it("--check passes on the served services (everything is annotated)", async () => {
    const { out, err, io } = captureIo();
    assert.equal(await policyCommand(["--check"], {}, io, EXAMPLE_CLI), 0);
    assert.deepEqual(err, []);
    assert.ok(out.some((l) => l.startsWith("/example.v1.OrderService/UpdateOrder")));
  });

  it("--check fails and names each method relying on the server default", async () => {
    const { err, io } = captureIo();
    assert.equal(await runPolicy([GuardedService, UnannotatedService], ["--check"], io), 1);
    const named = err.filter((l) => l.includes("has no rule of its own"));
    assert.deepEqual(
      named.map((l) => l.split(" ")[1]),
      ["/guardtest.v1.GuardedService/DefaultUnary", "/guardtest.v1.UnannotatedService/Anything"],
    );
    assert.match(err.at(-1)!, /policy check failed: 2 method\(s\) rely on the server default/);
  });

  it("without --check, relying on the default is reported but not a failure", async () => {
    const { out, err, io } = captureIo();
    assert.equal(await runPolicy([UnannotatedService], [], io), 0);
    assert.deepEqual(err, []);
    const row = /^\/guardtest\.v1\.UnannotatedService\/Anything +unary +authenticated +default$/;
    assert.ok(out.some((l) => row.test(l)));
  });

  it("fails on malformed rules, check or not, naming the method", async () => {
    const { err, io } = captureIo();
    assert.equal(await runPolicy([MalformedService], ["--format", "json"], io), 1);
    const line = "protoguard: /guardtest.v1.MalformedService/EmptyRule has a malformed rule";
    assert.ok(err.some((l) => l.startsWith(line)));
  });

  it("--format json prints parseable JSON only", async () => {
    const { out, io } = captureIo();
    assert.equal(await policyCommand(["--format=json", "--check"], {}, io, EXAMPLE_CLI), 0);
    const parsed = JSON.parse(out.join("\n")) as { rows: unknown[] };
    assert.equal(parsed.rows.length, [...SERVED_SERVICES, ...SERVER_SERVICES].flatMap((s) => s.methods).length);
  });

  it("refuses unknown formats, flags and arguments as usage errors", async () => {
    const { io } = captureIo();
    await assert.rejects(policyCommand(["--format", "xml"], {}, io, EXAMPLE_CLI), UsageError);
    await assert.rejects(policyCommand(["--strict"], {}, io, EXAMPLE_CLI), UsageError);
    await assert.rejects(policyCommand(["extra"], {}, io, EXAMPLE_CLI), UsageError);
  });

  it("--help prints the usage", async () => {
    const { out, io } = captureIo();
    assert.equal(await policyCommand(["--help"], {}, io, EXAMPLE_CLI), 0);
    assert.match(
      out[0]!,
      /^usage: protoguard policy \[--image FILE \[--include-protoguard\] \| --routes MODULE\] \[--check\]/,
    );
  });

  it("runs as `protoguard policy --check` from this repository's CLI", async () => {
    const args = ["--import", "tsx", join(root, "example/cli.ts"), "policy", "--check", "--format", "markdown"];
    const { stdout } = await run(process.execPath, args, { cwd: root });
    assert.match(stdout, /\| `\/example\.v1\.AdminService\/DeleteUser` \| unary \| superuser \| - \| method \|/);
    // The example registers a loader for UpdateOrder's condition, and no authorize fallback.
    assert.match(
      stdout,
      /\| `\/example\.v1\.OrderService\/UpdateOrder` \| unary \| authenticated; condition: resource\.user_id == principal\.id \\\|\\\| principal\.is_staff \| yes \| method \|/,
    );
    assert.match(stdout, /^authorize fallback: not set\.$/m);
  });
});

describe("policy --image (a Buf image of someone else's services)", () => {
  const buf = join(root, "node_modules", ".bin", "buf");

  it("reports every service of the image's own files; --check names each unannotated method", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "protoguard-image-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const image = join(dir, "image.binpb");
    await run(buf, ["build", "--path", "test/proto/guardtest/v1/guarded.proto", "-o", image], { cwd: root });
    const { out, err, io } = captureIo();
    assert.equal(await policyCommand(["--image", image, "--check"], {}, io), 1);
    assert.ok(out.some((l) => /^\/guardtest\.v1\.GuardedService\/PublicUnary\s+unary\s+public\s+method$/.test(l)));
    // Imports (options.proto, descriptor.proto) declare no services and are not the image's own.
    assert.ok(!out.some((l) => l.includes("protoguard.v1.AuthService")));
    assert.deepEqual(
      err.filter((l) => l.includes("has no rule")).map((l) => l.split(" ")[1]),
      ["/guardtest.v1.GuardedService/DefaultUnary", "/guardtest.v1.UnannotatedService/Anything"],
    );
  });

  it("reads JSON images, images built without imports, and standard input", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "protoguard-image-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const json = join(dir, "image.json");
    await run(buf, ["build", "--path", "test/proto/guardtest/v1/guarded.proto", "--exclude-imports", "-o", json], {
      cwd: root,
    });
    const fromFile = captureIo();
    assert.equal(await policyCommand(["--image", json, "--format", "json"], {}, fromFile.io), 0);
    const rows = (JSON.parse(fromFile.out.join("\n")) as { rows: PolicyRow[] }).rows;
    assert.ok(rows.some((r) => r.method === "/guardtest.v1.StaffOnlyService/Inherited" && r.source === "service"));
    // Rules are extensions: a JSON image names them, and they are read, not dropped.
    const permission = rows.find((r) => r.method === "/guardtest.v1.GuardedService/PermissionUnary");
    assert.equal(permission?.source, "method");
    assert.match(permission?.rule ?? "", /^permissions: /);
    const bytes = await readFile(json);
    const services = await readImageServices("-", async () => bytes);
    assert.deepEqual(
      services.map((s) => s.typeName),
      ["guardtest.v1.GuardedService", "guardtest.v1.StaffOnlyService", "guardtest.v1.UnannotatedService"],
    );
  });

  it("a file that is not an image is one clear error", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "protoguard-image-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, "junk.binpb"), "definitely not protobuf \u0000\u0001");
    const { io } = captureIo();
    await assert.rejects(
      policyCommand(["--image", join(dir, "junk.binpb")], {}, io),
      /is not a Buf image or FileDescriptorSet/,
    );
    await assert.rejects(policyCommand(["--image", join(dir, "missing.binpb")], {}, io), /cannot be read: ENOENT/);
    await assert.rejects(policyCommand(["--image", "x", "--routes", "y"], {}, io), UsageError);
  });
});

describe("policy shows conditions, shadow rules, loaders and the authorize fallback", () => {
  const code = {
    resourceLoaders: new Set(
      ["UpdateDocument", "WatchDocument", "Brittle", "ShadowedOwner"].map((m) => `guardtest.v1.ConditionService/${m}`),
    ),
    authorize: true,
  };

  it("json: condition and its message, shadow rule and its source, loader per method, fallback", async () => {
    const { out, io } = captureIo();
    assert.equal(await runPolicy([ConditionService, ShadowedService], ["--format", "json"], io, { code }), 0);
    const report = JSON.parse(out.join("\n")) as { rows: PolicyRow[]; authorizeFallback?: boolean };
    assert.equal(report.authorizeFallback, true);
    assert.deepEqual(rowOf(report.rows, "/guardtest.v1.ConditionService/UpdateDocument"), {
      method: "/guardtest.v1.ConditionService/UpdateDocument",
      service: "guardtest.v1.ConditionService",
      kind: "unary",
      rule: "permissions: docs.change_document; condition: resource.owner_id == principal.id || principal.is_staff",
      source: "method",
      condition: {
        expression: "resource.owner_id == principal.id || principal.is_staff",
        message: "only the document's owner or staff may change it",
      },
      resourceLoader: true,
    });
    const shadowed = rowOf(report.rows, "/guardtest.v1.ConditionService/ShadowedRead");
    assert.deepEqual(shadowed.shadow, {
      rule: "authenticated; condition: request.document_id == principal.id || principal.is_staff",
      source: "method",
    });
    assert.equal(shadowed.resourceLoader, false);
    assert.deepEqual(rowOf(report.rows, "/guardtest.v1.ShadowedService/Plain").shadow, {
      rule: "staff",
      source: "service",
    });
    assert.equal(rowOf(report.rows, "/guardtest.v1.ConditionService/TaggedOnly").shadow, undefined);
  });

  it("table: shadow and loader columns, and notes on messages and the fallback", async () => {
    const { out, io } = captureIo();
    assert.equal(await runPolicy([ConditionService, ShadowedService], [], io, { code }), 0);
    assert.match(out[0]!, /^METHOD +KIND +RULE +SHADOW +LOADER +SOURCE$/);
    const line = (method: string) => out.find((l) => l.startsWith(`/guardtest.v1.${method} `))!;
    assert.match(line("ShadowedService/Plain"), /authenticated +staff \(service\) +- +service$/);
    assert.match(
      line("ConditionService/UpdateDocument"),
      /condition: resource\.owner_id == principal\.id .* +- +yes +method$/,
    );
    assert.ok(
      out.includes(
        'condition message of /guardtest.v1.ConditionService/UpdateDocument: "only the document\'s owner or staff may change it"',
      ),
    );
    assert.ok(out.includes("authorize fallback: set, called for every call the rules admit"));
    assert.ok(out.some((l) => l.startsWith("shadow: a rule being rolled out")));
  });

  it("without application code (a Buf image), loaders and the fallback are not claimed either way", async () => {
    const { out, io } = captureIo();
    assert.equal(await runPolicy([ConditionService], ["--format", "json"], io), 0);
    const report = JSON.parse(out.join("\n")) as { rows: PolicyRow[]; authorizeFallback?: boolean };
    assert.equal("authorizeFallback" in report, false);
    assert.ok(report.rows.every((r) => !("resourceLoader" in r)));
  });

  it("with application code, a condition reading resource on a method without a loader is invalid", async () => {
    const { err, io } = captureIo();
    const onlyOne = { resourceLoaders: new Set(["guardtest.v1.ConditionService/UpdateDocument"]), authorize: false };
    assert.equal(await runPolicy([ConditionService], ["--format", "json"], io, { code: onlyOne }), 1);
    assert.match(
      err.join("\n"),
      /ConditionService\/WatchDocument has a malformed rule: condition "request\.document_id > 0 && resource\.owner_id == principal\.id" reads resource, but the application registers no resource loader/,
    );
  });

  it("a condition that does not check is an invalid row, and exits 1", async () => {
    const { out, err, io } = captureIo();
    assert.equal(await runPolicy([BadFieldService], [], io), 1);
    assert.ok(out.some((l) => l.includes("invalid:") && l.includes("has no field 'documentid'")));
    assert.match(
      err.join("\n"),
      /BadFieldService\/UnknownField has a malformed rule: .*condition "request\.documentid == 1"/,
    );
  });
});
