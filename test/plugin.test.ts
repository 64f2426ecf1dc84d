// protoc-gen-protoguard run for real: `buf generate` on a fresh project in a temporary directory, with
// protoc-gen-es next to it; the output compiled with tsc under strict flags; the generated conformance
// table run against a real implementation written with the generated helper — and against a wrong one.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import { requirePermission } from "../src/exports/protoguard.js";
import { checkConformance, createTestDatabase, runConformance, type TestDatabase } from "../src/exports/testing.js";
import { type ConformanceTable } from "../src/exports/protoguard.js";

const run = promisify(execFile);
const REPO = join(import.meta.dirname, "..");

const SHOP_PROTO = `syntax = "proto3";

package shop.v1;

import "protoguard/v1/options.proto";

message Item {
  string name = 1;
  string owner = 2;
}

message ItemRequest {
  string name = 1;
}

service ItemService {
  option (protoguard.v1.service_rule) = {authenticated: true};

  rpc GetItem(ItemRequest) returns (Item) {
    option (protoguard.v1.method_rule) = {public: true};
  }
  rpc UpdateItem(ItemRequest) returns (Item) {
    option (protoguard.v1.method_rule) = {
      permissions: ["shop.change_item", "shop.view_item"]
      staff: true
    };
    option (protoguard.v1.method_shadow_rule) = {superuser: true};
  }
  rpc RenameItem(ItemRequest) returns (Item) {
    option (protoguard.v1.method_rule) = {
      authenticated: true
      condition: "request.name != ''"
      condition_message: "a name is required"
    };
  }
  rpc WatchItems(ItemRequest) returns (stream Item);
  rpc ImportItems(stream ItemRequest) returns (Item) {
    option (protoguard.v1.method_rule) = {superuser: true};
  }
}

service ItemSyncService {
  rpc Sync(stream ItemRequest) returns (stream Item) {
    option (protoguard.v1.method_rule) = {
      principal_kind: PRINCIPAL_KIND_SERVICE
      permissions: ["shop.sync_item"]
    };
  }
}

service PlainService {
  rpc Ping(ItemRequest) returns (Item);
}
`;

const TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    noUnusedLocals: true,
    verbatimModuleSyntax: true,
    skipLibCheck: true,
    noEmit: true,
    types: ["node"],
  },
  include: ["gen/**/*.ts", "app.ts"],
};

/** An application file: it must type-check against the generated helper. */
const APP_TS = `import type { ConnectRouter } from "@connectrpc/connect";
import { implementGuardedItemService } from "./gen/shop/v1/shop_protoguard.js";
import { ItemService } from "./gen/shop/v1/shop_pb.js";

export const routes = (router: ConnectRouter) =>
  router.service(
    ItemService,
    implementGuardedItemService({
      getItem: (req, _ctx, principal) => ({ name: req.name, owner: principal?.username ?? "" }),
      updateItem: (req, _ctx, principal) => ({ name: req.name, owner: principal.username }),
      renameItem: (req, _ctx, principal) => ({ name: req.name, owner: principal.username }),
      async *watchItems(req, _ctx, principal) {
        yield { name: req.name, owner: principal.username };
      },
      async importItems(reqs, _ctx, principal) {
        let name = "";
        for await (const r of reqs) name = r.name;
        return { name, owner: principal.username };
      },
    }),
  );
`;

interface GeneratedModule {
  ItemServiceConformance: ConformanceTable<DescService>;
  ItemSyncServiceConformance: ConformanceTable<DescService>;
  implementGuardedItemService(impl: Record<string, unknown>): ServiceImpl<DescService>;
}

describe("protoc-gen-protoguard", { timeout: 180_000 }, () => {
  let dir: string;
  let generated: string;
  let database: TestDatabase;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoguard-plugin-"));
    await symlink(join(REPO, "node_modules"), join(dir, "node_modules"));
    await mkdir(join(dir, "proto", "shop", "v1"), { recursive: true });
    await mkdir(join(dir, "proto", "protoguard", "v1"), { recursive: true });
    await copyFile(
      join(REPO, "proto", "protoguard", "v1", "options.proto"),
      join(dir, "proto", "protoguard", "v1", "options.proto"),
    );
    await writeFile(join(dir, "proto", "shop", "v1", "shop.proto"), SHOP_PROTO);
    await writeFile(join(dir, "package.json"), JSON.stringify({ name: "shop", private: true, type: "module" }));
    await writeFile(join(dir, "buf.yaml"), "version: v2\nmodules:\n  - path: proto\n");
    await writeFile(
      join(dir, "buf.gen.yaml"),
      [
        "version: v2",
        "plugins:",
        "  - local: protoc-gen-es",
        "    out: gen",
        "    opt: [target=ts, import_extension=js]",
        `  - local: ["node", "--import", "tsx", ${JSON.stringify(join(REPO, "src/plugin/bin.ts"))}]`,
        "    out: gen",
        `    opt: [target=ts, import_extension=js, protoguard_import=${relative(join(dir, "gen"), join(REPO, "src"))}]`,
        "",
      ].join("\n"),
    );
    await run("npx", ["--no-install", "buf", "generate"], { cwd: dir });
    generated = await readFile(join(dir, "gen", "shop", "v1", "shop_protoguard.ts"), "utf8");
    database = await createTestDatabase();
  });

  after(async () => {
    await database?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("writes one file next to shop_pb.ts, for the annotated services only", () => {
    assert.match(generated, /^\/\/ @generated by protoc-gen-protoguard v\d/);
    assert.match(generated, /export type GuardedItemServiceImpl = GuardedServiceImpl<\s*typeof ItemService,/);
    assert.match(generated, /"updateItem" \| "renameItem" \| "watchItems" \| "importItems"/);
    assert.match(generated, /export function implementGuardedItemSyncService/);
    assert.doesNotMatch(generated, /PlainService/);
    assert.match(generated, /import \{ ItemService, ItemSyncService \} from "\.\/shop_pb\.js";/);
  });

  it("compiles with tsc under strict flags, and an app typed against it compiles", async () => {
    await writeFile(join(dir, "tsconfig.json"), JSON.stringify(TSCONFIG));
    await writeFile(join(dir, "app.ts"), APP_TS);
    const tsc = join(REPO, "node_modules", "typescript", "bin", "tsc");
    await run(process.execPath, [tsc, "-p", "."], { cwd: dir }).catch((error: { stdout: string }) =>
      assert.fail(`tsc failed:\n${error.stdout}`),
    );
    // A public method's caller may be undefined: using it unchecked does not compile.
    await writeFile(join(dir, "app.ts"), APP_TS.replace("principal?.username", "principal.username"));
    const failed = await run(process.execPath, [tsc, "-p", "."], { cwd: dir }).then(
      () => "",
      (error: { stdout: string }) => error.stdout,
    );
    assert.match(failed, /app\.ts.*'principal' is possibly 'undefined'/);
  });

  it("generates the cases each rule demands, with conditions, shadow rules and principal kinds", async () => {
    const mod = (await import(
      pathToFileURL(join(dir, "gen", "shop", "v1", "shop_protoguard.ts")).href
    )) as GeneratedModule;
    const byMethod = new Map(mod.ItemServiceConformance.methods.map((m) => [m.method, m]));
    const cases = (method: string) =>
      byMethod.get(method)!.cases.map((c) => `${c.name} -> ${c.expect.outcome === "deny" ? c.expect.reason : "allow"}`);
    assert.deepEqual(cases("getItem"), ["anonymous -> allow", "has everything -> allow"]);
    assert.deepEqual(cases("updateItem"), [
      "anonymous -> TOKEN_MISSING",
      "missing shop.change_item -> PERMISSION_MISSING",
      "missing shop.view_item -> PERMISSION_MISSING",
      "not staff -> STAFF_REQUIRED",
      "has everything -> allow",
    ]);
    assert.equal(byMethod.get("updateItem")!.rule, "staff; permissions: shop.change_item, shop.view_item");
    assert.equal(byMethod.get("updateItem")!.shadowRule, "superuser");
    assert.equal(byMethod.get("renameItem")!.condition, "request.name != ''");
    // The service rule governs methods without their own.
    assert.deepEqual(cases("watchItems"), ["anonymous -> TOKEN_MISSING", "has everything -> allow"]);
    // A superuser holds every permission: no "missing permission" case is possible, only "not superuser".
    assert.deepEqual(cases("importItems"), [
      "anonymous -> TOKEN_MISSING",
      "not superuser -> SUPERUSER_REQUIRED",
      "has everything -> allow",
    ]);
    const sync = mod.ItemSyncServiceConformance.methods[0]!;
    assert.deepEqual(
      sync.cases.map((c) => [c.name, c.caller]),
      [
        ["anonymous", { anonymous: true }],
        ["missing shop.sync_item", { kind: "service", permissions: [], staff: false, superuser: false }],
        ["a user principal", { kind: "user", permissions: ["shop.sync_item"], staff: false, superuser: false }],
        ["has everything", { kind: "service", permissions: ["shop.sync_item"], staff: false, superuser: false }],
      ],
    );
  });

  it("the generated table passes against the real implementation and catches a wrong one", async (t) => {
    const mod = (await import(
      pathToFileURL(join(dir, "gen", "shop", "v1", "shop_protoguard.ts")).href
    )) as GeneratedModule;
    const { ItemService } = (await import(pathToFileURL(join(dir, "gen", "shop", "v1", "shop_pb.ts")).href)) as {
      ItemService: DescService;
    };
    const appUrl = pathToFileURL(join(dir, "app.ts")).href;
    await writeFile(join(dir, "app.ts"), APP_TS);
    const { routes } = (await import(appUrl)) as { routes: (router: ConnectRouter) => void };
    await runConformance(t, mod.ItemServiceConformance, {
      routes,
      database,
      requests: { renameItem: { name: "spoon" } },
      conditions: { renameItem: true },
    });

    // UpdateItem's implementation demands a permission its rule does not name.
    const wrong = (router: ConnectRouter) =>
      router.service(
        ItemService,
        mod.implementGuardedItemService({
          getItem: () => ({}),
          updateItem: (_req: unknown, ctx: Parameters<typeof requirePermission>[0]) => {
            requirePermission(ctx, "shop.delete_item");
            return {};
          },
          renameItem: () => ({}),
          async *watchItems() {
            yield {};
          },
          importItems: async () => ({}),
        }),
      );
    const results = await checkConformance(mod.ItemServiceConformance, { routes: wrong, database });
    const failed = results.filter((r) => !r.ok);
    assert.deepEqual(
      failed.map((r) => r.name),
      ["ItemService.UpdateItem [has everything]"],
    );
    assert.match(
      failed[0]!.message,
      /ended PermissionDenied \(PERMISSION_MISSING\): missing permission shop\.delete_item/,
    );
  });

  it("refuses a malformed rule, naming the method, as the server would", async () => {
    await writeFile(
      join(dir, "proto", "shop", "v1", "bad.proto"),
      'syntax = "proto3";\npackage shop.v1;\nimport "protoguard/v1/options.proto";\nmessage BadRequest {}\nservice BadService {\n  rpc Bad(BadRequest) returns (BadRequest) {\n    option (protoguard.v1.method_rule) = {public: true, staff: true};\n  }\n}\n',
    );
    const error = await run("npx", ["--no-install", "buf", "generate"], { cwd: dir }).then(
      () => assert.fail("buf generate succeeded"),
      (e: { stderr: string }) => e.stderr,
    );
    assert.match(error, /shop\.v1\.BadService\/Bad: invalid protoguard rule: public cannot be combined/);
    await rm(join(dir, "proto", "shop", "v1", "bad.proto"));
  });

  it("refuses a condition that does not type-check against the request, naming file, method and expression", async () => {
    // `request.pagesize` for `page_size`: the checker start-up runs (compileCondition) finds it here.
    await writeFile(
      join(dir, "proto", "shop", "v1", "typo.proto"),
      'syntax = "proto3";\npackage shop.v1;\nimport "protoguard/v1/options.proto";\nmessage ListRequest {\n  int32 page_size = 1;\n}\nservice TypoService {\n  rpc List(ListRequest) returns (ListRequest) {\n    option (protoguard.v1.method_rule) = {authenticated: true, condition: "request.pagesize <= 100"};\n  }\n}\n',
    );
    try {
      const error = await run("npx", ["--no-install", "buf", "generate"], { cwd: dir }).then(
        () => assert.fail("buf generate succeeded with a condition naming a field the request lacks"),
        (e: { stderr: string }) => e.stderr,
      );
      assert.match(error, /shop\/v1\/typo\.proto: shop\.v1\.TypoService\/List: invalid protoguard rule/);
      assert.match(error, /condition "request\.pagesize <= 100" is not valid/);
    } finally {
      await rm(join(dir, "proto", "shop", "v1", "typo.proto"));
    }
  });
});

describe("protoguard init adds protoc-gen-protoguard next to protoc-gen-es", { timeout: 120_000 }, () => {
  it("writes a buf.gen.yaml whose buf generate produces *_protoguard.ts importing the package", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "protoguard-init-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    // The project as npm would lay it out: protoguard installed, its plugin on PATH via node_modules/.bin.
    const bin = join(dir, "node_modules", ".bin");
    await mkdir(bin, { recursive: true });
    await symlink(REPO, join(dir, "node_modules", "protoguard"));
    await symlink(join(REPO, "node_modules", ".bin", "protoc-gen-es"), join(bin, "protoc-gen-es"));
    const shim = join(bin, "protoc-gen-protoguard");
    // dist/ is built only by `npm pack`; run the same entry point from source.
    await writeFile(
      shim,
      `#!/bin/sh\nexec node --import ${pathToFileURL(join(REPO, "node_modules/tsx/dist/loader.mjs")).href} ${JSON.stringify(join(REPO, "src/plugin/bin.ts"))} "$@"\n`,
    );
    await run("chmod", ["+x", shim]);
    const { initProject } = await import("../src/cli/init.js");
    const result = await initProject({ dir });
    assert.deepEqual(result.written, ["buf.yaml", "buf.gen.yaml"]);
    await mkdir(join(dir, "proto", "shop", "v1"), { recursive: true });
    await writeFile(join(dir, "proto", "shop", "v1", "shop.proto"), SHOP_PROTO);
    await run(join(REPO, "node_modules", ".bin", "buf"), ["generate"], {
      cwd: dir,
      env: { ...process.env, PATH: `${bin}:${process.env["PATH"]}` },
    });
    const out = await readFile(join(dir, "src", "gen", "shop", "v1", "shop_protoguard.ts"), "utf8");
    assert.match(out, /import \{ guardImplementation \} from "protoguard";/);
    // The table's type from the main entry point: protoguard/testing's types reach the drivers.
    assert.match(out, /import type \{ ConformanceTable, GuardedServiceImpl \} from "protoguard";/);
    assert.doesNotMatch(out, /from "protoguard\/testing"/);
    // A second init leaves the file alone and has nothing to add.
    assert.deepEqual((await initProject({ dir })).advice, []);
  });
});
