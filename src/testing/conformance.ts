import { randomBytes } from "node:crypto";
import type { DescMethod, DescService, MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ConnectRouter } from "@connectrpc/connect";
import { eq } from "drizzle-orm";
import type { DecisionEvent } from "../decide/event.js";
import { authErrorReason } from "../connect/errors.js";
import type { RuleInit } from "../policy/rule.js";
import type { Database } from "../store/database-handle.js";
import { users } from "../store/schema.js";
import type { PublicUser } from "../store/users.js";
import { createTestAuth, type TestAuth, type TestAuthOptions } from "./auth.js";

// The table's types live where the generated `*_protoguard.ts` can import them without the
// test kit's database drivers: `protoguard` exports them.
import type {
  ConformanceCase,
  ConformanceCaller,
  ConformanceExpectation,
  ConformanceMethod,
  ConformanceTable,
} from "../policy/conformance-table.js";

/** What a request factory of {@link ConformanceOptions.requests} is given. */
export interface ConformanceRequestContext {
  /** The user of the case; undefined for the anonymous case. */
  readonly user: PublicUser | undefined;
  /** The fixture's database, to create the rows the request refers to (an order the user owns). */
  readonly database: Database;
  /** The case being run. */
  readonly case: ConformanceCase;
}

/** The request a conformance case sends to method `M`: its input message, as a plain object. */
export type ConformanceRequest<M extends DescMethod> = MessageInitShape<M["input"]>;

/** Options of {@link runConformance} and {@link checkConformance}. */
export interface ConformanceOptions<S extends DescService = DescService> {
  /** Registers the real implementation, as for `createTestAuth`. Required. */
  routes: (router: ConnectRouter) => void;
  /**
   * The request each method is called with (client-streaming and bidi
   * methods are sent it once), or a function building it per case. Default:
   * the empty message.
   */
  requests?: {
    [K in keyof S["method"]]?:
      | ConformanceRequest<S["method"][K]>
      | ((
          context: ConformanceRequestContext,
        ) => ConformanceRequest<S["method"][K]> | Promise<ConformanceRequest<S["method"][K]>>);
  };
  /**
   * For methods with a condition: what it evaluates to for the request of
   * {@link requests} and a user the rule admits. `true` expects the call
   * admitted, `false` refused with PERMISSION_DENIED `CONDITION_FAILED`.
   * Default: not asserted (a `CONDITION_FAILED` refusal is accepted).
   */
  conditions?: { [K in keyof S["method"]]?: boolean };
  /** The server default for methods without a rule, as in `createTestAuth`. Default: `{ authenticated: true }`. */
  defaultRule?: RuleInit;
  /** The store, as in `createTestAuth`. Default: a fresh in-memory PGlite, closed at the end. */
  database?: Database;
  /**
   * Further `createTestAuth` options for the fixture the table runs on: what
   * the application passes `createAuth` besides its routes (the resource
   * loaders its rule conditions read, for instance). Default: none.
   */
  testAuth?: Omit<TestAuthOptions, "routes" | "database" | "defaultRule" | "onDecision">;
}

/** The outcome of one case. */
export interface ConformanceResult {
  /** `Service.Method [case]`. */
  readonly name: string;
  readonly ok: boolean;
  /** What was expected and what happened, in one sentence. */
  readonly message: string;
}

/**
 * The subset of `node:test`'s `TestContext` (or `describe`'s suite context)
 * that {@link runConformance} uses: one subtest per case.
 */
export interface ConformanceTestContext {
  test(name: string, fn: () => void | Promise<void>): Promise<unknown> | unknown;
}

const CODES = {
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  resource_exhausted: Code.ResourceExhausted,
} as const;

/**
 * Runs a generated conformance table against the real implementation on
 * the in-memory transport (see `createTestAuth`), one `node:test` subtest
 * per case; a case that does not get the outcome its rule demands fails
 * with a message saying what it expected and what happened.
 *
 * @example
 * ```ts
 * import { OrderServiceConformance } from "../gen/example/v1/order_protoguard.js";
 * test("OrderService conforms to its rules", (t) =>
 *   runConformance(t, OrderServiceConformance, { routes: exampleRoutes({ database }), database }));
 * ```
 */
export async function runConformance<S extends DescService>(
  t: ConformanceTestContext,
  table: ConformanceTable<S>,
  options: ConformanceOptions<S>,
): Promise<void> {
  await forEachCase(table, options, async (name, run) => {
    await t.test(name, async () => {
      const result = await run();
      if (!result.ok) throw new Error(result.message);
    });
  });
}

/**
 * Runs every case of `table` and returns each outcome, without asserting:
 * for custom reporting, and for proving that a table catches a wrong rule.
 */
export async function checkConformance<S extends DescService>(
  table: ConformanceTable<S>,
  options: ConformanceOptions<S>,
): Promise<ConformanceResult[]> {
  const results: ConformanceResult[] = [];
  await forEachCase(table, options, async (_name, run) => {
    results.push(await run());
  });
  return results;
}

type CaseVisitor = (name: string, run: () => Promise<ConformanceResult>) => Promise<void>;

async function forEachCase<S extends DescService>(
  table: ConformanceTable<S>,
  options: ConformanceOptions<S>,
  visit: CaseVisitor,
): Promise<void> {
  const decisions: DecisionEvent[] = [];
  const t = await createTestAuth({
    ...options.testAuth,
    routes: options.routes,
    database: options.database,
    defaultRule: options.defaultRule,
    onDecision: (event) => decisions.push(event),
  });
  try {
    const client = createClient(table.service, t.transport) as unknown as Record<string, AnyCall>;
    // Unique per run, so runs can share a database.
    const run = randomBytes(4).toString("hex");
    let serial = 0;
    for (const entry of table.methods) {
      const method = table.service.methods.find((m) => m.localName === entry.method);
      for (const testCase of entry.cases) {
        const name = `${table.service.name}.${method?.name ?? entry.method} [${testCase.name}]`;
        await visit(name, async () => {
          if (method === undefined) {
            return fail(name, `the table names method ${entry.method}, which ${table.service.typeName} does not have`);
          }
          const user = await createCaller(t, testCase.caller, `conformance_${run}_${++serial}`);
          const request = await requestFor(options, method, { user, database: t.database, case: testCase });
          const headers = user && (await t.authHeaders(user));
          for (let i = 0; i < (testCase.precedingCalls ?? 0); i++) {
            const earlier = await call(client[method.localName]!, method, request, headers);
            if (earlier?.code === Code.ResourceExhausted) {
              return fail(
                name,
                `call ${i + 1} of ${testCase.precedingCalls} before it was already ${describeError(earlier)}`,
              );
            }
          }
          decisions.length = 0;
          const error = await call(client[method.localName]!, method, request, headers);
          const condition = (options.conditions as Record<string, boolean | undefined> | undefined)?.[method.localName];
          return judge(name, entry, testCase.expect, condition, observe(error, decisions));
        });
      }
    }
  } finally {
    await t.close();
  }
}

/** What happened to one call, from the client's error and the auth layer's decisions. */
interface Observed {
  /** The auth layer refused it in its rule check (a deny decision). */
  readonly ruleDenied?: { code: Code; reason: string };
  /** The client's error, if any, with its protoguard reason. */
  readonly error?: { code: Code; reason: string | undefined; message: string };
}

/**
 * Refusals that depend on the request rather than on who calls: a false
 * condition (or a resource the loader did not find). The auth layer
 * reports them as decisions too, but they are judged against
 * {@link ConformanceOptions.conditions}, not against the rule's cases.
 */
const CONDITION_REASONS: ReadonlySet<string> = new Set(["CONDITION_FAILED"]);

function observe(error: ConnectError | undefined, decisions: readonly DecisionEvent[]): Observed {
  const denial = decisions.find(
    (d) => d.verdict.outcome !== "allow" && !CONDITION_REASONS.has(d.verdict.reason),
  )?.verdict;
  return {
    ruleDenied: denial && denial.outcome !== "allow" ? { code: denial.code, reason: denial.reason } : undefined,
    error: error && { code: error.code, reason: authErrorReason(error), message: error.rawMessage },
  };
}

function judge(
  name: string,
  entry: ConformanceMethod,
  expect: ConformanceExpectation,
  conditionHolds: boolean | undefined,
  seen: Observed,
): ConformanceResult {
  const happened = describeObserved(seen);
  if (expect.outcome === "deny" && expect.code === "resource_exhausted") {
    // Refused after the decision (the rule admits the caller): seen by the client only.
    const wanted = `${Code[Code.ResourceExhausted]} (${expect.reason})`;
    if (seen.error?.code === Code.ResourceExhausted && seen.error.reason === expect.reason) {
      return pass(name, `refused ${wanted} past the budget, as the rate limit demands`);
    }
    // A condition that refuses this request spends no budget: nothing to assert unless told it holds.
    if (entry.condition !== undefined && conditionHolds !== true && seen.error?.reason === "CONDITION_FAILED") {
      return pass(name, "refused by its condition for this request, so no budget was spent (not asserted)");
    }
    return fail(name, `rule "${entry.rule}" demands ${wanted} past the budget, but the call ${happened}`);
  }
  if (expect.outcome === "deny") {
    const wanted = `${Code[CODES[expect.code]]} (${expect.reason})`;
    if (seen.ruleDenied?.code === CODES[expect.code] && seen.ruleDenied.reason === expect.reason) {
      return pass(name, `refused ${wanted} as the rule demands`);
    }
    return fail(name, `rule "${entry.rule}" demands ${wanted}, but the call ${happened}`);
  }
  if (seen.ruleDenied !== undefined)
    return fail(name, `rule "${entry.rule}" admits this caller, but the call ${happened}`);
  const refusal = isRefusal(seen.error) ? seen.error : undefined;
  if (entry.condition !== undefined && conditionHolds === false) {
    if (refusal?.code === Code.PermissionDenied && refusal.reason === "CONDITION_FAILED") {
      return pass(name, "refused by the condition, as expected");
    }
    return fail(name, `condition "${entry.condition}" should refuse (CONDITION_FAILED), but the call ${happened}`);
  }
  if (refusal === undefined) return pass(name, `admitted; the call ${happened}`);
  if (entry.condition !== undefined && conditionHolds === undefined && refusal.reason === "CONDITION_FAILED") {
    return pass(name, "admitted by the rule; refused by its condition for this request (not asserted)");
  }
  return fail(name, `rule "${entry.rule}" admits this caller, but the call ${happened}`);
}

/**
 * A refusal a client can see: UNAUTHENTICATED or PERMISSION_DENIED, from a
 * condition, the fallback or the handler itself (with or without a reason).
 */
function isRefusal(error: Observed["error"]): error is NonNullable<Observed["error"]> {
  return error !== undefined && (error.code === Code.Unauthenticated || error.code === Code.PermissionDenied);
}

function describeObserved(seen: Observed): string {
  if (seen.ruleDenied !== undefined) {
    return `was refused by the auth layer with ${Code[seen.ruleDenied.code]} (${seen.ruleDenied.reason})`;
  }
  if (seen.error === undefined) return "was admitted and succeeded";
  const reason = seen.error.reason === undefined ? "" : ` (${seen.error.reason})`;
  const by = isRefusal(seen.error) ? "refused after the rule check, by a condition or the handler" : "admitted";
  return `was ${by} and ended ${Code[seen.error.code]}${reason}: ${seen.error.message}`;
}

function describeError(error: ConnectError): string {
  const reason = authErrorReason(error);
  return `refused ${Code[error.code]}${reason === undefined ? "" : ` (${reason})`}`;
}

const pass = (name: string, message: string): ConformanceResult => ({ name, ok: true, message: `${name}: ${message}` });
const fail = (name: string, message: string): ConformanceResult => ({
  name,
  ok: false,
  message: `${name}: ${message}`,
});

async function createCaller(t: TestAuth, caller: ConformanceCaller, username: string): Promise<PublicUser | undefined> {
  if (caller.anonymous === true) return undefined;
  const user = await t.createUser({
    username,
    permissions: caller.permissions,
    isStaff: caller.staff,
    isSuperuser: caller.superuser,
  });
  if (caller.kind !== "user") await t.database.db.update(users).set({ kind: caller.kind }).where(eq(users.id, user.id));
  return user;
}

async function requestFor(
  options: ConformanceOptions<DescService>,
  method: DescMethod,
  context: ConformanceRequestContext,
): Promise<unknown> {
  const given = (options.requests as Record<string, unknown> | undefined)?.[method.localName];
  if (typeof given === "function") return await (given as (c: ConformanceRequestContext) => unknown)(context);
  return given ?? {};
}

type AnyCall = (input: unknown, options: { headers?: Record<string, string>; signal: AbortSignal }) => unknown;

/**
 * Makes the call and returns its error, if any. A stream is read up to its
 * first message: admitted is all a case needs to know, and a handler that
 * streams for minutes must not hold the run.
 */
async function call(
  fn: AnyCall,
  method: DescMethod,
  request: unknown,
  headers: Record<string, string> | undefined,
): Promise<ConnectError | undefined> {
  const controller = new AbortController();
  const streamingInput = method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";
  const input = streamingInput ? once(request) : request;
  try {
    const result = fn(input, { headers, signal: controller.signal });
    if (method.methodKind === "unary" || method.methodKind === "client_streaming") {
      await result;
    } else {
      for await (const _ of result as AsyncIterable<unknown>) break;
    }
    return undefined;
  } catch (error) {
    return ConnectError.from(error);
  } finally {
    controller.abort();
  }
}

async function* once(message: unknown): AsyncIterable<unknown> {
  yield message;
}
