import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type { HeaderReader } from "../credential/bearer.js";
import type { HandlerContext, Interceptor } from "@connectrpc/connect";
import { createDecider, type AccessTokenVerifier, type Decide, type PrincipalSource } from "../decide/decide.js";
import type { Verdict } from "../decide/verdict.js";
import { createAuthPolicy, type AuthPolicy } from "../policy/policy.js";
import type { RuleInit } from "../policy/rule.js";
import { principalKey, verdictKey } from "./context.js";
import { assertRequestGateSupported } from "./peer-version.js";
import { verdictToConnectError } from "./errors.js";

/** Where a decision was made. */
export type DecisionStage = "prefilter" | "gate" | "interceptor";

/** One authorization decision, for logs and metrics. Holds no secret. */
export interface DecisionEvent {
  readonly method: DescMethod;
  readonly verdict: Verdict;
  readonly stage: DecisionStage;
  /** Time spent deciding, in milliseconds. */
  readonly durationMs: number;
}

/** Options for {@link createAuth}. */
export interface AuthOptions {
  /** Verifies access tokens; see `createTokenVerifier`. Required. */
  verifier: AccessTokenVerifier;
  /** Loads users and their permissions; see `createPrincipalSource`. Required. */
  principals: PrincipalSource;
  /**
   * Services served by this router. Their rules are validated now, so a
   * malformed rule fails start-up with a message naming the method.
   * Default: none (methods are then planned on first call).
   */
  services?: readonly DescService[];
  /**
   * Rule for methods without a method or service rule.
   * Default: `{ authenticated: true }`, deny by default.
   */
  defaultRule?: RuleInit;
  /** A ready policy, instead of `services` and `defaultRule`. */
  policy?: AuthPolicy;
  /** Bound on one user lookup in milliseconds. Default: 5000. */
  lookupTimeoutMs?: number;
  /**
   * Called once per decision (logs, metrics). Must not throw; it runs on the
   * request path, so keep it cheap. Default: none.
   */
  onDecision?: (event: DecisionEvent) => void;
}

/** The auth layer for one Connect router. */
export interface Auth {
  /** The policy: the planned rule of every method. */
  readonly policy: AuthPolicy;
  /** The decision function shared by every adapter. */
  readonly decide: Decide;
  /**
   * {@link Auth.decide}, reported to `onDecision` as made at `stage`: what a
   * further adapter (the HTTP pre-filter) calls so every decision is
   * reported once, wherever it is made.
   */
  check(method: DescMethod, headers: HeaderReader, stage: DecisionStage, timeoutMs?: number): Verdict | Promise<Verdict>;
  /**
   * Router option `requestGate`: refuses before the request body is read or
   * decoded. Put it together with {@link Auth.interceptor}.
   */
  readonly requestGate: (context: HandlerContext) => Promise<void>;
  /**
   * Router interceptor: enforces the decision for every RPC kind, reusing
   * the gate's decision when there is one. On its own (without the gate) it
   * still enforces every rule, after the first request message is read for
   * unary calls.
   */
  readonly interceptor: Interceptor;
}

/**
 * Creates the auth layer: a request gate and an interceptor enforcing the
 * `protoguard.v1` rules of your services, with one decision function.
 *
 * @example
 * ```ts
 * const auth = createAuth({
 *   services: [ProductService, AccountService],
 *   verifier: createTokenVerifier({ keyring }),
 *   principals: createPrincipalSource({ database }),
 * });
 * http2.createServer(connectNodeAdapter({
 *   routes,
 *   interceptors: [auth.interceptor],
 *   requestGate: auth.requestGate,
 * }));
 * ```
 *
 * @throws {PolicyError} if a rule of `services` or the default is malformed.
 * @throws {Error} if the installed `@connectrpc/connect` is older than 2.2 (no `requestGate`).
 */
export function createAuth(options: AuthOptions): Auth {
  assertRequestGateSupported();
  const policy =
    options.policy ??
    createAuthPolicy({
      ...(options.defaultRule !== undefined && { defaultRule: options.defaultRule }),
      ...(options.services !== undefined && { services: options.services }),
    });
  if (options.policy && options.services) policy.planServices(options.services);
  const decide = createDecider({
    policy,
    verifier: options.verifier,
    principals: options.principals,
    ...(options.lookupTimeoutMs !== undefined && { lookupTimeoutMs: options.lookupTimeoutMs }),
  });
  const onDecision = options.onDecision;

  function decideAndReport(method: DescMethod, headers: HeaderReader, stage: DecisionStage, timeoutMs?: number) {
    if (onDecision === undefined) return decide(method, headers, timeoutMs);
    const started = performance.now();
    const report = (verdict: Verdict) => {
      onDecision({ method, verdict, stage, durationMs: performance.now() - started });
      return verdict;
    };
    const result = decide(method, headers, timeoutMs);
    return result instanceof Promise ? result.then(report) : report(result);
  }

  return {
    policy,
    decide,
    check: decideAndReport,
    async requestGate(context) {
      const verdict =
        context.values.get(verdictKey) ??
        (await decideAndReport(context.method, context.requestHeader, "gate", context.timeoutMs()));
      context.values.set(verdictKey, verdict);
      if (verdict.outcome !== "allow") throw verdictToConnectError(verdict);
      context.values.set(principalKey, verdict.principal);
    },
    interceptor: (next) => async (req) => {
      const verdict = req.contextValues.get(verdictKey) ?? (await decideAndReport(req.method, req.header, "interceptor"));
      if (verdict.outcome !== "allow") throw verdictToConnectError(verdict);
      req.contextValues.set(principalKey, verdict.principal);
      return next(req);
    },
  };
}
