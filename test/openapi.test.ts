// `protoguard policy --format openapi`: an OpenAPI 3.1 document of who may call what, validated with a
// real OpenAPI validator, for the served example (--routes) and for a Buf image with conditions, shadow
// rules and principal kinds (--image).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import SwaggerParser from "@apidevtools/swagger-parser";
import { policyCommand } from "../src/cli/policy.js";
import exampleApp from "../example/app.js";

const run = promisify(execFile);
const root = join(import.meta.dirname, "..");

type Operation = {
  security: Record<string, string[]>[];
  description: string;
  responses: Record<string, unknown>;
  "x-protoguard": Record<string, unknown>;
};
type Document = { openapi: string; paths: Record<string, { post: Operation }>; components: Record<string, unknown> };

async function openapi(args: string[], options?: Parameters<typeof policyCommand>[3]): Promise<Document> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await policyCommand(
    [...args, "--format", "openapi"],
    {},
    { out: (l) => void out.push(l), err: (l) => void err.push(l) },
    options,
  );
  assert.equal(code, 0, err.join("\n"));
  const document = JSON.parse(out.join("\n")) as Document;
  // A real validator: structure, $refs and the 3.1 schema. It dereferences in place, so validate a copy.
  await SwaggerParser.validate(structuredClone(document) as never);
  return document;
}

describe("policy --format openapi", () => {
  it("describes the served example: bearer scheme, public and guarded operations at Connect's paths", async () => {
    const doc = await openapi([], { defaultApp: async () => exampleApp });
    assert.equal(doc.openapi, "3.1.0");
    assert.deepEqual((doc.components["securitySchemes"] as Record<string, unknown>)["bearerAuth"], {
      type: "http",
      scheme: "bearer",
      bearerFormat: "JWT",
      description: (
        (doc.components["securitySchemes"] as Record<string, { description: string }>)["bearerAuth"] ?? {
          description: "",
        }
      ).description,
    });
    const product = doc.paths["/example.v1.ProductService/GetProduct"]!.post;
    assert.deepEqual(product.security, []);
    assert.equal(product["x-protoguard"]["public"], true);
    assert.equal(product.responses["401"], undefined);

    const update = doc.paths["/example.v1.ProductService/UpdateProduct"]!.post;
    assert.deepEqual(update.security, [{ bearerAuth: [] }]);
    assert.deepEqual(update["x-protoguard"]["permissions"], ["products.change_product"]);
    assert.match(update.description, /must hold every permission: `products\.change_product`/);
    assert.ok(update.responses["401"] && update.responses["403"]);

    const admin = doc.paths["/example.v1.AdminService/DeleteUser"]!.post;
    assert.equal(admin["x-protoguard"]["superuser"], true);
    assert.match(admin.description, /must be a superuser/);

    const watch = doc.paths["/example.v1.AccountService/WatchNotifications"]!.post;
    assert.equal(watch["x-protoguard"]["source"], "service");
    assert.equal(watch["x-protoguard"]["methodKind"], "server_streaming");
    assert.match(watch.description, /Streaming \(server streaming\)/);

    // UpdateOrder's condition reads the order the example's loader returns; the app sets no authorize fallback.
    const order = doc.paths["/example.v1.OrderService/UpdateOrder"]!.post;
    assert.equal(order["x-protoguard"]["condition"], "resource.user_id == principal.id || principal.is_staff");
    assert.equal(order["x-protoguard"]["resourceLoader"], true);
    assert.match(order.description, /`resource` is loaded by the application/);
    assert.deepEqual((doc as unknown as Record<string, unknown>)["x-protoguard"], {
      defaultRule: "authenticated",
      authorizeFallback: false,
    });

    // Health and reflection, added by the server without the auth layer.
    const health = doc.paths["/grpc.health.v1.Health/Check"]!.post;
    assert.deepEqual(health.security, []);
    assert.equal(health["x-protoguard"]["source"], "server");
  });

  it("describes conditions, shadow rules and principal kinds from a Buf image", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "protoguard-openapi-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await mkdir(join(dir, "proto", "protoguard", "v1"), { recursive: true });
    await mkdir(join(dir, "proto", "shop", "v1"), { recursive: true });
    await copyFile(join(root, "proto/protoguard/v1/options.proto"), join(dir, "proto/protoguard/v1/options.proto"));
    await writeFile(join(dir, "buf.yaml"), "version: v2\nmodules:\n  - path: proto\n");
    await writeFile(
      join(dir, "proto/shop/v1/shop.proto"),
      `syntax = "proto3";
package shop.v1;
import "protoguard/v1/options.proto";
message Req { int32 order_id = 1; }
service OrderService {
  rpc UpdateOrder(Req) returns (Req) {
    option (protoguard.v1.method_rule) = {
      authenticated: true
      condition: "resource.user_id == principal.id || principal.is_staff"
      condition_message: "you can only update your own orders"
    };
    option (protoguard.v1.method_shadow_rule) = {permissions: ["shop.change_order"]};
  }
  rpc Sync(Req) returns (Req) {
    option (protoguard.v1.method_rule) = {authenticated: true, principal_kind: PRINCIPAL_KIND_SERVICE};
  }
  rpc GetOrder(Req) returns (Req) {
    option idempotency_level = NO_SIDE_EFFECTS;
    option (protoguard.v1.method_rule) = {permissions: ["shop.view_order"]};
  }
}
`,
    );
    const image = join(dir, "image.binpb");
    await run(join(root, "node_modules/.bin/buf"), ["build", "--path", "proto/shop", "-o", image], { cwd: dir });
    const doc = await openapi(["--image", image]);
    assert.deepEqual(Object.keys(doc.paths), [
      "/shop.v1.OrderService/UpdateOrder",
      "/shop.v1.OrderService/Sync",
      "/shop.v1.OrderService/GetOrder",
    ]);
    // Connect serves a method without side effects over GET too: same security, message in the query.
    const getOrder = doc.paths["/shop.v1.OrderService/GetOrder"] as unknown as Record<string, Operation>;
    assert.deepEqual(Object.keys(getOrder), ["post", "get"]);
    assert.deepEqual(getOrder["get"]!.security, [{ bearerAuth: [] }]);
    assert.deepEqual(getOrder["get"]!["x-protoguard"]["permissions"], ["shop.view_order"]);
    assert.equal(doc.paths["/shop.v1.OrderService/Sync"]!["get" as "post"], undefined);
    const update = doc.paths["/shop.v1.OrderService/UpdateOrder"]!.post;
    assert.deepEqual(update["x-protoguard"], {
      rule: "authenticated; condition: resource.user_id == principal.id || principal.is_staff",
      source: "method",
      public: false,
      methodKind: "unary",
      condition: "resource.user_id == principal.id || principal.is_staff",
      conditionMessage: "you can only update your own orders",
      shadowRule: "permissions: shop.change_order",
    });
    assert.match(
      update.description,
      /Condition: `resource\.user_id == principal\.id \|\| principal\.is_staff` \(otherwise: "you can only update your own orders"\)\. Shadow rule, logged but not enforced: permissions: shop\.change_order\./,
    );
    const sync = doc.paths["/shop.v1.OrderService/Sync"]!.post;
    assert.equal(sync["x-protoguard"]["principalKind"], "service");
    assert.match(sync.description, /Only service accounts may call/);
  });

  it("an unknown format still names openapi among the choices", async () => {
    await assert.rejects(
      policyCommand(["--format", "yaml"], {}, { out: () => {}, err: () => {} }, { defaultApp: async () => exampleApp }),
      /--format must be one of table, markdown, json, openapi/,
    );
  });
});
