import { ConnectError, type Code } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { Deny, Unavailable } from "../decide/verdict.js";
import { ERROR_DOMAIN, type DenyReason, type LoginFailureReason } from "../reasons.js";

/**
 * Turns a refusal into the `ConnectError` clients receive: the safe message,
 * the code, and a `google.rpc.ErrorInfo` detail with the machine-readable
 * reason. The underlying error is kept only as `cause`, which Connect never
 * serializes.
 */
export function verdictToConnectError(verdict: Deny | Unavailable): ConnectError {
  return authError(
    verdict.message,
    verdict.code,
    verdict.reason,
    verdict.cause,
    verdict.outcome === "deny" ? verdict.metadata : undefined,
  );
}

/**
 * A ConnectError carrying an ErrorInfo detail with `reason` in protoguard's domain: the one builder
 * of the auth layer's refusals and of Login's failures, so `authErrorReason` reads both.
 */
export function authError(
  message: string,
  code: Deny["code"] | Unavailable["code"] | Code.ResourceExhausted,
  reason: DenyReason | LoginFailureReason,
  cause?: unknown,
  metadata?: Readonly<Record<string, string>>,
): ConnectError {
  const info = create(ErrorInfoSchema, { reason, domain: ERROR_DOMAIN, ...(metadata !== undefined && { metadata }) });
  return new ConnectError(message, code, undefined, [{ desc: ErrorInfoSchema, value: info }], cause);
}

/**
 * The ErrorInfo metadata of a protoguard refusal a client received (e.g.
 * `maxLifetimeSeconds` for `TOKEN_LIFETIME_EXCEEDED`), or an empty object.
 */
export function authErrorMetadata(error: ConnectError): Readonly<Record<string, string>> {
  for (const info of error.findDetails(ErrorInfoSchema)) {
    if (info.domain === ERROR_DOMAIN) return { ...info.metadata };
  }
  return {};
}

/**
 * Reads the protoguard reason from an error a client received, or undefined.
 *
 * @example
 * ```ts
 * try { await client.getProfile({}); }
 * catch (e) { if (authErrorReason(ConnectError.from(e)) === "TOKEN_EXPIRED") await refresh(); }
 * ```
 */
export function authErrorReason(error: ConnectError): DenyReason | LoginFailureReason | undefined {
  for (const info of error.findDetails(ErrorInfoSchema)) {
    if (info.domain === ERROR_DOMAIN) return info.reason as DenyReason | LoginFailureReason;
  }
  return undefined;
}
