import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type { HeaderReader } from "../credential/bearer.js";
import type { HandlerContext, Interceptor } from "@connectrpc/connect";
import {
  certificateCallIdentity,
  clientCertificateKey,
  type CertificatePrincipalSource,
} from "../credential/client-certificate.js";
import {
  createDecider,
  type CallOrigin,
  type AccessTokenVerifier,
  type Decide,
  type IdentityResolver,
  type PrincipalSource,
} from "../decide/decide.js";
import type { ApiKeyPrincipalSource } from "../credential/api-key.js";
import { withTrustedIssuers } from "../identity/external-verifier.js";
import type { TrustedIssuer, TrustedIssuerInit } from "../identity/trusted-issuers.js";
import type { Verdict } from "../decide/verdict.js";
import type { DecisionEvent, DecisionStage } from "../decide/event.js";
import { createAuthPolicy, type AuthPolicy } from "../policy/policy.js";
import type { RuleInit } from "../policy/rule.js";
import type { PrincipalLookup } from "../principal.js";
import { principalKey, verdictKey } from "./context.js";
import { originOf } from "./origin.js";
import { createGatewayReader, type GatewayOptions, type GatewayReader } from "../identity/gateway.js";
import { assertRequestGateSupported } from "./peer-version.js";
import { verdictToConnectError } from "./errors.js";
import { createCallWatch, type CallWatch, type RevalidationHooks, type StreamRevalidationOptions } from "./watch.js";
import { createAccessStage, type AccessStage } from "../decide/access.js";
import type { AuthorizeFallback, ResourceLoaders } from "../decide/app-callbacks.js";
import { admitBody } from "./body-stage.js";

/** Sweep period of stream re-checks when neither the option nor the principal source says. */
const DEFAULT_RECHECK_INTERVAL_MS = 30_000;

/** Options for {@link createAuth}. */
export interface AuthOptions {
  /** Verifies access tokens; see `createTokenVerifier`. Required. */
  verifier: AccessTokenVerifier;
  /**
   * Loads users and their permissions; see `createPrincipalSource`, which
   * also offers the invalidation hooks that open streams follow. Required.
   */
  principals: PrincipalSource & RevalidationHooks;
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
  defaultRule?: RuleInit | undefined;
  /** A ready policy, instead of `services` and `defaultRule`. */
  policy?: AuthPolicy;
  /** Bound on one user lookup in milliseconds. Default: 5000. */
  lookupTimeoutMs?: number | undefined;
  /**
   * Maps verified TLS client certificates (context value
   * `clientCertificateKey`, which `startServer` sets when client
   * certificates are configured) to service accounts: a call with such a
   * certificate and no bearer token is that service account. See
   * `createCertificatePrincipalSource`. Default: none, so certificates
   * identify nobody.
   */
  certificates?: CertificatePrincipalSource;
  /**
   * Resolves API keys (`authorization: Bearer pgk_<id>_<secret>`) to their
   * owners, limited to the keys' scopes: `createApiKeySource({ database,
   * onInvalidation })` from `protoguard/store`. Methods whose rule says
   * `api_keys: false` refuse keys whatever this is. Default: none, so a key
   * is refused as `TOKEN_INVALID`.
   */
  apiKeys?: ApiKeyPrincipalSource;
  /**
   * External identity providers whose access tokens are accepted too, routed by `iss` and
   * verified against their own JWKS (the same list `createTokenVerifier` takes; see
   * `parseTrustedIssuers`). Needs {@link AuthOptions.identities}. Default: none (or whatever
   * the verifier was built with).
   */
  trustedIssuers?: readonly TrustedIssuerInit[] | readonly TrustedIssuer[] | undefined;
  /**
   * Maps trusted issuers' subjects to local users and their token groups to permissions:
   * `createIdentityResolver({ database, invalidations: principals })` from `protoguard/store`.
   * Required when the verifier or {@link AuthOptions.trustedIssuers} trusts any issuer.
   */
  identities?: IdentityResolver;
  /**
   * Gateway mode, off by default: behind a gateway that verified the token already (Envoy
   * `jwt_authn` with `forward_payload_header`), take its claims from a header, but only when
   * the call's socket peer (`socketAddressKey`, set by `peerContextValues`) is a trusted
   * gateway; that header from any other peer is refused with `GATEWAY_UNTRUSTED`. The claims
   * then go where a bearer token's go. A trusted gateway's header wins over a bearer token.
   * Options (see `GatewayOptions`) or a reader from `createGatewayReader`. Default: off.
   */
  gateway?: GatewayOptions | GatewayReader | undefined;
  /**
   * Called once per decision (logs, metrics). Must not throw; it runs on the
   * request path, so keep it cheap. A call with a body stage ahead (see
   * {@link DecisionStage} `body`) is reported once, by that stage, unless an
   * earlier stage refuses it. Default: none.
   */
  onDecision?: (event: DecisionEvent) => void;
  /**
   * Keep open server-, client- and bidi-streaming calls under the auth
   * state. An admitted call with an identified caller is decided again, with
   * the same decision function (reported to `onDecision` at stage
   * `recheck`), when its token reaches `exp` plus the verifier's leeway, when
   * the database announces a change to its user, its token or everyone
   * (logout, revocation, deactivation, deletion, lost permission, on this or
   * another instance), and at least every `intervalMs`. A call no longer
   * allowed ends with the refusal a new call would get (UNAUTHENTICATED
   * `TOKEN_EXPIRED`, `TOKEN_REVOKED`, `USER_INACTIVE`; PERMISSION_DENIED;
   * UNAVAILABLE when the database cannot answer), within about a second of
   * the event; `authSignal(ctx)` and the call's `ctx.signal` abort with that
   * error first, and the call ends even if the handler ignores them. Cost:
   * no polling; one timer per call, one shared invalidation listener and
   * sweep, and one user lookup per affected token per event or sweep (at
   * most 4 at once). Unary calls are decided once: they are short.
   *
   * `false` turns it off; an object tunes it. Default: `true`.
   */
  revalidateStreams?: boolean | StreamRevalidationOptions;
  /**
   * Loaders of what rule conditions call `resource`, by method
   * (`"package.Service/Method"` or descriptor): called once the request is
   * decoded and the cheap checks passed, with the request and the caller.
   * A condition reading `resource` on a method without a loader, or a
   * loader for a method of none of `services`, fails start-up. Default: none.
   */
  resources?: ResourceLoaders;
  /**
   * Code for what a condition cannot say: called for every call the rule
   * and its condition admitted, on every method of this router (public ones
   * and AuthService's Login included: look at `call.method`), it allows or
   * denies with a message; throwing fails the call UNAVAILABLE, never allows
   * it. Default: none.
   */
  authorize?: AuthorizeFallback;
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
  check(
    method: DescMethod,
    headers: HeaderReader,
    stage: DecisionStage,
    timeoutMs?: number,
    origin?: CallOrigin,
  ): Verdict | Promise<Verdict>;
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
  /** Streaming calls being re-checked now (see `revalidateStreams`); 0 when that is off. */
  readonly watchedStreams: number;
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
  const verifier = options.trustedIssuers?.length
    ? withTrustedIssuers(options.verifier, options.trustedIssuers)
    : options.verifier;
  if (verifier.trustedIssuers?.length && options.identities === undefined) {
    throw new TypeError("createAuth: trusted issuers need an `identities` resolver (createIdentityResolver)");
  }
  const gateway =
    options.gateway === undefined || "read" in options.gateway
      ? options.gateway
      : createGatewayReader({
          ...options.gateway,
          // The issuers the verifier trusts are mapped the same way when their claims come by gateway.
          trustedIssuers: options.gateway.trustedIssuers ?? options.trustedIssuers ?? [],
        });
  if (gateway?.trustedIssuers.length && options.identities === undefined) {
    throw new TypeError("createAuth: gateway claims of trusted issuers need an `identities` resolver");
  }
  options = { ...options, verifier, ...(gateway !== undefined && { gateway }) };
  const decide = createDecider({
    policy,
    verifier,
    principals: options.principals,
    ...(options.identities !== undefined && { identities: options.identities }),
    ...(gateway !== undefined && { gateway }),
    ...(options.lookupTimeoutMs !== undefined && { lookupTimeoutMs: options.lookupTimeoutMs }),
    ...(options.certificates !== undefined && { certificates: options.certificates }),
    ...(options.apiKeys !== undefined && { apiKeys: options.apiKeys }),
  });
  const onDecision = options.onDecision;
  const watch = createWatch(options, policy, decide);
  const access: AccessStage = createAccessStage({
    policy,
    ...(options.resources !== undefined && { resources: options.resources }),
    ...(options.authorize !== undefined && { authorize: options.authorize }),
  });
  if (options.services) access.validate(options.services);

  function decideAndReport(
    method: DescMethod,
    headers: HeaderReader,
    stage: DecisionStage,
    timeoutMs?: number,
    origin?: CallOrigin,
  ) {
    if (onDecision === undefined) return decide(method, headers, timeoutMs, origin);
    const started = performance.now();
    const report = (verdict: Verdict) => {
      // An admitted call with a body stage ahead is reported by that stage.
      if (verdict.outcome === "allow" && access.planFor(verdict.plan) !== undefined) return verdict;
      onDecision({ method, verdict, stage, durationMs: performance.now() - started });
      return verdict;
    };
    const result = decide(method, headers, timeoutMs, origin);
    return result instanceof Promise ? result.then(report) : report(result);
  }

  return {
    policy,
    decide,
    get watchedStreams() {
      return watch?.size ?? 0;
    },
    check: decideAndReport,
    async requestGate(context) {
      const verdict =
        context.values.get(verdictKey) ??
        (await decideAndReport(
          context.method,
          context.requestHeader,
          "gate",
          context.timeoutMs(),
          originOf(context.values),
        ));
      context.values.set(verdictKey, verdict);
      if (verdict.outcome !== "allow") throw verdictToConnectError(verdict);
      context.values.set(principalKey, verdict.principal);
    },
    interceptor: (next) => async (req) => {
      const verdict =
        req.contextValues.get(verdictKey) ??
        (await decideAndReport(req.method, req.header, "interceptor", undefined, originOf(req.contextValues)));
      if (verdict.outcome !== "allow") throw verdictToConnectError(verdict);
      const plan = access.planFor(verdict.plan);
      let admitted = req;
      if (plan !== undefined) {
        const body = admitBody(req, verdict, plan, access, onDecision);
        admitted = body instanceof Promise ? await body : body;
      }
      // The verdict too (the gate sets it when it runs), so handlers can tell which token called.
      admitted.contextValues.set(principalKey, verdict.principal).set(verdictKey, verdict);
      if (watch !== undefined && admitted.stream) {
        const certificate = admitted.contextValues.get(clientCertificateKey);
        const token =
          verdict.token ??
          (verdict.principal !== undefined && certificate !== undefined
            ? certificateCallIdentity(verdict.principal.id, certificate)
            : undefined);
        if (token !== undefined) return watch.run(admitted, { ...verdict, token }, next);
      }
      return next(admitted);
    },
  };
}

/** The registry of open streams, unless `revalidateStreams` is off. */
function createWatch(options: AuthOptions, policy: AuthPolicy, decide: Decide): CallWatch | undefined {
  const setting = options.revalidateStreams ?? true;
  if (setting === false) return undefined;
  const { principals, verifier, onDecision } = options;
  const intervalMs =
    (setting === true ? undefined : setting.intervalMs) ?? principals.maxAgeMs ?? DEFAULT_RECHECK_INTERVAL_MS;
  if (!(intervalMs > 0)) throw new RangeError("revalidateStreams.intervalMs must be positive");
  const reload = principals.reload?.bind(principals) ?? principals.load.bind(principals);
  return createCallWatch({
    decide,
    // One decider per batch of re-checks, over lookups that bypass caches
    // and are shared by the calls of one token within the batch.
    freshDecide() {
      const lookups = new Map<string, Promise<PrincipalLookup>>();
      return createDecider({
        policy,
        verifier,
        ...(options.identities !== undefined && { identities: options.identities }),
        ...(options.gateway !== undefined && "read" in options.gateway && { gateway: options.gateway }),
        ...(options.lookupTimeoutMs !== undefined && { lookupTimeoutMs: options.lookupTimeoutMs }),
        // Its cache is dropped by the same invalidation before a re-check runs.
        ...(options.certificates !== undefined && { certificates: options.certificates }),
        // Likewise: a key's answer is dropped by the invalidation that announces its owner.
        ...(options.apiKeys !== undefined && { apiKeys: options.apiKeys }),
        principals: {
          load(userId, token) {
            const key = `${userId}:${token.issuedAt}:${token.jti}`;
            let lookup = lookups.get(key);
            if (lookup === undefined) lookups.set(key, (lookup = reload(userId, token)));
            return lookup;
          },
        },
      });
    },
    report:
      onDecision && ((method, verdict, durationMs) => onDecision({ method, verdict, stage: "recheck", durationMs })),
    onInvalidation: principals.onInvalidation?.bind(principals),
    intervalMs,
    leewaySeconds: verifier.leewaySeconds,
  });
}
