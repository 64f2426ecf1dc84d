// The code protoc-gen-protoguard generated for test/proto/guardtest (gen/guardtest/v1/guarded_protoguard.ts),
// used as an application would: the typed implementation helper on every RPC kind, and the conformance
// tables run with protoguard/testing against it — passing for the real implementation, failing with a
// clear message for a wrong implementation and for a wrong rule.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport, type ConnectRouter } from "@connectrpc/connect";
import { GuardedService, StaffOnlyService } from "../gen/guardtest/v1/guarded_pb.js";
import { KindService } from "../gen/guardtest/v1/kinds_pb.js";
import { implementGuardedKindService, KindServiceConformance } from "../gen/guardtest/v1/kinds_protoguard.js";
import {
  GuardedServiceConformance,
  implementGuardedGuardedService,
  implementGuardedStaffOnlyService,
  StaffOnlyServiceConformance,
  type GuardedGuardedServiceImpl,
} from "../gen/guardtest/v1/guarded_protoguard.js";
import { create } from "@bufbuild/protobuf";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { authErrorReason, type Principal } from "../src/exports/protoguard.js";
import { ERROR_DOMAIN } from "../src/exports/core.js";
import { eq } from "drizzle-orm";
import * as schema from "../src/store/schema.js";
import {
  checkConformance,
  createTestAuth,
  createTestDatabase,
  runConformance,
  type TestDatabase,
} from "../src/exports/testing.js";
import { type ConformanceTable } from "../src/exports/protoguard.js";

type Ping = { text: string };

const EVERYONE = { kind: "user", permissions: [], staff: false, superuser: false } as const;

/** The refusal a false rule condition gets. */
function conditionFailed(): ConnectError {
  const info = create(ErrorInfoSchema, { reason: "CONDITION_FAILED", domain: ERROR_DOMAIN });
  return new ConnectError("condition failed", Code.PermissionDenied, undefined, [
    { desc: ErrorInfoSchema, value: info },
  ]);
}

/** A real implementation written with the typed helper: every method answers with its caller. */
function guardedImpl(overrides: Partial<GuardedGuardedServiceImpl> = {}): GuardedGuardedServiceImpl {
  const pong = (text: string, principal: Principal | undefined) => ({ text, username: principal?.username ?? "" });
  // Methods whose rule requires a caller receive a Principal, never undefined.
  const unary = (req: Ping, _ctx: unknown, principal: Principal) => pong(req.text, principal);
  const publicUnary = (req: Ping, _ctx: unknown, principal: Principal | undefined) => pong(req.text, principal);
  async function* serverStream(req: Ping, _ctx: unknown, principal: Principal | undefined) {
    yield pong(req.text, principal);
    yield pong(req.text, principal);
  }
  async function clientStream(reqs: AsyncIterable<Ping>, _ctx: unknown, principal: Principal | undefined) {
    const texts: string[] = [];
    for await (const r of reqs) texts.push(r.text);
    return pong(texts.join(","), principal);
  }
  async function* bidi(reqs: AsyncIterable<Ping>, _ctx: unknown, principal: Principal) {
    for await (const r of reqs) yield pong(r.text, principal);
  }
  return {
    publicUnary,
    authenticatedUnary: unary,
    permissionUnary: unary,
    twoPermissionsUnary: unary,
    staffUnary: (req, _ctx, principal) => pong(`${req.text} by staff ${principal.isStaff}`, principal),
    superuserUnary: unary,
    defaultUnary: unary,
    publicServerStream: serverStream,
    permissionServerStream: serverStream,
    staffClientStream: clientStream,
    publicClientStream: clientStream,
    superuserBidiStream: bidi,
    authenticatedBidiStream: bidi,
    ...overrides,
  };
}

function routesOf(impl: GuardedGuardedServiceImpl) {
  return (router: ConnectRouter) => {
    router.service(GuardedService, implementGuardedGuardedService(impl));
    router.service(
      StaffOnlyService,
      implementGuardedStaffOnlyService({
        inherited: (req, _ctx, principal) => ({ text: req.text, username: principal.username }),
        overridden: (req, _ctx, principal) => ({ text: req.text, username: principal?.username ?? "" }),
        async *inheritedServerStream(req, _ctx, principal) {
          yield { text: req.text, username: principal.username };
        },
      }),
    );
  };
}

describe("generated typed implementation helper", () => {
  it("types the caller as the rule allows", () => {
    implementGuardedGuardedService(
      guardedImpl({
        // @ts-expect-error a public method's caller may be undefined
        publicUnary: (req, _ctx, principal) => ({ text: req.text, username: principal.username }),
      }),
    );
    // @ts-expect-error every method must be implemented: none can be forgotten
    assert.throws(() => implementGuardedStaffOnlyService({ inherited: () => ({}), overridden: () => ({}) }), {
      name: "TypeError",
      message: /lacks method inheritedServerStream/,
    });
  });

  it("never runs a method that requires a caller when the auth layer is missing, on every RPC kind", async () => {
    let ran = 0;
    const counted = guardedImpl({
      authenticatedUnary: () => {
        ran++;
        return {};
      },
      permissionServerStream: async function* () {
        ran++;
        yield {};
      },
      staffClientStream: async () => {
        ran++;
        return {};
      },
      authenticatedBidiStream: async function* () {
        ran++;
        yield {};
      },
    });
    // No interceptor, no request gate: the router as a misconfigured server would have it.
    const transport = createRouterTransport(routesOf(counted));
    const client = createClient(GuardedService, transport);
    const refusal = async (promise: Promise<unknown>) => {
      const error = await promise.then(
        () => assert.fail("the call succeeded"),
        (e: unknown) => ConnectError.from(e),
      );
      assert.equal(error.code, Code.Unauthenticated);
      assert.equal(authErrorReason(error), "TOKEN_MISSING");
    };
    const drain = async (stream: AsyncIterable<unknown>) => {
      for await (const _ of stream);
    };
    async function* one() {
      yield { text: "x" };
    }
    await refusal(client.authenticatedUnary({ text: "x" }));
    await refusal(drain(client.permissionServerStream({ text: "x" })));
    await refusal(client.staffClientStream(one()));
    await refusal(drain(client.authenticatedBidiStream(one())));
    assert.equal(ran, 0);
    // A public method still runs, with no caller.
    assert.deepEqual(await client.publicUnary({ text: "hi" }), {
      $typeName: "guardtest.v1.Pong",
      text: "hi",
      username: "",
    });
  });
});

describe("generated typed helper with the auth layer", () => {
  it("hands a service account to a method its rule admits it to, like a person", async () => {
    await using t = await createTestAuth({ routes: routesOf(guardedImpl()) });
    const robot = await t.createUser({ username: "robot", permissions: ["shop.view_order"] });
    await t.database.db.update(schema.users).set({ kind: "service" }).where(eq(schema.users.id, robot.id));
    const client = createClient(GuardedService, t.transport);
    const headers = await t.authHeaders(robot);
    assert.equal((await client.permissionUnary({ text: "x" }, { headers })).username, "robot");
    assert.equal((await client.publicUnary({ text: "x" }, { headers })).username, "robot");
  });
});

describe("generated conformance tables", () => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase();
  });
  after(async () => {
    await database?.close();
  });

  it("the table has a case per requirement of each rule", () => {
    const twoPermissions = GuardedServiceConformance.methods.find((m) => m.method === "twoPermissionsUnary");
    assert.deepEqual(
      twoPermissions?.cases.map((c) => [c.name, c.expect.outcome === "deny" ? c.expect.reason : "allow"]),
      [
        ["anonymous", "TOKEN_MISSING"],
        ["missing shop.view_order", "PERMISSION_MISSING"],
        ["missing shop.change_order", "PERMISSION_MISSING"],
        ["has everything", "allow"],
      ],
    );
    const inherited = StaffOnlyServiceConformance.methods.find((m) => m.method === "inherited");
    assert.deepEqual(
      inherited?.cases.map((c) => c.name),
      ["anonymous", "not staff", "has everything"],
    );
  });

  it("GuardedService conforms: every case of every RPC kind", (t) =>
    runConformance(t, GuardedServiceConformance, {
      routes: routesOf(guardedImpl()),
      database,
      requests: { staffUnary: { text: "hello" }, permissionServerStream: () => ({ text: "stream" }) },
    }));

  it("StaffOnlyService conforms (service rule, method override, server stream)", (t) =>
    runConformance(t, StaffOnlyServiceConformance, { routes: routesOf(guardedImpl()), database }));

  it("catches an implementation stricter than its rule, naming the case and what happened", async () => {
    const wrong = guardedImpl({
      // Demands staff on a method whose rule asks only for a permission.
      permissionUnary: (req, _ctx, principal) => {
        if (!principal.isStaff) throw new ConnectError("staff only", Code.PermissionDenied);
        return { text: req.text, username: principal.username };
      },
    });
    const results = await checkConformance(GuardedServiceConformance, { routes: routesOf(wrong), database });
    const failed = results.filter((r) => !r.ok);
    assert.deepEqual(
      failed.map((r) => r.name),
      ["GuardedService.PermissionUnary [has everything]"],
    );
    assert.match(
      failed[0]!.message,
      /rule "permissions: shop.view_order" admits this caller, but the call was refused after the rule check, by a condition or the handler and ended PermissionDenied: staff only/,
    );
    assert.ok(results.length > 20 && results.filter((r) => r.ok).length === results.length - 1);
  });

  it("catches a server whose rule differs from the table (a public server default)", async () => {
    const results = await checkConformance(GuardedServiceConformance, {
      routes: routesOf(guardedImpl()),
      database,
      defaultRule: { public: true },
    });
    const failed = results.filter((r) => !r.ok);
    assert.deepEqual(
      failed.map((r) => r.name),
      ["GuardedService.DefaultUnary [anonymous]"],
    );
    // The rule admitted the anonymous call; the typed helper still refused it (the method's
    // implementation takes a Principal), which the table reports as not the rule's refusal.
    assert.match(
      failed[0]!.message,
      /rule "authenticated" demands Unauthenticated \(TOKEN_MISSING\), but the call was refused after the rule check, by a condition or the handler and ended Unauthenticated \(TOKEN_MISSING\)/,
    );
  });

  it("KindService conforms: a principal of the other kind is refused PRINCIPAL_KIND", (t) =>
    runConformance(t, KindServiceConformance, {
      database,
      routes: (router) => {
        const pong = (req: Ping, _ctx: unknown, principal: Principal | undefined) => ({
          text: req.text,
          username: principal?.username ?? "",
        });
        router.service(
          KindService,
          implementGuardedKindService({
            forUsers: pong,
            forServices: pong,
            chargeForServices: pong,
            authenticated: pong,
            charge: pong,
            public: pong,
            async *follow(req, _ctx, principal) {
              yield pong(req, _ctx, principal);
            },
          }),
        );
      },
    }));

  it("judges a method with a condition by the `conditions` option", async () => {
    // A table as the plugin writes it for a rule with a condition. The refusal a false condition gets
    // (PERMISSION_DENIED, reason CONDITION_FAILED) comes here from the handler, standing in for the
    // condition evaluator: the runner judges what the client sees either way.
    const table: ConformanceTable<typeof GuardedService> = {
      service: GuardedService,
      methods: [
        {
          method: "authenticatedUnary",
          rule: "authenticated; condition: request.text == 'ok'",
          condition: "request.text == 'ok'",
          cases: [{ name: "has everything", caller: EVERYONE, expect: { outcome: "allow" } }],
        },
      ],
    };
    const routes = routesOf(
      guardedImpl({
        authenticatedUnary: (req, _ctx, principal) => {
          if (req.text !== "ok") throw conditionFailed();
          return { text: req.text, username: principal.username };
        },
      }),
    );
    const judge = async (text: string, holds: boolean | undefined) => {
      const [result] = await checkConformance(table, {
        routes,
        database,
        requests: { authenticatedUnary: { text } },
        conditions: holds === undefined ? {} : { authenticatedUnary: holds },
      });
      return result!;
    };
    assert.equal((await judge("no", undefined)).ok, true, "not asserted: a CONDITION_FAILED refusal is accepted");
    assert.equal((await judge("ok", true)).ok, true);
    assert.equal((await judge("no", false)).ok, true);
    const wronglyRefused = await judge("no", true);
    assert.equal(wronglyRefused.ok, false);
    assert.match(wronglyRefused.message, /ended PermissionDenied \(CONDITION_FAILED\)/);
    const wronglyAdmitted = await judge("ok", false);
    assert.equal(wronglyAdmitted.ok, false);
    assert.match(
      wronglyAdmitted.message,
      /condition "request.text == 'ok'" should refuse \(CONDITION_FAILED\), but the call was admitted and succeeded/,
    );
  });

  it("a failing case fails its runConformance subtest with that message", async () => {
    const names: string[] = [];
    const errors: Error[] = [];
    // Records subtests the way node:test runs them, to observe what it would report.
    const recorder = {
      async test(name: string, fn: () => Promise<void> | void) {
        names.push(name);
        await Promise.resolve(fn()).catch((error: Error) => errors.push(error));
      },
    };
    await runConformance(recorder, StaffOnlyServiceConformance, {
      routes: routesOf(guardedImpl()),
      database,
      defaultRule: { staff: true },
    });
    assert.equal(errors.length, 0, "the service rule governs StaffOnlyService, whatever the default");
    await runConformance(recorder, GuardedServiceConformance, {
      routes: routesOf(guardedImpl()),
      database,
      defaultRule: { public: true },
    });
    assert.ok(names.includes("GuardedService.DefaultUnary [anonymous]"));
    assert.deepEqual(
      errors.map((e) => e.message.split(":")[0]),
      ["GuardedService.DefaultUnary [anonymous]"],
    );
  });
});
