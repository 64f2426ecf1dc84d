/**
 * `protoguard service ...`: service accounts, the machine callers. Each is a
 * principal of kind `service` holding permissions like a user, with client
 * credentials for `AuthService/ServiceToken` and optionally a TLS client
 * identity. Secrets are printed once, as JSON, and stored only hashed.
 */
import type { Runtime } from "../runtime/runtime.js";
import { generateClientCredentials, generateClientSecret } from "../lifecycle/service-token.js";
import {
  canonicalTlsIdentity,
  createServiceAccount,
  deleteServiceAccount,
  listServiceAccounts,
  requireServiceId,
  rotateServiceSecret,
  setServiceActive,
  type ServiceAccountInfo,
} from "../store/service-accounts.js";
import { assertValidUsername, grantUserPermissions, revokeUserPermissions } from "../store/users.js";
import { defineStoreSubcommand, firstPositional, holderAndPermissions } from "./args.js";
import { UsageError } from "./errors.js";

/** Longest grace period `service rotate` accepts: 30 days, in seconds. */
const MAX_GRACE_SECONDS = 30 * 86_400;

/** A service account as the commands print it (snake_case, like the token JSON). */
function describe(account: ServiceAccountInfo) {
  return {
    name: account.name,
    id: account.id,
    client_id: account.clientId,
    tls_identity: account.tlsIdentity,
    active: account.isActive,
    permissions: account.permissions,
    created_at: account.createdAt.toISOString(),
    secret_rotated_at: account.secretRotatedAt.toISOString(),
    previous_secret_expires_at: account.previousSecretExpiresAt?.toISOString() ?? null,
  };
}

const name = firstPositional;

const serviceCreate = defineStoreSubcommand({
  usage: "service create <name> [--tls-identity SPIFFE_ID_OR_SUBJECT]",
  summary: "create a service account and print its client_id and client_secret as JSON (the secret only this once)",
  flags: { "tls-identity": "string" },
  positionals: { min: 1, max: 1, names: "<name>" },
  prepare({ positionals: [first], flags }) {
    assertValidUsername(first!);
    const tlsIdentity = flags["tls-identity"];
    if (tlsIdentity !== undefined) canonicalTlsIdentity(tlsIdentity);
    return { name: first!, tlsIdentity };
  },
  async work(runtime: Runtime, { name, tlsIdentity }) {
    const credentials = generateClientCredentials();
    const account = await createServiceAccount(runtime.database.db, {
      name,
      clientId: credentials.clientId,
      secretHash: await runtime.passwordHasher.hash(credentials.clientSecret),
      ...(tlsIdentity !== undefined && { tlsIdentity }),
    });
    return { account, clientSecret: credentials.clientSecret };
  },
  report: ({ account, clientSecret }) =>
    JSON.stringify(
      {
        name: account.name,
        id: account.id,
        client_id: account.clientId,
        client_secret: clientSecret,
        tls_identity: account.tlsIdentity,
      },
      null,
      2,
    ),
  // The client id is an identifier, not a secret; the secret is never recorded.
  audit: ({ account }) => ({
    type: "service.created",
    subject: `service:${account.name}`,
    detail: { id: account.id, clientId: account.clientId, tlsIdentity: account.tlsIdentity },
  }),
});

const serviceGrant = defineStoreSubcommand({
  usage: "service grant <name> <permission>...",
  summary: "grant app_label.codename permissions to a service account (all or nothing)",
  positionals: { min: 2, max: Infinity, names: "<name> <permission>..." },
  prepare: holderAndPermissions,
  async work(runtime, { name, perms }) {
    await requireServiceId(runtime.database.db, name);
    await grantUserPermissions(runtime.database.db, name, perms);
  },
  report: (_, { name, perms }) => `granted ${perms.join(", ")} to service "${name}"`,
  audit: (_, { name, perms }) => ({
    type: "permission.granted",
    subject: `service:${name}`,
    detail: { permissions: perms },
  }),
});

const serviceRevoke = defineStoreSubcommand({
  usage: "service revoke <name> <permission>...",
  summary: "remove permissions from a service account (grants through groups stay)",
  positionals: { min: 2, max: Infinity, names: "<name> <permission>..." },
  prepare: holderAndPermissions,
  async work(runtime, { name, perms }) {
    await requireServiceId(runtime.database.db, name);
    return revokeUserPermissions(runtime.database.db, name, perms);
  },
  report: (removed, { name }) => `revoked ${removed} grant${removed === 1 ? "" : "s"} from service "${name}"`,
  audit: (removed, { name, perms }) => ({
    type: "permission.revoked",
    subject: `service:${name}`,
    detail: { permissions: perms, removed },
  }),
});

const serviceRotate = defineStoreSubcommand({
  usage: "service rotate <name> [--grace SECONDS]",
  summary:
    "give a service account a new client secret (printed as JSON); the old one keeps working for --grace seconds " +
    "(default 0: it and the tokens issued with it stop at once)",
  flags: { grace: "string" },
  positionals: { min: 1, max: 1, names: "<name>" },
  prepare({ positionals: [first], flags }) {
    const raw = flags.grace ?? "0";
    const grace = Number(raw);
    if (!/^\d+$/.test(raw) || grace > MAX_GRACE_SECONDS) {
      throw new UsageError(`--grace must be a whole number of seconds from 0 to ${MAX_GRACE_SECONDS}, got "${raw}"`);
    }
    return { name: first!, grace };
  },
  async work(runtime, { name, grace }) {
    const clientSecret = generateClientSecret();
    const hash = await runtime.passwordHasher.hash(clientSecret);
    const account = await rotateServiceSecret(runtime.database.db, name, hash, grace);
    return { account, clientSecret };
  },
  report: ({ account, clientSecret }) =>
    JSON.stringify(
      {
        name: account.name,
        client_id: account.clientId,
        client_secret: clientSecret,
        previous_secret_expires_at: account.previousSecretExpiresAt?.toISOString() ?? null,
      },
      null,
      2,
    ),
  audit: ({ account }, { grace }) => ({
    type: "service.secret_rotated",
    subject: `service:${account.name}`,
    detail: { graceSeconds: grace, previousSecretExpiresAt: account.previousSecretExpiresAt?.toISOString() ?? null },
  }),
});

const serviceList = defineStoreSubcommand({
  usage: "service list",
  summary: "print every service account (no secrets) as a JSON array",
  positionals: { min: 0, max: 0, names: "no arguments" },
  prepare: () => undefined,
  work: (runtime) => listServiceAccounts(runtime.database.db),
  report: (accounts) => JSON.stringify(accounts.map(describe), null, 2),
});

const serviceDeactivate = defineStoreSubcommand({
  usage: "service deactivate <name>",
  summary: "disable a service account: its secret, certificate and outstanding tokens stop working",
  positionals: { min: 1, max: 1, names: "<name>" },
  prepare: name,
  work: (runtime, service) => setServiceActive(runtime.database.db, service, false),
  report: (_, service) => `deactivated service "${service}"`,
  audit: (_, service) => ({ type: "service.deactivated", subject: `service:${service}` }),
});

const serviceActivate = defineStoreSubcommand({
  usage: "service activate <name>",
  summary: "enable a deactivated service account again (tokens issued before stay dead)",
  positionals: { min: 1, max: 1, names: "<name>" },
  prepare: name,
  work: (runtime, service) => setServiceActive(runtime.database.db, service, true),
  report: (_, service) => `activated service "${service}"`,
  audit: (_, service) => ({ type: "service.activated", subject: `service:${service}` }),
});

const serviceDelete = defineStoreSubcommand({
  usage: "service delete <name>",
  summary: "delete a service account with its credentials and grants; its outstanding tokens stop working",
  positionals: { min: 1, max: 1, names: "<name>" },
  prepare: name,
  work: (runtime, service) => deleteServiceAccount(runtime.database.db, service),
  report: (_, service) => `deleted service "${service}"`,
  audit: (_, service) => ({ type: "service.deleted", subject: `service:${service}` }),
});

/** The `service` subcommands, in the order the usage lists them. */
export const serviceSubcommands = {
  create: serviceCreate,
  grant: serviceGrant,
  revoke: serviceRevoke,
  rotate: serviceRotate,
  list: serviceList,
  deactivate: serviceDeactivate,
  activate: serviceActivate,
  delete: serviceDelete,
};
