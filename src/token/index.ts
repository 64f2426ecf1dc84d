/** Token module: keys, issuing and verifying simplejwt-compatible JWTs, JWKS. */
export { KeyConfigError, TokenRejectedError } from "./errors.js";
export type { KeyConfigErrorCode, TokenRejectionCode } from "./errors.js";
export { createKeyring, generateKeyPairFiles, loadKeyFile } from "./keys.js";
export type {
  AsymmetricAlgorithm,
  AsymmetricKeyInput,
  KeyConfig,
  Keyring,
  LoadedKey,
  SigningKey,
  TokenAlgorithm,
  VerificationKey,
} from "./keys.js";
export { DEFAULT_USER_ID_CLAIM, parseUserId } from "./claims.js";
export { MAX_USER_ID } from "../user-id.js";
export type { TokenType, VerifiedClaims } from "./claims.js";
export { createTokenIssuer } from "./issuer.js";
export type { IssuedToken, TokenIssuer, TokenIssuerOptions } from "./issuer.js";
export { createTokenVerifier } from "./verifier.js";
export type { TokenVerifier, TokenVerifierOptions, VerifyResult } from "./verifier.js";
export { createRemoteKeySource, jwksDocument } from "./jwks.js";
export type { JwksDocument, RemoteJwksOptions, RemoteKeySource } from "./jwks.js";
