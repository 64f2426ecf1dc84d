/**
 * The simplejwt refresh-token adoption `serve` wires into its AuthService,
 * from the PROTOGUARD_SIMPLEJWT_* and PROTOGUARD_DJANGO_DATABASE_URL settings.
 */
import { createSimplejwtAdoption, type SimplejwtAdoption } from "../lifecycle/simplejwt-adoption.js";
import type { ProtoguardConfig } from "../runtime/config.js";
import { openSimplejwtBlacklist } from "../store/simplejwt-tokens.js";

/** The adoption the configuration asks for, or undefined when no simplejwt key or JWKS is set. */
export function simplejwtAdoptionFromConfig(
  config: Pick<
    ProtoguardConfig,
    "simplejwtSigningKey" | "simplejwtJwksUrl" | "simplejwtUserIdClaim" | "djangoDatabaseUrl" | "leewaySeconds"
  >,
): SimplejwtAdoption | undefined {
  if (config.simplejwtSigningKey === undefined && config.simplejwtJwksUrl === undefined) return undefined;
  return createSimplejwtAdoption({
    signingKey: config.simplejwtSigningKey,
    jwksUrl: config.simplejwtJwksUrl,
    userIdClaim: config.simplejwtUserIdClaim,
    leewaySeconds: config.leewaySeconds,
    ...(config.djangoDatabaseUrl !== undefined && { blacklist: openSimplejwtBlacklist(config.djangoDatabaseUrl) }),
  });
}
