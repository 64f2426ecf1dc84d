/**
 * The simplejwt refresh-token adoption `serve` wires into its AuthService,
 * from the PROTOGUARD_SIMPLEJWT_* and PROTOGUARD_DJANGO_DATABASE_URL settings.
 */
import { readFileSync } from "node:fs";
import { createSimplejwtAdoption, type SimplejwtAdoption } from "../lifecycle/simplejwt-adoption.js";
import type { ProtoguardConfig } from "../runtime/config.js";
import { openSimplejwtBlacklist } from "../store/simplejwt-tokens.js";

/**
 * The adoption the configuration asks for, or undefined when no simplejwt key
 * or JWKS is set. Reads the verifying key file now (a missing file fails the start).
 */
export function simplejwtAdoptionFromConfig(
  config: Pick<
    ProtoguardConfig,
    | "simplejwtSigningKey"
    | "simplejwtVerifyingKeyPath"
    | "simplejwtAlgorithm"
    | "simplejwtJwksUrl"
    | "simplejwtUserIdClaim"
    | "djangoDatabaseUrl"
    | "leewaySeconds"
  >,
): SimplejwtAdoption | undefined {
  if (
    config.simplejwtSigningKey === undefined &&
    config.simplejwtVerifyingKeyPath === undefined &&
    config.simplejwtJwksUrl === undefined
  ) {
    return undefined;
  }
  return createSimplejwtAdoption({
    signingKey: config.simplejwtSigningKey,
    ...(config.simplejwtVerifyingKeyPath !== undefined && {
      verifyingKey: {
        alg: config.simplejwtAlgorithm,
        publicKey: readFileSync(config.simplejwtVerifyingKeyPath, "utf8"),
      },
    }),
    jwksUrl: config.simplejwtJwksUrl,
    userIdClaim: config.simplejwtUserIdClaim,
    leewaySeconds: config.leewaySeconds,
    ...(config.djangoDatabaseUrl !== undefined && { blacklist: openSimplejwtBlacklist(config.djangoDatabaseUrl) }),
  });
}
