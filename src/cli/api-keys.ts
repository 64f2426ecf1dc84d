/**
 * `protoguard apikey ...`: scoped API keys for people and service accounts.
 * `create` prints the key once, as JSON; the store keeps its id and a hash.
 * Scopes are checked against the owner's permissions before anything is
 * written, and a key never does more than its owner can at call time either.
 */
import { ApiKeyError, mintApiKey, parseApiKeyLifetime } from "../lifecycle/api-keys.js";
import { listApiKeys, revokeApiKey, type ApiKeyInfo } from "../store/api-keys.js";
import type { DrizzleDb } from "../store/database-handle.js";
import { StoreError } from "../store/errors.js";
import { assertValidPermissions, findUserByUsername } from "../store/users.js";
import { defineStoreSubcommand } from "./args.js";
import { CliError, UsageError } from "./errors.js";

/** A key as the commands print it (snake_case, like the other JSON the CLI prints). */
function describe(key: ApiKeyInfo) {
  return {
    id: key.id,
    owner: key.owner,
    name: key.name,
    scopes: key.scopes,
    created_at: key.createdAt.toISOString(),
    expires_at: key.expiresAt?.toISOString() ?? null,
    last_used_at: key.lastUsedAt?.toISOString() ?? null,
    revoked_at: key.revokedAt?.toISOString() ?? null,
  };
}

/** What the audit log keeps of a new key: never its secret or hash. */
export function auditDetail(key: ApiKeyInfo): Record<string, unknown> {
  return { owner: key.owner, name: key.name, scopes: key.scopes, expiresAt: key.expiresAt?.toISOString() ?? null };
}

/** The `users.id` of the person or service account named `name`. */
async function ownerId(db: DrizzleDb, name: string): Promise<number> {
  const user = await findUserByUsername(db, name);
  if (user === undefined) throw new StoreError("USER_NOT_FOUND", `no user or service account "${name}"`);
  return user.id;
}

/** `--scope a.b --scope c.d` or `--scope a.b,c.d`, each checked for shape. */
function scopesOf(values: readonly string[] | undefined): string[] {
  const scopes = (values ?? []).flatMap((value) => value.split(",")).map((scope) => scope.trim());
  if (scopes.length === 0 || scopes.some((scope) => scope === "")) {
    throw new UsageError("give at least one --scope app_label.codename (repeat it, or separate scopes with commas)");
  }
  assertValidPermissions(scopes);
  return scopes;
}

const apikeyCreate = defineStoreSubcommand({
  usage: "apikey create <owner> --scope PERMISSION... [--expires 30d] [--name TEXT]",
  summary: "make an API key for a user or service account, limited to scopes it holds; prints the key once, as JSON",
  flags: { scope: "strings", expires: "string", name: "string" },
  positionals: { min: 1, max: 1, names: "<owner>" },
  prepare({ positionals: [owner], flags }) {
    let lifetimeSeconds: number | undefined;
    try {
      lifetimeSeconds = flags.expires === undefined ? undefined : parseApiKeyLifetime(flags.expires);
    } catch (error) {
      if (error instanceof ApiKeyError) throw new UsageError(`--expires: ${error.message}`);
      throw error;
    }
    return { owner: owner!, scopes: scopesOf(flags.scope), lifetimeSeconds, name: flags.name };
  },
  async work(runtime, input) {
    const db = runtime.database.db;
    try {
      return await mintApiKey(runtime.database, { ...input, owner: await ownerId(db, input.owner) });
    } catch (error) {
      if (error instanceof ApiKeyError) throw new CliError(`${input.owner}: ${error.message}`);
      throw error;
    }
  },
  audit: ({ info }) => ({ type: "apikey.created", subject: `apikey:${info.id}`, detail: auditDetail(info) }),
  report: ({ key, info }) => JSON.stringify({ key, ...describe(info) }, null, 2),
});

const apikeyList = defineStoreSubcommand({
  usage: "apikey list [<owner>]",
  summary: "print API keys (every owner's, or one's), revoked ones included, as a JSON array; never a secret",
  positionals: { min: 0, max: 1, names: "[<owner>]" },
  prepare: ({ positionals: [owner] }) => owner,
  async work(runtime, owner) {
    const db = runtime.database.db;
    return listApiKeys(db, owner === undefined ? undefined : await ownerId(db, owner));
  },
  report: (keys) => JSON.stringify(keys.map(describe), null, 2),
});

const apikeyRevoke = defineStoreSubcommand({
  usage: "apikey revoke <id>",
  summary: "revoke an API key by its id, on every server instance at once",
  positionals: { min: 1, max: 1, names: "<id>" },
  prepare({ positionals: [given] }) {
    // The id, or a whole key pasted by mistake: only its id part is used.
    const id = given!.startsWith("pgk_") ? given!.slice(4, 16) : given!;
    if (!/^[a-z2-7]{12}$/.test(id)) throw new UsageError(`"${given}" is not an API key id (12 characters a-z, 2-7)`);
    return id;
  },
  async work(runtime, id) {
    const outcome = await revokeApiKey(runtime.database.db, id, new Date());
    if (outcome.status === "not_found") throw new CliError(`no API key with id "${id}"`);
    return outcome;
  },
  // Revoking a revoked key changes nothing, so records nothing.
  audit: (outcome) =>
    outcome.status === "revoked"
      ? { type: "apikey.revoked", subject: `apikey:${outcome.key.id}`, detail: { owner: outcome.key.owner } }
      : undefined,
  report: (outcome, id) =>
    outcome.status === "revoked" ? `revoked API key "${id}"` : `API key "${id}" was already revoked`,
});

/** The `apikey` subcommands, in the order the usage lists them. */
export const apiKeySubcommands = { create: apikeyCreate, list: apikeyList, revoke: apikeyRevoke };
