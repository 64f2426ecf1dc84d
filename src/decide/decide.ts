import { Code } from "@connectrpc/connect";
import type { DescMethod } from "@bufbuild/protobuf";
import { readBearer, type HeaderReader } from "../credential/bearer.js";
import type { CertificatePrincipalSource, ClientCertificate } from "../credential/client-certificate.js";
import type { ApiKeyCredential, ApiKeyLookup, ApiKeyPrincipalSource } from "../credential/api-key.js";
import type { AuthPolicy, MethodPlan } from "../policy/policy.js";
import type { PlannedRule } from "../policy/rule.js";
import { principalHasPermission, principalKind, type Principal, type PrincipalLookup } from "../principal.js";
import type { AccessTokenResult, ExternalAccessClaims, ExternalSubject, LocalAccessClaims } from "../claims.js";
import type { GatewayReader } from "../identity/gateway.js";
import { MESSAGES, permissionDenied, unauthenticated, type Allow, type Deny, type Verdict } from "./verdict.js";
import { ProtoguardError } from "../errors.js";

/**
 * Where a call came from, as far as the transport knows: what client
 * certificates (mTLS service accounts) and gateway mode trust. Never read
 * from request headers.
 */
export interface CallOrigin {
  /** The call's verified TLS client certificate, if any. */
  readonly certificate?: ClientCertificate | undefined;
  /**
   * The address of the socket the call came on: what gateway mode trusts;
   * undefined when unknown (in-memory transport), which it never trusts.
   */
  readonly peer?: string | undefined;
}

/**
 * How a trusted issuer's subject maps to a local user; `createIdentityResolver` (from
 * `protoguard/store`) is the one over the `external_identities` table.
 */
export type IdentityResolution =
  /** `grant` adds what the token's groups carry to the loaded principal, for this call only. */
  | { status: "linked"; userId: number; grant: (principal: Principal) => Principal }
  /** No local user is linked, and the issuer does not provision one. */
  | { status: "not_linked" };

/**
 * Maps external subjects to local users (linking, provisioning) and their token groups to
 * permissions. Throwing means "backend unavailable".
 */
export interface IdentityResolver {
  resolve(subject: ExternalSubject): Promise<IdentityResolution>;
  /** The cached answer, without I/O, when there is one; optional. */
  peek?(subject: ExternalSubject): IdentityResolution | undefined;
}

/**
 * What the decision needs from token verification: the shape of
 * `TokenVerifier` for access tokens.
 */
export interface AccessTokenVerifier {
  verify(token: string, expected: "access"): Promise<AccessTokenResult>;
  /** The answer without cryptography or I/O when it is known (cached or malformed); optional. */
  peek?(token: string, expected: "access"): AccessTokenResult | undefined;
  /**
   * Clock skew tolerated past `exp`, in seconds, when known: lets an open
   * stream be re-checked once, right when its token stops verifying, instead
   * of every second from `exp` on. Optional.
   */
  readonly leewaySeconds?: number;
  /**
   * The external issuers whose tokens this verifier accepts (answered as external subjects):
   * `createAuth` refuses to start with any and no `identities` resolver. Optional.
   */
  readonly trustedIssuers?: readonly string[];
}

/**
 * Loads the user named by a verified token, with its effective permissions,
 * and tells whether the token was revoked. Implementations may cache, but
 * must honour explicit invalidation. Throwing means "backend unavailable".
 */
export interface PrincipalSource {
  load(userId: number, token: { jti: string; issuedAt: number }): Promise<PrincipalLookup>;
  /** The cached answer, without I/O, when there is a fresh one; optional. */
  peek?(userId: number, token: { jti: string; issuedAt: number }): PrincipalLookup | undefined;
}

/** Options for {@link createDecider}. */
export interface DeciderOptions {
  policy: AuthPolicy;
  verifier: AccessTokenVerifier;
  principals: PrincipalSource;
  /**
   * Maps tokens of trusted external issuers to local users. Default: none, and such a token
   * (which only a verifier with trusted issuers yields) gets UNAVAILABLE, never a pass.
   */
  identities?: IdentityResolver;
  /**
   * Gateway mode (`createGatewayReader`): verified claims from a trusted gateway's header,
   * read before the bearer token; the header from any other peer is refused. Default: off.
   */
  gateway?: GatewayReader;
  /**
   * Upper bound on one user lookup, in milliseconds; past it (or past the
   * call's own deadline, whichever is sooner) the call fails UNAVAILABLE
   * rather than hanging. Default: 5000.
   */
  lookupTimeoutMs?: number;
  /**
   * Maps a verified TLS client certificate to its service account, for
   * calls that bring a certificate and no bearer token (a token, when
   * present, always takes precedence). Default: none, so certificates
   * identify nobody.
   */
  certificates?: CertificatePrincipalSource;
  /**
   * Resolves API keys (`authorization: Bearer pgk_…`) to their owners limited
   * to their scopes; `createApiKeySource` (protoguard/store) is the one over
   * the `api_keys` table. Default: none, so a key is refused like a token
   * that does not verify (`TOKEN_INVALID`).
   */
  apiKeys?: ApiKeyPrincipalSource;
}

/**
 * Decides one call. Never throws for bad input: every outcome is a
 * {@link Verdict}. The optional `timeoutMs` is the call's remaining deadline;
 * `origin` what the transport knows of where the call came from (see
 * {@link CallOrigin}).
 *
 * The verdict is returned synchronously whenever no I/O or cryptography is
 * needed (no token, a malformed header, a cached token and user), so the
 * common cases cost no promise, timer or microtask; otherwise a promise.
 */
export type Decide = (
  method: DescMethod,
  headers: HeaderReader,
  timeoutMs?: number,
  origin?: CallOrigin,
) => Verdict | Promise<Verdict>;

/**
 * Composes policy, bearer parsing, token verification and the user lookup
 * into the one decision function shared by the request gate, the
 * interceptor and the HTTP pre-filter.
 *
 * Cheap checks run first: a missing or malformed header, and a token that
 * fails verification, cost no database I/O.
 */
export function createDecider(options: DeciderOptions): Decide {
  const { policy, verifier, principals, certificates, identities, gateway, apiKeys } = options;
  const lookupTimeoutMs = options.lookupTimeoutMs ?? 5000;
  const budgetOf = (timeoutMs: number | undefined) =>
    timeoutMs === undefined ? lookupTimeoutMs : Math.min(timeoutMs, lookupTimeoutMs);
  // Public methods keep working without the database; the caller is treated
  // as anonymous rather than trusted on the token's word.
  const backendFailed = (plan: MethodPlan) => (cause: unknown) =>
    plan.rule.kind === "public" ? allow(plan, undefined) : unavailableFor(plan, cause);

  /** A trusted issuer's subject: mapped to a local user first, then the same path as a local token. */
  function afterExternal(
    plan: MethodPlan,
    claims: ExternalAccessClaims,
    timeoutMs: number | undefined,
  ): Verdict | Promise<Verdict> {
    if (identities === undefined) return unavailableFor(plan, new Error("no identity resolver for external tokens"));
    const then = (resolution: IdentityResolution) => {
      if (resolution.status === "not_linked") return unauthenticated(plan, "IDENTITY_NOT_LINKED");
      const token = {
        userId: resolution.userId,
        jti: claims.jti,
        issuedAt: claims.issuedAt,
        expiresAt: claims.expiresAt,
      };
      return lookUp(plan, token, timeoutMs, resolution.grant);
    };
    const known = identities.peek?.(claims.external);
    if (known !== undefined) return then(known);
    return withTimeout(identities.resolve(claims.external), budgetOf(timeoutMs)).then(then, backendFailed(plan));
  }

  function lookUp(
    plan: MethodPlan,
    claims: LocalAccessClaims,
    timeoutMs: number | undefined,
    grant?: (principal: Principal) => Principal,
  ): Verdict | Promise<Verdict> {
    const cached = principals.peek?.(claims.userId, claims);
    if (cached !== undefined) return judge(plan, cached, claims, grant);
    return withTimeout(principals.load(claims.userId, claims), budgetOf(timeoutMs)).then(
      (lookup) => judge(plan, lookup, claims, grant),
      backendFailed(plan),
    );
  }

  function afterVerify(
    plan: MethodPlan,
    verified: AccessTokenResult,
    timeoutMs: number | undefined,
  ): Verdict | Promise<Verdict> {
    if (!verified.ok) {
      if (verified.reason === "KEYS_UNAVAILABLE") {
        return plan.rule.kind === "public" ? allow(plan, undefined) : unavailableFor(plan, verified.error);
      }
      return unauthenticated(plan, verified.reason, verified.error);
    }
    const { claims } = verified;
    if (claims.external !== undefined) return afterExternal(plan, claims, timeoutMs);
    return lookUp(plan, claims, timeoutMs);
  }

  /** A call with no token but a verified client certificate: its service account, or anonymous. */
  function byCertificate(
    plan: MethodPlan,
    certificates: CertificatePrincipalSource,
    certificate: ClientCertificate,
    timeoutMs: number | undefined,
  ) {
    // An unmapped certificate is no credential at all: the caller is anonymous.
    const fromLookup = (lookup: PrincipalLookup): Verdict =>
      lookup.status === "not_found"
        ? plan.rule.kind === "public"
          ? allow(plan, undefined)
          : unauthenticated(plan, "TOKEN_MISSING")
        : judge(plan, lookup, undefined);
    const cached = certificates.peek?.(certificate);
    if (cached !== undefined) return fromLookup(cached);
    return withTimeout(certificates.load(certificate), budgetOf(timeoutMs)).then(fromLookup, backendFailed(plan));
  }

  /**
   * A call with an API key: refused by shape alone where the rule says
   * `api_keys: false` (no look-up), else resolved to its owner within its
   * scopes and judged like a token's user.
   */
  function byApiKey(plan: MethodPlan, key: ApiKeyCredential, timeoutMs: number | undefined) {
    if (plan.rule.apiKeys === false) return unauthenticated(plan, "API_KEY_NOT_ALLOWED");
    if (apiKeys === undefined) return unauthenticated(plan, "TOKEN_INVALID");
    const known = apiKeys.peek?.(key);
    if (known !== undefined) return judgeApiKey(plan, key, known);
    return withTimeout(apiKeys.load(key), budgetOf(timeoutMs)).then(
      (lookup) => judgeApiKey(plan, key, lookup),
      backendFailed(plan),
    );
  }

  return function decide(method, headers, timeoutMs, origin) {
    let plan: MethodPlan;
    try {
      plan = policy.planFor(method);
    } catch (cause) {
      // A malformed rule on a method that was not planned at start-up: refuse
      // rather than guess. Reported as unavailable so clients retry later
      // instead of logging the user out.
      return unavailableFor(unplannedMethod(method), cause);
    }
    // A trusted gateway's claims take precedence over a bearer token (the gateway verified
    // one already); the header from an untrusted peer is refused whatever else is sent.
    const fromGateway = gateway?.read(headers, origin?.peer);
    if (fromGateway !== undefined) return afterVerify(plan, fromGateway, timeoutMs);
    const credential = readBearer(headers);
    if (credential.kind === "none") {
      const certificate = origin?.certificate;
      if (certificate !== undefined && certificates !== undefined) {
        return byCertificate(plan, certificates, certificate, timeoutMs);
      }
      return plan.rule.kind === "public" ? allow(plan, undefined) : unauthenticated(plan, "TOKEN_MISSING");
    }
    if (credential.kind === "malformed") return unauthenticated(plan, "TOKEN_MALFORMED");
    if (credential.kind === "api_key") return byApiKey(plan, credential.key, timeoutMs);
    const known = verifier.peek?.(credential.token, "access");
    if (known !== undefined) return afterVerify(plan, known, timeoutMs);
    return verifier.verify(credential.token, "access").then((verified) => afterVerify(plan, verified, timeoutMs));
  };
}

function judge(
  plan: MethodPlan,
  lookup: PrincipalLookup,
  token: LocalAccessClaims | undefined,
  grant?: (principal: Principal) => Principal,
): Verdict {
  switch (lookup.status) {
    case "not_found":
    case "inactive":
      return unauthenticated(plan, "USER_INACTIVE");
    case "revoked":
      return unauthenticated(plan, "TOKEN_REVOKED");
  }
  return authorize(plan, plan.rule, grant === undefined ? lookup.principal : grant(lookup.principal), token);
}

/** The verdict for a call with an API key, given what its look-up found. */
function judgeApiKey(plan: MethodPlan, key: ApiKeyCredential, lookup: ApiKeyLookup): Verdict {
  switch (lookup.status) {
    case "invalid":
      return unauthenticated(plan, "TOKEN_INVALID");
    case "expired":
      return unauthenticated(plan, "TOKEN_EXPIRED");
    case "revoked":
      return unauthenticated(plan, "TOKEN_REVOKED");
    case "not_found":
    case "inactive":
      return unauthenticated(plan, "USER_INACTIVE");
  }
  // What open streams are re-checked by: the owner (whose changes, the key's
  // included, announce the owner) and the key's expiry. `apikey:` is no jti
  // any issuer writes, so token revocations never match it.
  const identity: LocalAccessClaims = {
    userId: lookup.principal.id,
    jti: `apikey:${key.id}`,
    issuedAt: lookup.createdAt,
    ...(lookup.expiresAt !== undefined && { expiresAt: lookup.expiresAt }),
  };
  return authorize(plan, plan.rule, lookup.principal, identity);
}

/**
 * Checks `principal` against `rule` (superuser, staff, permissions): the
 * part of a decision that needs no I/O. Shadow rules are checked with it too.
 */
export function authorize(
  plan: MethodPlan,
  rule: PlannedRule,
  principal: Principal,
  token: LocalAccessClaims | undefined,
): Allow | Deny {
  if (rule.kind === "public") return allow(plan, principal, token);
  if (rule.principalKind !== undefined && principalKind(principal) !== rule.principalKind) {
    const message = rule.principalKind === "user" ? MESSAGES.PRINCIPAL_KIND_USER : MESSAGES.PRINCIPAL_KIND_SERVICE;
    return permissionDenied(plan, principal, "PRINCIPAL_KIND", message);
  }
  if (rule.superuser && !principal.isSuperuser)
    return permissionDenied(plan, principal, "SUPERUSER_REQUIRED", MESSAGES.SUPERUSER_REQUIRED);
  if (rule.staff && !principal.isStaff)
    return permissionDenied(plan, principal, "STAFF_REQUIRED", MESSAGES.STAFF_REQUIRED);
  for (const permission of rule.permissions) {
    if (!principalHasPermission(principal, permission)) {
      return permissionDenied(plan, principal, "PERMISSION_MISSING", `missing permission ${permission}`);
    }
  }
  return allow(plan, principal, token);
}

function allow(plan: MethodPlan, principal: Principal | undefined, token?: LocalAccessClaims): Allow {
  return { outcome: "allow", plan, principal, token };
}

function unavailableFor(plan: MethodPlan, cause: unknown): Verdict {
  return {
    outcome: "unavailable",
    plan,
    code: Code.Unavailable,
    reason: "AUTH_BACKEND_UNAVAILABLE",
    message: MESSAGES.AUTH_BACKEND_UNAVAILABLE,
    cause,
  };
}

function unplannedMethod(method: DescMethod): MethodPlan {
  return { method, rule: { kind: "user", permissions: [], staff: false, superuser: true }, source: "default" };
}

class LookupTimeoutError extends ProtoguardError<"LOOKUP_TIMEOUT"> {
  constructor(message: string) {
    super("LOOKUP_TIMEOUT", message);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  if (!(ms > 0)) return Promise.reject(new LookupTimeoutError("no time left for the user lookup"));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new LookupTimeoutError(`user lookup exceeded ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
