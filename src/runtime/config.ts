/**
 * The environment, turned into options once. Only the CLI and `serve` read
 * `process.env`; the library takes these options and nothing else.
 */
import { TOKEN_DEFAULTS } from "../token/defaults.js";
import type { ForwardedHeader } from "../connect/peer.js";
import { parseTrustedProxies } from "../util/ip-address.js";
import { HEALTH_WATCH_DEFAULTS } from "../server/services/health.js";
import { CONNECTION_LIMIT_DEFAULTS } from "../server/transport/limits.js";
import type { TokenAlgorithm } from "../token/keys.js";
import type { WorkersOption } from "../server/workers.js";
import { ProtoguardError } from "../errors.js";
import { RATE_LIMITER_DEFAULTS, type RateLimitStoreFailure } from "../connect/rate-limit.js";

/** Everything `protoguard` commands and `serve` are configured with. */
export interface ProtoguardConfig {
  /** `DATABASE_URL`: PostgreSQL. When unset, PGlite in {@link dataDir}. */
  databaseUrl: string | undefined;
  /**
   * `PROTOGUARD_DATABASE_POOL_MAX`: connections each process opens on `DATABASE_URL` for
   * queries (1 to 1000). Default: the URL's `max` parameter, else 10.
   */
  databasePoolMax: number | undefined;
  /**
   * `PROTOGUARD_DATABASE_PREPARE`: `true` or `false`, named prepared statements on
   * `DATABASE_URL`; `false` behind a transaction-pooling PgBouncer. Default: the URL's `prepare`
   * parameter, else false when `PROTOGUARD_LISTEN_DATABASE_URL` is set, else true.
   */
  databasePrepare: boolean | undefined;
  /**
   * `PROTOGUARD_LISTEN_DATABASE_URL`: a direct (or session-pooled) connection to the same
   * database for the LISTEN connection of cache invalidation, when `DATABASE_URL` goes through a
   * transaction-pooling PgBouncer. Needs `DATABASE_URL`. Default: LISTEN over `DATABASE_URL`.
   */
  listenDatabaseUrl: string | undefined;
  /**
   * `PROTOGUARD_DATA_DIR`: the embedded database, laid out as
   * `openDatabase({ dataDir })` lays it out (PGlite in `pgdata/`), and the
   * development secret beside it. One process at a time. Default `.protoguard`.
   */
  dataDir: string;
  /** `PROTOGUARD_JWT_ALGORITHM`: HS256, RS256 or ES256. Default HS256. */
  algorithm: TokenAlgorithm;
  /** `PROTOGUARD_JWT_SECRET`: the HS256 secret (at least 32 bytes). */
  secret: string | undefined;
  /**
   * `PROTOGUARD_JWT_PREVIOUS_SECRETS`: comma-separated HS256 secrets that
   * still verify but no longer sign, for rotation. Default none.
   */
  previousSecrets: string[];
  /** `PROTOGUARD_JWT_PRIVATE_KEY`: path of the PEM or JWK signing key (RS256/ES256). */
  privateKeyPath: string | undefined;
  /**
   * `PROTOGUARD_JWT_PUBLIC_KEY`: comma-separated paths of PEM or JWK public
   * keys that verify (older keys during rotation). Default none.
   */
  publicKeyPaths: string[];
  /** `PROTOGUARD_ACCESS_TTL`, seconds. Default 300. */
  accessTtlSeconds: number;
  /** `PROTOGUARD_REFRESH_TTL`, seconds. Default 86400. */
  refreshTtlSeconds: number;
  /**
   * `PROTOGUARD_JWKS_URL`: also trust tokens signed by the keys of this JWKS
   * (another issuer speaking the same claim profile). Default none.
   */
  jwksUrl: string | undefined;
  /** `PROTOGUARD_JWKS_USER_ID_CLAIM`: the claim of those tokens naming the local user id. Default `user_id`. */
  jwksUserIdClaim: string | undefined;
  /**
   * `PROTOGUARD_TRUSTED_ISSUERS`: path of a JSON file listing external identity providers whose
   * access tokens are accepted (see `parseTrustedIssuers`); read and validated by
   * `openRuntime`, which refuses to start on any mistake. Default none.
   */
  trustedIssuersPath: string | undefined;
  /**
   * `PROTOGUARD_GATEWAY_HEADER`: turns gateway mode on. The header a gateway that verified the
   * token writes its payload into (Envoy's `forward_payload_header`, e.g. `x-jwt-payload`).
   * Default none: gateway mode off.
   */
  gatewayHeader: string | undefined;
  /**
   * `PROTOGUARD_GATEWAY_TRUSTED_PEERS`: comma-separated addresses and CIDR ranges of the
   * gateways; the header is read only from these socket peers. Required with the header.
   */
  gatewayTrustedPeers: string[];
  /** `PROTOGUARD_GATEWAY_USER_ID_CLAIM`: the claim of protoguard-shaped gateway payloads naming the user. Default `user_id`. */
  gatewayUserIdClaim: string | undefined;
  /**
   * `PROTOGUARD_SIMPLEJWT_SIGNING_KEY`: djangorestframework-simplejwt's HS256
   * `SIGNING_KEY` (Django's `SECRET_KEY` unless set). With it (or the JWKS
   * below), Refresh adopts refresh tokens simplejwt issued. Default none.
   */
  simplejwtSigningKey: string | undefined;
  /**
   * `PROTOGUARD_SIMPLEJWT_VERIFYING_KEY`: path of simplejwt's `VERIFYING_KEY`
   * (PEM), for its RS256/ES256 setups, instead of a signing key. Default none.
   */
  simplejwtVerifyingKeyPath: string | undefined;
  /** `PROTOGUARD_SIMPLEJWT_ALGORITHM`: RS256 or ES256, simplejwt's `ALGORITHM` with a verifying key. Default RS256. */
  simplejwtAlgorithm: "RS256" | "ES256";
  /** `PROTOGUARD_SIMPLEJWT_JWKS_URL`: a JWKS with simplejwt's RS256/ES256 keys (tokens with a `kid` only). Default none. */
  simplejwtJwksUrl: string | undefined;
  /** `PROTOGUARD_SIMPLEJWT_USER_ID_CLAIM`: simplejwt's `USER_ID_CLAIM`. Default `user_id`. */
  simplejwtUserIdClaim: string | undefined;
  /**
   * `PROTOGUARD_DJANGO_DATABASE_URL`: the Django database (PostgreSQL) whose
   * simplejwt blacklist adopted refresh tokens are checked against. Default
   * none: no blacklist check.
   */
  djangoDatabaseUrl: string | undefined;
  /** `PROTOGUARD_JWT_ISSUER`: `iss` to set and require. Default none. */
  issuer: string | undefined;
  /** `PROTOGUARD_JWT_AUDIENCE`: `aud` to set and require. Default none. */
  audience: string | undefined;
  /** `PROTOGUARD_JWT_LEEWAY`, seconds of clock skew, 0..60. Default 30. */
  leewaySeconds: number;
  /** `PROTOGUARD_SCRYPT_LOG_N`: password hash cost (log2 N). Default 17. */
  scryptLogN: number;
  /** `PROTOGUARD_CACHE_ENTRIES`: cached users and tokens; 0 disables both caches. Default 10000. */
  cacheEntries: number;
  /** `PROTOGUARD_CACHE_MAX_AGE_MS`: staleness bound of the user cache. Default 30000. */
  cacheMaxAgeMs: number;
  /** `PORT`. Default 8080. */
  port: number;
  /** `PROTOGUARD_HOST`: address to bind. Default 127.0.0.1. */
  host: string;
  /** `PROTOGUARD_TLS_CERT` / `PROTOGUARD_TLS_KEY`: PEM file paths; both or neither. */
  tlsCertPath: string | undefined;
  tlsKeyPath: string | undefined;
  /**
   * `PROTOGUARD_TLS_CLIENT_CA`: PEM file of the CA(s) that issue client
   * certificates; needs PROTOGUARD_TLS_CERT/KEY. A verified certificate whose
   * SPIFFE ID or subject is a service account's TLS identity authenticates
   * that service without a token. Default none (no client certificates).
   */
  tlsClientCaPath: string | undefined;
  /** `PROTOGUARD_SERVICE_TOKEN_TTL`: seconds a ServiceToken access token lives, at most PROTOGUARD_ACCESS_TTL. Default 300 (or the access TTL if shorter). */
  serviceTokenTtlSeconds: number;
  /**
   * `PROTOGUARD_REFRESH_REUSE_GRACE_S`: seconds during which a rotated refresh token presented
   * again gets the same successor pair instead of revoking its family (two tabs, a retry);
   * 0 disables. Default 5.
   */
  refreshReuseGraceSeconds: number;
  /** `PROTOGUARD_CORS_ORIGINS`: comma-separated origins (or `*`). Default none. */
  corsOrigins: string[];
  /** `PROTOGUARD_LOG_LEVEL`: pino level. Default info. */
  logLevel: string;
  /**
   * `PROTOGUARD_WORKERS`: server processes sharing the port, a positive
   * integer or `auto` (one per core). Default `auto`, which `serve` reads as
   * 1 on the embedded database (one process holds it).
   */
  workers: WorkersOption;

  // Client addresses and Login admission.
  /**
   * `PROTOGUARD_TRUSTED_PROXIES`: comma-separated addresses and CIDR ranges
   * of reverse proxies whose forwarded header names the client. Default
   * none: the socket's peer is the client.
   */
  trustedProxies: string[];
  /**
   * `PROTOGUARD_FORWARDED_HEADER`: `x-forwarded-for` or `forwarded`, the
   * header those proxies write. Default `x-forwarded-for`.
   */
  forwardedHeader: ForwardedHeader;
  /** `PROTOGUARD_LOGIN_PEER_BURST`: Login attempts one client address may start at once. Default 20. */
  loginPeerBurst: number;
  /** `PROTOGUARD_LOGIN_PEER_PER_MINUTE`: Login attempts per minute a client address regains. Default 30. */
  loginPeerPerMinute: number;
  /** `PROTOGUARD_LOGIN_MAX_PEERS`: client addresses the Login admission remembers. Default 10000. */
  loginMaxPeers: number;
  /** `PROTOGUARD_HEADERS_TIMEOUT_MS`: time to receive an HTTP/1.1 request head (and the h2c preface, the TLS handshake); 0 disables. Default 20000. */
  headersTimeoutMs: number;
  /** `PROTOGUARD_REQUEST_TIMEOUT_MS`: time to receive a whole HTTP/1.1 request; 0 disables. Default 300000. */
  requestTimeoutMs: number;
  /** `PROTOGUARD_KEEPALIVE_TIMEOUT_MS`: idle HTTP/1.1 keep-alive connections close after it. Default 5000. */
  keepAliveTimeoutMs: number;
  /** `PROTOGUARD_IDLE_TIMEOUT_MS`: HTTP/2 connections without a call for this long get GOAWAY; 0 disables. Default 60000. */
  idleTimeoutMs: number;
  /** `PROTOGUARD_MAX_CONCURRENT_STREAMS`: HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS). Default 100. */
  maxConcurrentStreams: number;
  /** `PROTOGUARD_MAX_CONNECTIONS`: open connections in all; 0 means no limit. Default 4096. */
  maxConnections: number;
  /** `PROTOGUARD_MAX_CONNECTIONS_PER_PEER`: open connections from one IP address; 0 means no limit. Default 256. */
  maxConnectionsPerPeer: number;
  /** `PROTOGUARD_MAX_WATCH_STREAMS`: open health Watch calls in all; 0 means no limit. Default 1000. */
  maxWatchStreams: number;
  /** `PROTOGUARD_MAX_WATCH_STREAMS_PER_CONNECTION`: open health Watch calls on one connection; 0 means no limit. Default 10. */
  maxWatchStreamsPerConnection: number;
  /**
   * `PROTOGUARD_ADMIN_CONSOLE`: `1` (or `true`) serves the admin console at `/admin/`
   * (`startServer({ adminConsole: true })`); `0` or `false` does not. Default off.
   */
  adminConsole: boolean;
  /**
   * `PROTOGUARD_ADMIN_SERVICE`: `1` serves `protoguard.v1.AdminService` beside AuthService
   * (guarded by its own rules: superusers and holders of `protoguard.*` permissions only), `0`
   * leaves it out. Default 1.
   */
  adminService: boolean;
  /**
   * `PROTOGUARD_AUDIT_RETENTION_DAYS`: audit events older than this many days are pruned (by
   * `serve`, hourly, and by `protoguard audit prune`); 0 keeps them for ever. Default 90.
   */
  auditRetentionDays: number;

  // Rate limits declared in rules (`rate_limit`).
  /**
   * `PROTOGUARD_RATE_LIMIT_REDIS_URL`: a `redis://` or `rediss://` URL; every instance and worker
   * given it shares one count per method and caller. Default none: each process counts in memory.
   */
  rateLimitRedisUrl: string | undefined;
  /**
   * `PROTOGUARD_RATE_LIMIT_ON_REDIS_ERROR`: `open` (admit calls uncounted, with a metric and a log
   * line at most every 10 s) or `closed` (refuse rate-limited calls UNAVAILABLE) while Redis is
   * away. Default `open`.
   */
  rateLimitOnRedisError: RateLimitStoreFailure;
  /** `PROTOGUARD_RATE_LIMIT_REDIS_TIMEOUT_MS`: bound on one Redis round trip, 1 to 60000. Default 250. */
  rateLimitRedisTimeoutMs: number;
  /** `PROTOGUARD_RATE_LIMIT_KEY_PREFIX`: prefix of the Redis keys. Default `protoguard:rl`. */
  rateLimitKeyPrefix: string;
}

/** A configuration mistake, reported as one line naming the variable. */
export class ConfigError extends ProtoguardError<"INVALID_CONFIG"> {
  constructor(message: string, options?: ErrorOptions) {
    super("INVALID_CONFIG", message, options);
  }
}

/**
 * Reads {@link ProtoguardConfig} from an environment.
 *
 * @throws {ConfigError} naming the offending variable.
 */
export function loadConfig(env: NodeJS.ProcessEnv): ProtoguardConfig {
  const read = envReader(env);
  const { str, list, int } = read;
  const tokens = tokenSettings(read);
  return {
    ...databaseSettings(read),
    dataDir: str("PROTOGUARD_DATA_DIR") ?? ".protoguard",
    ...tokens,
    jwksUrl: str("PROTOGUARD_JWKS_URL"),
    jwksUserIdClaim: str("PROTOGUARD_JWKS_USER_ID_CLAIM"),
    trustedIssuersPath: str("PROTOGUARD_TRUSTED_ISSUERS"),
    ...gatewaySettings(read),
    ...simplejwtSettings(read),
    scryptLogN: int("PROTOGUARD_SCRYPT_LOG_N", 17, 10, 20),
    cacheEntries: int("PROTOGUARD_CACHE_ENTRIES", 10_000, 0, 10_000_000),
    cacheMaxAgeMs: int("PROTOGUARD_CACHE_MAX_AGE_MS", 30_000, 0, 86_400_000),
    port: int("PORT", 8080, 0, 65_535),
    host: str("PROTOGUARD_HOST") ?? "127.0.0.1",
    ...tlsSettings(read),
    corsOrigins: list("PROTOGUARD_CORS_ORIGINS"),
    logLevel: str("PROTOGUARD_LOG_LEVEL") ?? "info",
    workers: parseWorkers(str("PROTOGUARD_WORKERS"), "PROTOGUARD_WORKERS"),
    ...admissionSettings(read),
    ...listenerSettings(read),
    ...adminConsoleSettings(read),
    ...adminSettings(read),
    ...auditSettings(read),
    ...rateLimitSettings(read),
  };
}

/** The audit log's retention. */
function auditSettings({ int }: EnvReader) {
  return {
    auditRetentionDays: int("PROTOGUARD_AUDIT_RETENTION_DAYS", 90, 0, 36_500),
  } satisfies Partial<ProtoguardConfig>;
}

/** How every variable is read: trimmed, empty as unset, integers within bounds. */
interface EnvReader {
  str(name: string): string | undefined;
  /** A comma-separated list; unset is empty. */
  list(name: string): string[];
  /** An integer from `min` to `max`, `fallback` when unset. */
  int(name: string, fallback: number, min: number, max: number): number;
}

function envReader(env: NodeJS.ProcessEnv): EnvReader {
  const str = (name: string) => {
    const value = env[name]?.trim();
    return value === undefined || value === "" ? undefined : value;
  };
  return {
    str,
    list: (name) =>
      (str(name) ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== ""),
    int(name, fallback, min, max) {
      const raw = str(name);
      if (raw === undefined) return fallback;
      const value = Number(raw);
      if (!/^-?\d+$/.test(raw) || value < min || value > max) {
        throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
      }
      return value;
    },
  };
}

type TokenSettings = Pick<
  ProtoguardConfig,
  | "algorithm"
  | "secret"
  | "previousSecrets"
  | "privateKeyPath"
  | "publicKeyPaths"
  | "accessTtlSeconds"
  | "serviceTokenTtlSeconds"
  | "refreshReuseGraceSeconds"
  | "refreshTtlSeconds"
  | "issuer"
  | "audience"
  | "leewaySeconds"
>;

/** Signing keys, lifetimes and claims of protoguard's own tokens. */
function tokenSettings({ str, list, int }: EnvReader): TokenSettings {
  const algorithm = (str("PROTOGUARD_JWT_ALGORITHM") ?? "HS256").toUpperCase();
  if (algorithm !== "HS256" && algorithm !== "RS256" && algorithm !== "ES256") {
    throw new ConfigError(`PROTOGUARD_JWT_ALGORITHM must be HS256, RS256 or ES256, got "${algorithm}"`);
  }
  const accessTtlSeconds = int("PROTOGUARD_ACCESS_TTL", TOKEN_DEFAULTS.accessTtlSeconds, 1, 31_536_000);
  return {
    algorithm,
    secret: str("PROTOGUARD_JWT_SECRET"),
    previousSecrets: list("PROTOGUARD_JWT_PREVIOUS_SECRETS"),
    privateKeyPath: str("PROTOGUARD_JWT_PRIVATE_KEY"),
    publicKeyPaths: list("PROTOGUARD_JWT_PUBLIC_KEY"),
    accessTtlSeconds,
    serviceTokenTtlSeconds: int(
      "PROTOGUARD_SERVICE_TOKEN_TTL",
      Math.min(TOKEN_DEFAULTS.serviceTokenTtlSeconds, accessTtlSeconds),
      1,
      accessTtlSeconds,
    ),
    refreshTtlSeconds: int("PROTOGUARD_REFRESH_TTL", TOKEN_DEFAULTS.refreshTtlSeconds, 1, 31_536_000),
    // The bounds are the AuthService option's (DEFAULT_ and MAX_REFRESH_REUSE_GRACE_SECONDS).
    refreshReuseGraceSeconds: int("PROTOGUARD_REFRESH_REUSE_GRACE_S", 5, 0, 60),
    issuer: str("PROTOGUARD_JWT_ISSUER"),
    audience: str("PROTOGUARD_JWT_AUDIENCE"),
    leewaySeconds: int("PROTOGUARD_JWT_LEEWAY", TOKEN_DEFAULTS.leewaySeconds, 0, TOKEN_DEFAULTS.maxLeewaySeconds),
  };
}

/** The PostgreSQL server, its pool, and the direct connection LISTEN needs behind a pooler. */
function databaseSettings({ str, int }: EnvReader) {
  const databaseUrl = str("DATABASE_URL");
  const listenDatabaseUrl = str("PROTOGUARD_LISTEN_DATABASE_URL");
  if (listenDatabaseUrl !== undefined && databaseUrl === undefined) {
    throw new ConfigError("PROTOGUARD_LISTEN_DATABASE_URL needs DATABASE_URL (it is the LISTEN side of that database)");
  }
  const rawPrepare = str("PROTOGUARD_DATABASE_PREPARE")?.toLowerCase();
  if (rawPrepare !== undefined && rawPrepare !== "true" && rawPrepare !== "false") {
    throw new ConfigError(`PROTOGUARD_DATABASE_PREPARE must be true or false, got "${rawPrepare}"`);
  }
  const rawPoolMax = str("PROTOGUARD_DATABASE_POOL_MAX");
  return {
    databaseUrl,
    databasePoolMax: rawPoolMax === undefined ? undefined : int("PROTOGUARD_DATABASE_POOL_MAX", 10, 1, 1000),
    databasePrepare: rawPrepare === undefined ? undefined : rawPrepare === "true",
    listenDatabaseUrl,
  } satisfies Partial<ProtoguardConfig>;
}

/** TLS material, and the CA whose client certificates identify service accounts. */
function tlsSettings({ str }: EnvReader) {
  const tlsCertPath = str("PROTOGUARD_TLS_CERT");
  const tlsKeyPath = str("PROTOGUARD_TLS_KEY");
  if ((tlsCertPath === undefined) !== (tlsKeyPath === undefined)) {
    throw new ConfigError("PROTOGUARD_TLS_CERT and PROTOGUARD_TLS_KEY must be set together");
  }
  const tlsClientCaPath = str("PROTOGUARD_TLS_CLIENT_CA");
  if (tlsClientCaPath !== undefined && tlsCertPath === undefined) {
    throw new ConfigError(
      "PROTOGUARD_TLS_CLIENT_CA needs PROTOGUARD_TLS_CERT and PROTOGUARD_TLS_KEY (client certificates need TLS)",
    );
  }
  return { tlsCertPath, tlsKeyPath, tlsClientCaPath } satisfies Partial<ProtoguardConfig>;
}

/** Gateway mode: the header a trusted gateway writes, and the peers it is trusted from. */
function gatewaySettings({ str, list }: EnvReader) {
  const gatewayHeader = str("PROTOGUARD_GATEWAY_HEADER")?.toLowerCase();
  const gatewayTrustedPeers = list("PROTOGUARD_GATEWAY_TRUSTED_PEERS");
  if (gatewayHeader !== undefined) {
    if (!/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(gatewayHeader) || gatewayHeader === "authorization") {
      throw new ConfigError(
        `PROTOGUARD_GATEWAY_HEADER must be a header name other than authorization, got "${gatewayHeader}"`,
      );
    }
    if (gatewayTrustedPeers.length === 0) {
      throw new ConfigError(
        "PROTOGUARD_GATEWAY_HEADER needs PROTOGUARD_GATEWAY_TRUSTED_PEERS (the gateways' addresses)",
      );
    }
  } else if (gatewayTrustedPeers.length > 0) {
    throw new ConfigError("PROTOGUARD_GATEWAY_TRUSTED_PEERS is set without PROTOGUARD_GATEWAY_HEADER");
  }
  try {
    parseTrustedProxies(gatewayTrustedPeers);
  } catch (error) {
    throw new ConfigError(`PROTOGUARD_GATEWAY_TRUSTED_PEERS: ${(error as Error).message}`);
  }
  return {
    gatewayHeader,
    gatewayTrustedPeers,
    gatewayUserIdClaim: str("PROTOGUARD_GATEWAY_USER_ID_CLAIM"),
  } satisfies Partial<ProtoguardConfig>;
}

/** Adopting Django's simplejwt refresh tokens: its key, claims and blacklist database. */
function simplejwtSettings({ str }: EnvReader) {
  const simplejwtAlgorithm = (str("PROTOGUARD_SIMPLEJWT_ALGORITHM") ?? "RS256").toUpperCase();
  if (simplejwtAlgorithm !== "RS256" && simplejwtAlgorithm !== "ES256") {
    throw new ConfigError(`PROTOGUARD_SIMPLEJWT_ALGORITHM must be RS256 or ES256, got "${simplejwtAlgorithm}"`);
  }
  const simplejwtSigningKey = str("PROTOGUARD_SIMPLEJWT_SIGNING_KEY");
  const simplejwtVerifyingKeyPath = str("PROTOGUARD_SIMPLEJWT_VERIFYING_KEY");
  if (simplejwtSigningKey !== undefined && simplejwtVerifyingKeyPath !== undefined) {
    throw new ConfigError(
      "set PROTOGUARD_SIMPLEJWT_SIGNING_KEY (HS256) or PROTOGUARD_SIMPLEJWT_VERIFYING_KEY, not both",
    );
  }
  return {
    simplejwtSigningKey,
    simplejwtVerifyingKeyPath,
    simplejwtAlgorithm,
    simplejwtJwksUrl: str("PROTOGUARD_SIMPLEJWT_JWKS_URL"),
    simplejwtUserIdClaim: str("PROTOGUARD_SIMPLEJWT_USER_ID_CLAIM"),
    djangoDatabaseUrl: str("PROTOGUARD_DJANGO_DATABASE_URL"),
  } satisfies Partial<ProtoguardConfig>;
}

/** Client addresses (behind trusted proxies) and Login's per-address admission. */
function admissionSettings({ str, list, int }: EnvReader) {
  const trustedProxies = list("PROTOGUARD_TRUSTED_PROXIES");
  try {
    parseTrustedProxies(trustedProxies);
  } catch (error) {
    throw new ConfigError(`PROTOGUARD_TRUSTED_PROXIES: ${(error as Error).message}`);
  }
  const forwardedHeader = (str("PROTOGUARD_FORWARDED_HEADER") ?? "x-forwarded-for").toLowerCase();
  if (forwardedHeader !== "x-forwarded-for" && forwardedHeader !== "forwarded") {
    throw new ConfigError(`PROTOGUARD_FORWARDED_HEADER must be x-forwarded-for or forwarded, got "${forwardedHeader}"`);
  }
  return {
    trustedProxies,
    forwardedHeader,
    loginPeerBurst: int("PROTOGUARD_LOGIN_PEER_BURST", 20, 1, 1_000_000),
    loginPeerPerMinute: int("PROTOGUARD_LOGIN_PEER_PER_MINUTE", 30, 1, 1_000_000),
    loginMaxPeers: int("PROTOGUARD_LOGIN_MAX_PEERS", 10_000, 1, 10_000_000),
  } satisfies Partial<ProtoguardConfig>;
}

/** Connection bounds of the listener and of health Watch streams. */
function listenerSettings({ int }: EnvReader) {
  const limits = CONNECTION_LIMIT_DEFAULTS;
  const day = 86_400_000;
  const headersTimeoutMs = int("PROTOGUARD_HEADERS_TIMEOUT_MS", limits.headersTimeoutMs, 0, day);
  const requestTimeoutMs = int("PROTOGUARD_REQUEST_TIMEOUT_MS", limits.requestTimeoutMs, 0, day);
  if (requestTimeoutMs > 0 && headersTimeoutMs > requestTimeoutMs) {
    throw new ConfigError(
      `PROTOGUARD_HEADERS_TIMEOUT_MS (${headersTimeoutMs}) must not exceed PROTOGUARD_REQUEST_TIMEOUT_MS (${requestTimeoutMs})`,
    );
  }
  return {
    headersTimeoutMs,
    requestTimeoutMs,
    keepAliveTimeoutMs: int("PROTOGUARD_KEEPALIVE_TIMEOUT_MS", limits.keepAliveTimeoutMs, 0, day),
    idleTimeoutMs: int("PROTOGUARD_IDLE_TIMEOUT_MS", limits.idleTimeoutMs, 0, day),
    maxConcurrentStreams: int("PROTOGUARD_MAX_CONCURRENT_STREAMS", limits.maxConcurrentStreams, 1, 2 ** 31 - 1),
    maxConnections: int("PROTOGUARD_MAX_CONNECTIONS", limits.maxConnections, 0, 10_000_000),
    maxConnectionsPerPeer: int("PROTOGUARD_MAX_CONNECTIONS_PER_PEER", limits.maxConnectionsPerPeer, 0, 10_000_000),
    maxWatchStreams: int("PROTOGUARD_MAX_WATCH_STREAMS", HEALTH_WATCH_DEFAULTS.maxWatchStreams, 0, 10_000_000),
    maxWatchStreamsPerConnection: int(
      "PROTOGUARD_MAX_WATCH_STREAMS_PER_CONNECTION",
      HEALTH_WATCH_DEFAULTS.maxWatchStreamsPerConnection,
      0,
      10_000_000,
    ),
  } satisfies Partial<ProtoguardConfig>;
}

/** Where the rules' rate limits are counted, and what happens while that store is away. */
function rateLimitSettings({ str, int }: EnvReader) {
  const rateLimitRedisUrl = str("PROTOGUARD_RATE_LIMIT_REDIS_URL");
  if (rateLimitRedisUrl !== undefined && !/^rediss?:\/\/[^\s]+$/i.test(rateLimitRedisUrl)) {
    throw new ConfigError("PROTOGUARD_RATE_LIMIT_REDIS_URL must be a redis:// or rediss:// URL");
  }
  const onError = (str("PROTOGUARD_RATE_LIMIT_ON_REDIS_ERROR") ?? RATE_LIMITER_DEFAULTS.onRedisError).toLowerCase();
  if (onError !== "open" && onError !== "closed") {
    throw new ConfigError(`PROTOGUARD_RATE_LIMIT_ON_REDIS_ERROR must be open or closed, got "${onError}"`);
  }
  return {
    rateLimitRedisUrl,
    rateLimitOnRedisError: onError,
    rateLimitRedisTimeoutMs: int(
      "PROTOGUARD_RATE_LIMIT_REDIS_TIMEOUT_MS",
      RATE_LIMITER_DEFAULTS.redisTimeoutMs,
      1,
      60_000,
    ),
    rateLimitKeyPrefix: str("PROTOGUARD_RATE_LIMIT_KEY_PREFIX") ?? RATE_LIMITER_DEFAULTS.keyPrefix,
  } satisfies Partial<ProtoguardConfig>;
}

/** AdminService on `serve`. */
function adminSettings({ str }: EnvReader) {
  const raw = str("PROTOGUARD_ADMIN_SERVICE") ?? "1";
  if (raw !== "0" && raw !== "1") throw new ConfigError(`PROTOGUARD_ADMIN_SERVICE must be 0 or 1, got "${raw}"`);
  return { adminService: raw === "1" } satisfies Partial<ProtoguardConfig>;
}

/**
 * A worker count as written in `PROTOGUARD_WORKERS` or `--workers`: `auto`
 * or an integer from 1 to 1024. Absent means `auto`.
 *
 * @throws {ConfigError} naming `source`.
 */
export function parseWorkers(raw: string | undefined, source: string): WorkersOption {
  if (raw === undefined || raw.toLowerCase() === "auto") return "auto";
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < 1 || value > 1024) {
    throw new ConfigError(`${source} must be "auto" or an integer from 1 to 1024, got "${raw}"`);
  }
  return value;
}

/** Whether `serve` serves the admin console: off unless asked for, as an admin surface should be. */
function adminConsoleSettings({ str }: EnvReader) {
  const raw = str("PROTOGUARD_ADMIN_CONSOLE")?.toLowerCase();
  if (raw !== undefined && !["1", "true", "0", "false"].includes(raw)) {
    throw new ConfigError(`PROTOGUARD_ADMIN_CONSOLE must be 1, true, 0 or false, got "${raw}"`);
  }
  return { adminConsole: raw === "1" || raw === "true" } satisfies Partial<ProtoguardConfig>;
}
