/**
 * Trusted issuers: the identity providers (Keycloak, Auth0, Okta, Google, Entra ID...) whose
 * access tokens protoguard accepts besides its own. The configuration is the JSON a team writes
 * into the file named by `PROTOGUARD_TRUSTED_ISSUERS`, or passes as the `trustedIssuers` option;
 * it is validated once, at start-up, with errors that name the entry and the field.
 */
import { readFile } from "node:fs/promises";
import type { AsymmetricAlgorithm } from "../token/keys.js";
import type { RemoteJwksOptions } from "../token/jwks.js";
import { parseClaimPath, type ClaimPath, type ClaimPathInit } from "./claim-path.js";

/**
 * One trusted issuer, as written in the JSON file (field names in the IdPs' own snake_case).
 *
 * @example
 * ```json
 * {
 *   "issuer": "https://sso.example.com/realms/shop",
 *   "jwks_url": "https://sso.example.com/realms/shop/protocol/openid-connect/certs",
 *   "audience": "shop-api",
 *   "subject_claim": "sub",
 *   "groups_claim": "realm_access.roles",
 *   "provision": true
 * }
 * ```
 */
export interface TrustedIssuerInit {
  /** The exact `iss` of the issuer's access tokens. Required. */
  issuer: string;
  /** Where its public keys are published (https; http only on loopback). Required. */
  jwks_url: string;
  /**
   * The audience (or several) this API is known by at the issuer: a token must name one of them
   * in `aud` (a string or an array member, exact match). Required: an IdP signs tokens for many
   * APIs, and one meant for another must not work here.
   */
  audience: string | readonly string[];
  /**
   * The claim holding the subject, a dot path or an array of exact keys (see {@link ClaimPathInit}).
   * Its value must be a non-empty string (or an integer) of at most 255 characters.
   * Default `"sub"` (Entra ID: `"oid"` is the stable object id across applications).
   */
  subject_claim?: ClaimPathInit;
  /**
   * The claim holding roles or groups: an array of strings (`"realm_access.roles"`, `"roles"`,
   * `"groups"`, `["https://example.com/roles"]`) or a space-separated string (`"scope"`).
   * Default: none, so the token grants only what the local user holds.
   */
  groups_claim?: ClaimPathInit;
  /**
   * Create a local user (and the link) the first time a subject is seen. Default false: an
   * unlinked subject is refused with UNAUTHENTICATED `IDENTITY_NOT_LINKED`.
   */
  provision?: boolean;
  /** Signature algorithms accepted from this issuer. Default `["RS256"]`. */
  algorithms?: readonly AsymmetricAlgorithm[];
  /** Clock skew tolerated on `exp`, `nbf` and `iat`, seconds, 0..60. Default 30. */
  leeway?: number;
  /**
   * IdP role → protoguard group name(s). When given, only the roles it names count (an
   * unlisted IdP role grants nothing); when absent, each role counts as the group of the same
   * name. Default: absent.
   */
  group_map?: Readonly<Record<string, string | readonly string[]>>;
  /** The claim a provisioned user's username is taken from. Default `"preferred_username"`. */
  username_claim?: ClaimPathInit;
  /** The claim a provisioned user's email is taken from. Default `"email"`. */
  email_claim?: ClaimPathInit;
  /** Milliseconds the JWKS is kept before it is fetched again. Default 600000. */
  jwks_cache_max_age_ms?: number;
  /** Milliseconds after a fetch during which an unknown `kid` fetches nothing. Default 30000. */
  jwks_cooldown_ms?: number;
  /** Timeout of one JWKS fetch, milliseconds. Default 5000. */
  jwks_timeout_ms?: number;
}

/** A validated {@link TrustedIssuerInit}, with defaults applied. */
export interface TrustedIssuer {
  readonly issuer: string;
  readonly jwksUrl: URL;
  readonly audiences: readonly string[];
  readonly subjectClaim: ClaimPath;
  readonly groupsClaim: ClaimPath | undefined;
  readonly provision: boolean;
  readonly algorithms: readonly AsymmetricAlgorithm[];
  readonly leewaySeconds: number;
  /** Absent: same-name groups. */
  readonly groupMap: ReadonlyMap<string, readonly string[]> | undefined;
  readonly usernameClaim: ClaimPath;
  readonly emailClaim: ClaimPath;
  readonly jwks: RemoteJwksOptions;
}

const FIELDS = new Set([
  "issuer",
  "jwks_url",
  "audience",
  "subject_claim",
  "groups_claim",
  "provision",
  "algorithms",
  "leeway",
  "group_map",
  "username_claim",
  "email_claim",
  "jwks_cache_max_age_ms",
  "jwks_cooldown_ms",
  "jwks_timeout_ms",
]);
const MAX_GROUP_NAME_LENGTH = 150;
const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);

/**
 * Validates a list of trusted issuers (the parsed JSON file, or the option).
 *
 * @throws {TypeError} naming the entry (`trusted issuer #2 (https://...)`) and the field at fault:
 *   a missing or mistyped field, an unknown field (a typo would otherwise be silently ignored),
 *   a duplicate issuer, a JWKS URL that is not https, an unsupported algorithm.
 */
export function parseTrustedIssuers(value: unknown): readonly TrustedIssuer[] {
  if (!Array.isArray(value)) throw new TypeError("trusted issuers must be a JSON array of issuer objects");
  const seen = new Set<string>();
  const issuers = value.map((entry, index) => {
    const parsed = parseIssuer(entry, `trusted issuer #${index + 1}`);
    if (seen.has(parsed.issuer)) throw new TypeError(`trusted issuer #${index + 1}: ${parsed.issuer} is listed twice`);
    seen.add(parsed.issuer);
    return parsed;
  });
  return Object.freeze(issuers);
}

/** Entries as given to an option: already parsed (from {@link loadTrustedIssuers}) or the JSON shape, parsed now. */
export function resolveTrustedIssuers(
  issuers: readonly TrustedIssuerInit[] | readonly TrustedIssuer[],
): readonly TrustedIssuer[] {
  if (issuers.length > 0 && issuers.every((entry) => (entry as TrustedIssuer).jwksUrl instanceof URL)) {
    return issuers as readonly TrustedIssuer[];
  }
  return parseTrustedIssuers(issuers);
}

/**
 * Reads and validates the trusted-issuers JSON file (what `PROTOGUARD_TRUSTED_ISSUERS` names).
 *
 * @throws {TypeError} when the file is missing, is not JSON, or an entry is invalid; the message
 *   names the path.
 */
export async function loadTrustedIssuers(path: string): Promise<readonly TrustedIssuer[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    throw new TypeError(`${path}: ${code === "ENOENT" ? "no such file" : "cannot be read"}`, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new TypeError(`${path}: not valid JSON (${(cause as Error).message})`, { cause });
  }
  try {
    return parseTrustedIssuers(json);
  } catch (cause) {
    throw new TypeError(`${path}: ${(cause as Error).message}`, { cause });
  }
}

function parseIssuer(entry: unknown, at: string): TrustedIssuer {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry))
    throw new TypeError(`${at} is not an object`);
  const init = entry as Record<string, unknown>;
  const issuer = init.issuer;
  if (typeof issuer !== "string" || issuer.length === 0 || issuer.length > 512) {
    throw new TypeError(`${at}: "issuer" must be the exact iss of the issuer's tokens (1-512 characters)`);
  }
  const where = `${at} (${issuer})`;
  for (const key of Object.keys(init)) {
    if (!FIELDS.has(key)) throw new TypeError(`${where}: unknown field "${key}" (known: ${[...FIELDS].join(", ")})`);
  }
  return Object.freeze({
    issuer,
    jwksUrl: jwksUrl(init.jwks_url, where),
    audiences: audiences(init.audience, where),
    subjectClaim: parseClaimPath(init.subject_claim ?? "sub", `${where}: "subject_claim"`),
    groupsClaim:
      init.groups_claim === undefined ? undefined : parseClaimPath(init.groups_claim, `${where}: "groups_claim"`),
    provision: flag(init.provision, "provision", where),
    algorithms: algorithms(init.algorithms, where),
    leewaySeconds: integer(init.leeway, 30, 0, 60, "leeway", where),
    groupMap: groupMap(init.group_map, where),
    usernameClaim: parseClaimPath(init.username_claim ?? "preferred_username", `${where}: "username_claim"`),
    emailClaim: parseClaimPath(init.email_claim ?? "email", `${where}: "email_claim"`),
    jwks: Object.freeze({
      cacheMaxAge: integer(init.jwks_cache_max_age_ms, 600_000, 1000, 86_400_000, "jwks_cache_max_age_ms", where),
      cooldownDuration: integer(init.jwks_cooldown_ms, 30_000, 0, 3_600_000, "jwks_cooldown_ms", where),
      timeoutDuration: integer(init.jwks_timeout_ms, 5000, 100, 60_000, "jwks_timeout_ms", where),
    }),
  });
}

function jwksUrl(value: unknown, where: string): URL {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    throw new TypeError(`${where}: "jwks_url" must be an absolute URL, got ${JSON.stringify(value)}`);
  }
  if (
    typeof value !== "string" ||
    !(url.protocol === "https:" || (url.protocol === "http:" && LOOPBACK.has(url.hostname)))
  ) {
    throw new TypeError(`${where}: "jwks_url" must be https (http only on loopback), got ${JSON.stringify(value)}`);
  }
  return url;
}

function audiences(value: unknown, where: string): readonly string[] {
  const list = typeof value === "string" ? [value] : Array.isArray(value) ? value : [];
  if (list.length === 0 || !list.every((a) => typeof a === "string" && a.length > 0)) {
    throw new TypeError(`${where}: "audience" must be a non-empty string or array of strings (this API's identifier)`);
  }
  return Object.freeze([...(list as string[])]);
}

function flag(value: unknown, name: string, where: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== "boolean") throw new TypeError(`${where}: "${name}" must be true or false`);
  return value;
}

function integer(value: unknown, fallback: number, min: number, max: number, name: string, where: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new TypeError(`${where}: "${name}" must be an integer from ${min} to ${max}`);
  }
  return value;
}

function algorithms(value: unknown, where: string): readonly AsymmetricAlgorithm[] {
  if (value === undefined) return Object.freeze(["RS256"] as const);
  if (!Array.isArray(value) || value.length === 0 || !value.every((a) => a === "RS256" || a === "ES256")) {
    // HS* never: a shared secret cannot come from a JWKS, and mixing it in is alg confusion.
    throw new TypeError(`${where}: "algorithms" must be a non-empty array of "RS256" and/or "ES256"`);
  }
  return Object.freeze([...new Set(value as AsymmetricAlgorithm[])]);
}

function groupMap(value: unknown, where: string): ReadonlyMap<string, readonly string[]> | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(`${where}: "group_map" must be an object of IdP role → group name (or array of names)`);
  }
  const map = new Map<string, readonly string[]>();
  for (const [role, target] of Object.entries(value)) {
    const names = typeof target === "string" ? [target] : Array.isArray(target) ? target : undefined;
    if (names === undefined || !names.every((n) => isGroupName(n))) {
      throw new TypeError(`${where}: "group_map"."${role}" must be a group name or an array of group names`);
    }
    map.set(role, Object.freeze([...(names as string[])]));
  }
  return map;
}

/** Whether `value` can name a protoguard group (the `groups.name` column). */
export function isGroupName(value: unknown): value is string {
  return typeof value === "string" && value.length > 0 && value.length <= MAX_GROUP_NAME_LENGTH;
}
