/**
 * The token defaults, in one place: `createTokenIssuer`, `createTokenVerifier`
 * and `loadConfig` (the environment `protoguard serve` and the CLI read) all
 * take theirs from here, so a server wired by hand and one started by
 * `serve` agree on every bound a token is checked against.
 */
export const TOKEN_DEFAULTS = Object.freeze({
  /** Access token lifetime, seconds (simplejwt's `ACCESS_TOKEN_LIFETIME`, 5 minutes). */
  accessTtlSeconds: 300,
  /** Refresh token lifetime, seconds (simplejwt's `REFRESH_TOKEN_LIFETIME`, 1 day). */
  refreshTtlSeconds: 86_400,
  /** Lifetime of a ServiceToken access token, seconds (at most the access lifetime). */
  serviceTokenTtlSeconds: 300,
  /** Clock skew tolerated on `exp`, `nbf` and `iat`, seconds. */
  leewaySeconds: 30,
  /** Largest leeway accepted, seconds. */
  maxLeewaySeconds: 60,
});
