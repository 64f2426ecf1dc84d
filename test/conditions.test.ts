/**
 * Rule conditions (CEL), resource loaders, the `authorize` fallback and
 * shadow rules, through the public API on the in-memory transport, with a
 * real database and real tokens.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import {
  Code,
  ConnectError,
  createClient,
  type Client,
  type ConnectRouter,
  type HandlerContext,
} from "@connectrpc/connect";
import {
  BadFieldService,
  BadShadowService,
  BadStreamService,
  BadSyntaxService,
  BadTypeService,
  ConditionService,
  PlainDocumentService,
  ShadowedService,
  type DocumentRequest,
} from "../gen/guardtest/v1/conditions_pb.js";
import {
  authErrorReason,
  createAuth,
  getUser,
  PolicyError,
  type AuthorizeCall,
  type AuthorizeFallback,
  type DecisionEvent,
  type ResourceLoader,
  type ResourceLoaders,
} from "../src/exports/protoguard.js";
import type { DescMethod } from "@bufbuild/protobuf";
import { createObservability, startServer } from "../src/exports/server.js";
import { pino } from "pino";
import { GuardedService } from "../gen/guardtest/v1/guarded_pb.js";
import { createTestAuth, createTestDatabase, type TestAuth } from "../src/exports/testing.js";
import { createPrincipalSource } from "../src/exports/store.js";
import { createKeyring, createTokenVerifier } from "../src/exports/protoguard.js";

async function refusal(promise: Promise<unknown>, code: Code, reason: string): Promise<ConnectError> {
  try {
    await promise;
  } catch (e) {
    const err = ConnectError.from(e);
    assert.equal(err.code, code, `expected ${Code[code]}, got ${Code[err.code]}: ${err.message}`);
    assert.equal(authErrorReason(err), reason, err.message);
    return err;
  }
  assert.fail(`expected ${Code[code]} ${reason}, but the call succeeded`);
}

/** Handlers answering with the request text and the caller's name. */
function conditionRoutes(router: ConnectRouter): void {
  const answer = (req: DocumentRequest, ctx: HandlerContext) => ({
    text: req.text,
    username: getUser(ctx)?.username ?? "",
  });
  router.service(ConditionService, {
    updateDocument: answer,
    taggedOnly: answer,
    async *watchDocument(req, ctx) {
      yield answer(req, ctx);
      yield answer(req, ctx);
    },
    brittle: answer,
    publicUnlessBlocked: answer,
    shadowedRead: answer,
    shadowedPublic: answer,
    shadowedOwner: answer,
  });
  router.service(ShadowedService, { plain: answer });
}

/** Documents by id, as a real store would return them; owner ids set per test. */
type Document = { owner_id?: number; title: string };

describe("conditions, resource loaders, authorize and shadow rules", { timeout: 120_000 }, () => {
  let t: TestAuth;
  let client: Client<typeof ConditionService>;
  let shadowed: Client<typeof ShadowedService>;
  const documents = new Map<number, Document>();
  const loaderCalls: { method: string; documentId: number }[] = [];
  let loaderFailure: Error | undefined;
  const events: DecisionEvent[] = [];
  const authorizeCalls: AuthorizeCall[] = [];
  let authorizeAnswer: (call: AuthorizeCall) => ReturnType<AuthorizeFallback> = () => ({ outcome: "allow" });
  const logLines: Record<string, unknown>[] = [];
  let observability: ReturnType<typeof createObservability>;
  const h: Record<string, { authorization: string }> = {};
  const ids: Record<string, number> = {};

  const loadDocument = (method: string) => (request: DocumentRequest) => {
    loaderCalls.push({ method, documentId: request.documentId });
    if (loaderFailure) throw loaderFailure;
    return documents.get(request.documentId);
  };
  const resources: ResourceLoaders = {
    "guardtest.v1.ConditionService/UpdateDocument": loadDocument("UpdateDocument"),
    "guardtest.v1.ConditionService/WatchDocument": loadDocument("WatchDocument"),
    "guardtest.v1.ConditionService/Brittle": loadDocument("Brittle"),
    "guardtest.v1.ConditionService/ShadowedOwner": loadDocument("ShadowedOwner"),
  };

  before(async () => {
    observability = createObservability({
      defaultMetrics: false,
      destination: new Writable({
        write(chunk: Buffer, _encoding, done) {
          for (const line of chunk.toString().split("\n").filter(Boolean)) logLines.push(JSON.parse(line));
          done();
        },
      }),
    });
    t = await createTestAuth({
      routes: conditionRoutes,
      resources,
      authorize: (call) => {
        authorizeCalls.push(call);
        return authorizeAnswer(call);
      },
      onDecision: (event) => {
        events.push(event);
        observability.onDecision(event);
      },
    });
    client = createClient(ConditionService, t.transport);
    shadowed = createClient(ShadowedService, t.transport);
    const users = {
      owner: await t.createUser({ username: "owner", permissions: ["docs.change_document"] }),
      other: await t.createUser({ username: "other", permissions: ["docs.change_document", "docs.view_document"] }),
      staff: await t.createUser({ username: "staff", isStaff: true, permissions: ["docs.change_document"] }),
      noperm: await t.createUser({ username: "noperm" }),
      blocked: await t.createUser({ username: "blocked", groups: ["blocked"] }),
    };
    for (const [name, user] of Object.entries(users)) {
      h[name] = await t.authHeaders(user);
      ids[name] = user.id;
    }
    documents.set(1, { owner_id: ids.owner!, title: "owned by owner" });
    documents.set(2, { title: "no owner field" });
  });
  after(async () => t?.close());

  const eventsSince = (mark: number) => events.slice(mark);

  it("owner allowed, other user refused CONDITION_FAILED with the rule's message, staff allowed", async () => {
    assert.equal((await client.updateDocument({ documentId: 1, text: "x" }, { headers: h.owner })).username, "owner");
    const err = await refusal(
      client.updateDocument({ documentId: 1 }, { headers: h.other }),
      Code.PermissionDenied,
      "CONDITION_FAILED",
    );
    assert.equal(err.rawMessage, "only the document's owner or staff may change it");
    assert.equal((await client.updateDocument({ documentId: 1 }, { headers: h.staff })).username, "staff");
  });

  it("cheap refusals come first: no loader call without a token, with a bad token, or without the permission", async () => {
    const before = loaderCalls.length;
    await refusal(client.updateDocument({ documentId: 1 }), Code.Unauthenticated, "TOKEN_MISSING");
    await refusal(
      client.updateDocument({ documentId: 1 }, { headers: { authorization: "Bearer YQ.Yg.Yw" } }),
      Code.Unauthenticated,
      "TOKEN_INVALID",
    );
    await refusal(
      client.updateDocument({ documentId: 1 }, { headers: h.noperm }),
      Code.PermissionDenied,
      "PERMISSION_MISSING",
    );
    assert.equal(loaderCalls.length, before, "the loader ran for a call refused before its body");
    await client.updateDocument({ documentId: 1 }, { headers: h.owner });
    assert.equal(loaderCalls.length, before + 1, "the loader runs once for an admitted call");
  });

  it("a missing resource is refused like somebody else's; a throwing loader fails closed UNAVAILABLE", async () => {
    const missing = await refusal(
      client.updateDocument({ documentId: 404 }, { headers: h.staff }),
      Code.PermissionDenied,
      "CONDITION_FAILED",
    );
    assert.equal(missing.rawMessage, "only the document's owner or staff may change it");
    loaderFailure = new Error("database is down");
    try {
      const err = await refusal(
        client.updateDocument({ documentId: 1 }, { headers: h.owner }),
        Code.Unavailable,
        "RESOURCE_UNAVAILABLE",
      );
      assert.doesNotMatch(err.message, /database is down/, "the loader's error stays in the logs");
    } finally {
      loaderFailure = undefined;
    }
  });

  it("a condition that cannot be evaluated is refused CONDITION_ERROR, never allowed", async () => {
    await refusal(client.brittle({ documentId: 2 }, { headers: h.owner }), Code.PermissionDenied, "CONDITION_ERROR");
    assert.equal((await client.brittle({ documentId: 1 }, { headers: h.owner })).username, "owner");
  });

  it("a condition over the request alone, with the generic message", async () => {
    assert.equal((await client.taggedOnly({ tags: ["public"], text: "short" }, { headers: h.noperm })).text, "short");
    const err = await refusal(
      client.taggedOnly({ tags: ["private"], text: "short" }, { headers: h.noperm }),
      Code.PermissionDenied,
      "CONDITION_FAILED",
    );
    assert.equal(err.rawMessage, "the request does not meet the rule's condition");
    await refusal(
      client.taggedOnly({ tags: ["public"], text: "much too long" }, { headers: h.noperm }),
      Code.PermissionDenied,
      "CONDITION_FAILED",
    );
    // A condition implies authenticated.
    await refusal(client.taggedOnly({ tags: ["public"] }), Code.Unauthenticated, "TOKEN_MISSING");
  });

  it("server streaming: the request is read, the condition decided, and the stream served", async () => {
    const texts: string[] = [];
    for await (const r of client.watchDocument({ documentId: 1, text: "s" }, { headers: h.owner })) texts.push(r.text);
    assert.deepEqual(texts, ["s", "s"]);
    await refusal(
      (async () => {
        for await (const _ of client.watchDocument({ documentId: 1 }, { headers: h.other })) {
          assert.fail("a refused stream sent a message");
        }
      })(),
      Code.PermissionDenied,
      "CONDITION_FAILED",
    );
  });

  it("a public method's condition sees null for an anonymous caller", async () => {
    assert.equal((await client.publicUnlessBlocked({ text: "a" })).username, "");
    assert.equal((await client.publicUnlessBlocked({ text: "a" }, { headers: h.owner })).username, "owner");
    await refusal(
      client.publicUnlessBlocked({ text: "a" }, { headers: h.blocked }),
      Code.PermissionDenied,
      "CONDITION_FAILED",
    );
  });

  it("authorize: called after rule and condition with request, resource and principal; deny and throw refuse", async () => {
    authorizeCalls.length = 0;
    await client.updateDocument({ documentId: 1, text: "ok" }, { headers: h.owner });
    assert.equal(authorizeCalls.length, 1);
    const [call] = authorizeCalls;
    assert.equal(call!.method.name, "UpdateDocument");
    assert.equal(call!.principal?.username, "owner");
    assert.equal((call!.request as DocumentRequest).text, "ok");
    assert.deepEqual(call!.resource, documents.get(1));
    // Not called when the condition already refused.
    await refusal(
      client.updateDocument({ documentId: 1 }, { headers: h.other }),
      Code.PermissionDenied,
      "CONDITION_FAILED",
    );
    assert.equal(authorizeCalls.length, 1);
    try {
      authorizeAnswer = (c) =>
        (c.request as DocumentRequest).text === "frozen"
          ? { outcome: "deny", message: "documents are frozen today" }
          : { outcome: "allow" };
      const denied = await refusal(
        client.updateDocument({ documentId: 1, text: "frozen" }, { headers: h.owner }),
        Code.PermissionDenied,
        "AUTHORIZE_DENIED",
      );
      assert.equal(denied.rawMessage, "documents are frozen today");
      assert.equal((await client.updateDocument({ documentId: 1, text: "fine" }, { headers: h.owner })).text, "fine");
      authorizeAnswer = () => {
        throw new Error("policy engine down");
      };
      await refusal(
        client.taggedOnly({ tags: ["public"] }, { headers: h.owner }),
        Code.Unavailable,
        "AUTHORIZE_UNAVAILABLE",
      );
      authorizeAnswer = async () => Promise.reject(new Error("async failure"));
      await refusal(client.publicUnlessBlocked({}), Code.Unavailable, "AUTHORIZE_UNAVAILABLE");
      authorizeAnswer = () => ({ outcome: "yes" }) as unknown as ReturnType<AuthorizeFallback>;
      await refusal(client.publicUnlessBlocked({}), Code.Unavailable, "AUTHORIZE_UNAVAILABLE");
      authorizeAnswer = () => undefined as unknown as ReturnType<AuthorizeFallback>;
      await refusal(client.publicUnlessBlocked({}), Code.Unavailable, "AUTHORIZE_UNAVAILABLE");
    } finally {
      authorizeAnswer = () => ({ outcome: "allow" });
    }
  });

  it("each call is reported once, by the body stage when there is one", async () => {
    const mark = events.length;
    await client.updateDocument({ documentId: 1 }, { headers: h.owner });
    await refusal(
      client.updateDocument({ documentId: 1 }, { headers: h.other }),
      Code.PermissionDenied,
      "CONDITION_FAILED",
    );
    await refusal(client.updateDocument({ documentId: 1 }), Code.Unauthenticated, "TOKEN_MISSING");
    const seen = eventsSince(mark).map((e) => [
      e.stage,
      e.verdict.outcome,
      e.verdict.outcome === "allow" ? "" : e.verdict.reason,
    ]);
    assert.deepEqual(seen, [
      ["body", "allow", ""],
      ["body", "deny", "CONDITION_FAILED"],
      ["gate", "deny", "TOKEN_MISSING"],
    ]);
  });

  it("a loader only the shadow rule needs: its failures are would_deny, never the call's", async () => {
    const mark = events.length;
    assert.equal((await client.shadowedOwner({ documentId: 1 }, { headers: h.owner })).username, "owner");
    assert.equal((await client.shadowedOwner({ documentId: 1 }, { headers: h.other })).username, "other");
    assert.equal((await client.shadowedOwner({ documentId: 404 }, { headers: h.owner })).username, "owner");
    // Even with an authorize fallback (this fixture's), a throwing loader that only the
    // shadow rule reads never fails the call (issue 19 item 9): the fallback is told, and
    // the shadow rule reports RESOURCE_UNAVAILABLE.
    loaderFailure = new Error("database is down");
    try {
      const calls = authorizeCalls.length;
      assert.equal((await client.shadowedOwner({ documentId: 1 }, { headers: h.owner })).username, "owner");
      const told = authorizeCalls.slice(calls).at(-1);
      assert.equal(told?.resource, undefined);
      assert.equal(told?.resourceError, loaderFailure);
      // Without a fallback, only the shadow rule needs the loader: the call goes on.
      const seen: DecisionEvent[] = [];
      const watched = await createTestAuth({
        routes: conditionRoutes,
        resources,
        database: t.database,
        onDecision: (e) => seen.push(e),
      });
      try {
        const owner = await watched.authHeaders(ids.owner!);
        const answer = await createClient(ConditionService, watched.transport).shadowedOwner(
          { documentId: 1 },
          { headers: owner },
        );
        assert.equal(answer.username, "owner");
        assert.deepEqual(
          seen.map((e) => [
            e.verdict.outcome,
            e.shadow?.outcome === "would_deny" ? e.shadow.reason : e.shadow?.outcome,
          ]),
          [["allow", "RESOURCE_UNAVAILABLE"]],
        );
      } finally {
        await watched.close();
      }
    } finally {
      loaderFailure = undefined;
    }
    assert.deepEqual(
      eventsSince(mark).map((e) => [
        e.verdict.outcome,
        e.shadow?.outcome,
        e.shadow?.outcome === "would_deny" ? e.shadow.reason : "",
      ]),
      [
        ["allow", "allow", ""],
        ["allow", "would_deny", "CONDITION_FAILED"],
        ["allow", "would_deny", "CONDITION_FAILED"],
        ["allow", "would_deny", "RESOURCE_UNAVAILABLE"],
      ],
    );
  });

  it("shadow rules: would_deny is reported, logged and metered, and never changes the outcome", async () => {
    const mark = events.length;
    const linesBefore = logLines.length;
    // Enforced: authenticated. Shadow: document_id == principal.id || staff.
    assert.equal((await client.shadowedRead({ documentId: ids.other! }, { headers: h.other })).username, "other");
    assert.equal((await client.shadowedRead({ documentId: 999_999 }, { headers: h.other })).username, "other");
    assert.equal((await client.shadowedRead({ documentId: 999_999 }, { headers: h.staff })).username, "staff");
    // Enforced: public. Shadow: a permission.
    assert.equal((await client.shadowedPublic({})).username, "");
    assert.equal((await client.shadowedPublic({}, { headers: h.owner })).username, "owner");
    assert.equal((await client.shadowedPublic({}, { headers: h.other })).username, "other");
    // A service-wide shadow rule: staff.
    assert.equal((await shadowed.plain({}, { headers: h.owner })).username, "owner");
    // Refused by the rule in force: no shadow opinion.
    await refusal(client.shadowedRead({}), Code.Unauthenticated, "TOKEN_MISSING");

    const shadows = eventsSince(mark).map((e) => [
      e.method.name,
      e.verdict.outcome,
      e.shadow?.outcome ?? "-",
      e.shadow?.outcome === "would_deny" ? e.shadow.reason : "",
      e.shadow?.source ?? "",
    ]);
    assert.deepEqual(shadows, [
      ["ShadowedRead", "allow", "allow", "", "method"],
      ["ShadowedRead", "allow", "would_deny", "CONDITION_FAILED", "method"],
      ["ShadowedRead", "allow", "allow", "", "method"],
      ["ShadowedPublic", "allow", "would_deny", "TOKEN_MISSING", "method"],
      ["ShadowedPublic", "allow", "would_deny", "PERMISSION_MISSING", "method"],
      ["ShadowedPublic", "allow", "allow", "", "method"],
      ["Plain", "allow", "would_deny", "STAFF_REQUIRED", "service"],
      ["ShadowedRead", "deny", "-", "", ""],
    ]);

    const lines = logLines.slice(linesBefore).filter((l) => l["shadow"] === "would_deny");
    assert.deepEqual(
      lines.map((l) => [l["method"], l["outcome"], l["shadowReason"]]),
      [
        ["/guardtest.v1.ConditionService/ShadowedRead", "allow", "CONDITION_FAILED"],
        ["/guardtest.v1.ConditionService/ShadowedPublic", "allow", "TOKEN_MISSING"],
        ["/guardtest.v1.ConditionService/ShadowedPublic", "allow", "PERMISSION_MISSING"],
        ["/guardtest.v1.ShadowedService/Plain", "allow", "STAFF_REQUIRED"],
      ],
    );
    const metrics = await observability.registry.metrics();
    const sample = (method: string, reason: string) =>
      new RegExp(
        `^protoguard_auth_shadow_would_deny_total\\{method="/guardtest.v1.${method}",reason="${reason}"\\} 1$`,
        "m",
      );
    assert.match(metrics, sample("ConditionService/ShadowedRead", "CONDITION_FAILED"));
    assert.match(metrics, sample("ConditionService/ShadowedPublic", "TOKEN_MISSING"));
    assert.match(metrics, sample("ConditionService/ShadowedPublic", "PERMISSION_MISSING"));
    assert.match(metrics, sample("ShadowedService/Plain", "STAFF_REQUIRED"));
  });
});

describe("conditions are checked at start-up", { timeout: 60_000 }, () => {
  let parts: Awaited<ReturnType<typeof startupParts>>;
  before(async () => {
    parts = await startupParts();
  });
  after(async () => parts?.close());

  const startupError = (options: Partial<Parameters<typeof createAuth>[0]>): PolicyError => {
    try {
      createAuth({ verifier: parts.verifier, principals: parts.principals, ...options });
    } catch (error) {
      assert.ok(error instanceof PolicyError, `expected a PolicyError, got ${String(error)}`);
      return error;
    }
    assert.fail("createAuth accepted the rules");
  };

  it("a syntax error names the method and the expression", () => {
    const error = startupError({ services: [BadSyntaxService] });
    assert.match(
      error.message,
      /method guardtest\.v1\.BadSyntaxService\/Broken: condition "request\.document_id == " does not parse/,
    );
  });

  it("an unknown field of the request message names method, expression and the fields there are", () => {
    const error = startupError({ services: [BadFieldService] });
    assert.match(
      error.message,
      /method guardtest\.v1\.BadFieldService\/UnknownField: condition "request\.documentid == 1" is not valid: .*message guardtest\.v1\.DocumentRequest has no field 'documentid' \(fields: document_id, text, tags\)/,
    );
  });

  it("type errors: mismatched operands and a non-bool condition", () => {
    const error = startupError({ services: [BadTypeService] });
    assert.equal(error.problems.length, 2, error.message);
    assert.match(
      error.problems[0]!,
      /BadTypeService\/WrongType: condition "request\.text == principal\.id" is not valid: .*\(string, int\)/,
    );
    assert.match(
      error.problems[1]!,
      /BadTypeService\/NotBool: condition "request\.document_id \+ 1" is not valid: the condition must be a bool, this one is int/,
    );
  });

  it("a condition on a client-streaming method, and a bad shadow rule, stop start-up", () => {
    assert.match(
      startupError({ services: [BadStreamService] }).message,
      /BadStreamService\/Upload: condition "principal\.is_staff": conditions are supported on unary and server-streaming methods only/,
    );
    assert.match(
      startupError({ services: [BadShadowService] }).message,
      /method guardtest\.v1\.BadShadowService\/Shadowed \(shadow rule\): condition "principal\.is_stafff" is not valid: .*principal has no field 'is_stafff'/,
    );
  });

  it("a condition reading resource needs a loader; a loader needs a served method", () => {
    const error = startupError({ services: [ConditionService] });
    assert.match(
      error.message,
      /method guardtest\.v1\.ConditionService\/UpdateDocument: condition "resource\.owner_id == principal\.id \|\| principal\.is_staff" reads resource, but no resource loader is registered/,
    );
    const loaders = {
      "guardtest.v1.ConditionService/UpdateDocument": () => undefined,
      "guardtest.v1.ConditionService/WatchDocument": () => undefined,
      "guardtest.v1.ConditionService/Brittle": () => undefined,
      "guardtest.v1.ConditionService/ShadowedOwner": () => undefined,
    };
    // The same loaders are accepted, keyed by string or by descriptor.
    createAuth({
      verifier: parts.verifier,
      principals: parts.principals,
      services: [ConditionService],
      resources: loaders,
    });
    createAuth({
      verifier: parts.verifier,
      principals: parts.principals,
      services: [ConditionService],
      resources: new Map<DescMethod | string, ResourceLoader>([
        [ConditionService.method.updateDocument, () => undefined],
        [ConditionService.method.watchDocument, () => undefined],
        [ConditionService.method.brittle, () => undefined],
        [ConditionService.method.shadowedOwner, () => undefined],
      ]),
    });
    const unknown = startupError({
      services: [ConditionService],
      resources: { ...loaders, "guardtest.v1.ConditionService/Missing": () => undefined },
    });
    assert.match(
      unknown.message,
      /resource loader for guardtest\.v1\.ConditionService\/Missing: no such method is served/,
    );
    assert.match(
      startupError({ resources: { "not a key": () => undefined } }).message,
      /"not a key" is not of the form package\.Service\/Method/,
    );
  });

  it("a loader on a client-streaming method, and a condition_message without a condition, stop start-up", () => {
    assert.match(
      startupError({
        services: [GuardedService],
        resources: { "guardtest.v1.GuardedService/StaffClientStream": () => ({}) },
      }).message,
      /GuardedService\/StaffClientStream: resource loaders need the request message; a client_streaming call has a stream/,
    );
    assert.match(
      startupError({ defaultRule: { authenticated: true, conditionMessage: "no" }, services: [PlainDocumentService] })
        .message,
      /condition_message is set but condition is not/,
    );
  });

  it("startServer refuses to start, before opening a port, on a bad condition or a missing loader", async () => {
    const runtime = { database: parts.database, keyring: parts.keyring, verifier: parts.verifier };
    const answer = () => ({});
    await assert.rejects(
      startServer({
        runtime,
        routes: (router) => router.service(BadFieldService, { unknownField: answer }),
        port: 0,
        logger: silent(),
      }),
      (error: unknown) =>
        error instanceof PolicyError &&
        /BadFieldService\/UnknownField: condition "request\.documentid == 1"/.test(error.message),
    );
    await assert.rejects(
      startServer({
        runtime,
        routes: conditionRoutes,
        resources: { "guardtest.v1.ConditionService/UpdateDocument": () => undefined },
        port: 0,
        logger: silent(),
      }),
      (error: unknown) =>
        error instanceof PolicyError &&
        /ConditionService\/WatchDocument: condition "request\.document_id > 0 && resource\.owner_id == principal\.id" reads resource, but no resource loader/.test(
          error.message,
        ),
    );
  });
});

/** A logger that writes nothing. */
function silent() {
  return pino({ level: "silent" });
}

/** A verifier and a principal source over a fresh database, for createAuth calls that must fail. */
async function startupParts() {
  const database = await createTestDatabase();
  const keyring = await createKeyring([{ alg: "HS256", secret: "x".repeat(32) }]);
  const principals = await createPrincipalSource({ database });
  return {
    database,
    keyring,
    verifier: createTokenVerifier({ keyring }),
    principals,
    async close() {
      await principals.close();
      await database.close();
    },
  };
}
