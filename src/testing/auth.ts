/**
 * The test auth kit: a throwaway user store, users with permissions and
 * groups, tokens minted for them, and Connect's in-memory transport wired
 * with the auth layer.
 */
import { randomBytes } from "node:crypto";
import type { ConnectRouter, Transport } from "@connectrpc/connect";
import { createRouterTransport } from "@connectrpc/connect";
import { createAuth, type Auth } from "../connect/auth.js";
import type { DecisionEvent } from "../decide/event.js";
import type { AuthorizeFallback, ResourceLoaders } from "../decide/app-callbacks.js";
import { servicesOf } from "../connect/routes.js";
import { AuthService } from "../../gen/protoguard/v1/auth_pb.js";
import { createAuthService, type AuthServiceOptions } from "../lifecycle/auth-service.js";
import { createPasswordHasher, type PasswordHasher } from "../lifecycle/passwords.js";
import type { RuleInit } from "../policy/rule.js";
import { createPrincipalSource, type CachedPrincipalSource } from "../principals/source.js";
import { createApiKeySource, type CachedApiKeySource } from "../principals/api-keys.js";
import { mintApiKey, type MintedApiKey } from "../lifecycle/api-keys.js";
import type { Database } from "../store/database-handle.js";
import type { User } from "../store/schema.js";
import { addUsersToGroup, createGroup, createUser, grantUserPermissions, type PublicUser } from "../store/users.js";
import { StoreError } from "../store/errors.js";
import { createKeyring, type KeyConfig, type Keyring } from "../token/keys.js";
import { createTokenIssuer, type TokenIssuer } from "../token/issuer.js";
import { createTokenVerifier, type TokenVerifier } from "../token/verifier.js";
import { createTestDatabase, type TestDatabase } from "./database.js";

/** Options for {@link createTestAuth}. */
export interface TestAuthOptions {
  /** Registers your services, exactly as for `connectNodeAdapter({ routes })`. Required. */
  routes: (router: ConnectRouter) => void;
  /**
   * The store to use. Default: a fresh, migrated in-memory PGlite, which
   * this fixture opened and so `close()` closes.
   *
   * A database you pass stays yours: `close()` leaves it open (several
   * fixtures may share one), so close it yourself, after the fixture, or
   * open both with `await using`. A `createTestDatabase` database nobody
   * closed still lets the process end and is dropped at exit.
   */
  database?: Database;
  /** Rule for unannotated methods. Default: `{ authenticated: true }`. */
  defaultRule?: RuleInit;
  /** Signing keys. Default: one HS256 key with a random 32-byte secret. */
  keys?: readonly KeyConfig[];
  /** Clock in milliseconds for issuing and verifying. Default: `Date.now`. */
  now?: () => number;
  /** Most cached user lookups; 0 disables the cache. Default: 10000. */
  principalCacheEntries?: number;
  /**
   * Password hasher for `createUser({ password })`. Default: scrypt at
   * logN 14, cheap enough for tests; production uses the full cost.
   */
  passwordHasher?: PasswordHasher;
  /** Observe decisions (for assertions on logs or metrics). Default: none. */
  onDecision?: (event: DecisionEvent) => void;
  /** Resource loaders for rule conditions, as for `createAuth`. Default: none. */
  resources?: ResourceLoaders;
  /** The `authorize` code fallback, as for `createAuth`. Default: none. */
  authorize?: AuthorizeFallback;
  /**
   * Serve `protoguard.v1.AuthService` too (Login, Refresh, Logout, WhoAmI),
   * wired to this fixture's database, issuer, verifier and password hasher:
   * `true`, or a function returning options to change (a counting hasher, a
   * clock, another verifier) given those parts. Default: not served.
   */
  authService?: boolean | ((parts: TestAuthServiceParts) => Partial<AuthServiceOptions>);
}

/** What {@link TestAuthOptions.authService} is given to build its overrides from. */
export interface TestAuthServiceParts {
  readonly database: Database;
  readonly issuer: TokenIssuer;
  readonly verifier: TokenVerifier;
  readonly passwordHasher: PasswordHasher;
}

/** A user to create in a test. */
export interface TestUserInit {
  username: string;
  email?: string;
  /** Hashed with the test hasher; default: no usable password. */
  password?: string;
  isStaff?: boolean;
  isSuperuser?: boolean;
  isActive?: boolean;
  /** Granted directly, `app_label.codename`. */
  permissions?: readonly string[];
  /** Groups to join; created when missing. */
  groups?: readonly string[];
}

/** The wired-up test fixture returned by {@link createTestAuth}. */
export interface TestAuth extends AsyncDisposable {
  readonly database: Database;
  readonly keyring: Keyring;
  readonly issuer: TokenIssuer;
  readonly verifier: TokenVerifier;
  readonly principals: CachedPrincipalSource;
  /** Resolves API keys (`Bearer pgk_…`) for the auth layer, following the principal source's invalidations. */
  readonly apiKeys: CachedApiKeySource;
  readonly auth: Auth;
  readonly passwordHasher: PasswordHasher;
  /** The in-memory transport: pass it to `createClient(Service, transport)`. */
  readonly transport: Transport;
  /** Creates a user with optional password, permissions and groups; the result carries no secrets. */
  createUser(init: TestUserInit): Promise<PublicUser>;
  /** Mints a valid access token for `user` (the `RefreshToken.for_user(user).access_token` of simplejwt). */
  accessToken(user: Pick<User, "id"> | number): Promise<string>;
  /** `{ authorization: "Bearer …" }` for `user`, to pass as call headers. */
  authHeaders(user: Pick<User, "id"> | number): Promise<{ authorization: string }>;
  /**
   * Makes an API key for `user` limited to `scopes` (each one the user holds), as
   * `protoguard apikey create` does; send `minted.key` as `authorization: Bearer <key>`.
   */
  createApiKey(
    user: Pick<User, "id"> | number,
    init: { scopes: readonly string[]; name?: string; lifetimeSeconds?: number },
  ): Promise<MintedApiKey>;
  /**
   * Releases what this fixture opened: its invalidation listener (a
   * connection of its own on PostgreSQL) and the database if it created one.
   * A database passed in `options.database` stays open: it is the caller's.
   * `await using t = await createTestAuth(…)` calls this at the end of the
   * scope. Safe to call more than once.
   */
  close(): Promise<void>;
}

/**
 * Creates an auth-enabled in-memory server for tests.
 *
 * @example
 * ```ts
 * const t = await createTestAuth({ routes: (r) => r.service(AccountService, impl) });
 * const alice = await t.createUser({ username: "alice", permissions: ["shop.view_order"] });
 * const client = createClient(AccountService, t.transport);
 * const profile = await client.getProfile({}, { headers: await t.authHeaders(alice) });
 * await t.close(); // or: await using t = await createTestAuth(…)
 * ```
 */
export async function createTestAuth(options: TestAuthOptions): Promise<TestAuth> {
  const ownDatabase: TestDatabase | undefined = options.database ? undefined : await createTestDatabase();
  const database = options.database ?? ownDatabase!;
  try {
    const keyring = await createKeyring(options.keys ?? [{ alg: "HS256", secret: randomBytes(32) }]);
    const now = options.now;
    const issuer = createTokenIssuer({ keyring, now });
    const verifier = createTokenVerifier({
      keyring,
      maxLifetimeSeconds: { access: issuer.accessTtlSeconds, refresh: issuer.refreshTtlSeconds },
      now,
    });
    const principals = await createPrincipalSource({
      database,
      maxEntries: options.principalCacheEntries,
    });
    const apiKeys = createApiKeySource({
      database,
      onInvalidation: (listener) => principals.onInvalidation(listener),
      ...(options.principalCacheEntries !== undefined && { maxEntries: options.principalCacheEntries }),
      ...(now !== undefined && { now }),
    });
    const passwordHasher = options.passwordHasher ?? createPasswordHasher({ scrypt: { logN: 14 } });
    const routes = withAuthService(options, { database, issuer, verifier, passwordHasher });
    const services = servicesOf(routes);
    const auth = createAuth({
      verifier,
      principals,
      apiKeys,
      services,
      defaultRule: options.defaultRule,
      onDecision: options.onDecision,
      ...(options.resources !== undefined && { resources: options.resources }),
      ...(options.authorize !== undefined && { authorize: options.authorize }),
    });
    const transport = createRouterTransport(routes, {
      router: { interceptors: [auth.interceptor], requestGate: auth.requestGate },
    });
    const db = database.db;

    const idOf = (user: Pick<User, "id"> | number) => (typeof user === "number" ? user : user.id);
    const accessToken = async (user: Pick<User, "id"> | number) => (await issuer.issueAccess(idOf(user))).token;
    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        try {
          apiKeys.close();
          await principals.close();
        } finally {
          await ownDatabase?.close();
        }
      })());

    return {
      database,
      keyring,
      issuer,
      verifier,
      principals,
      apiKeys,
      auth,
      passwordHasher,
      transport,
      accessToken,
      createApiKey: (user, init) =>
        mintApiKey(database, {
          owner: idOf(user),
          scopes: init.scopes,
          name: init.name,
          lifetimeSeconds: init.lifetimeSeconds,
          ...(now !== undefined && { now }),
        }),
      async authHeaders(user) {
        return { authorization: `Bearer ${await accessToken(user)}` };
      },
      async createUser(init) {
        const user = await createUser(db, {
          username: init.username,
          email: init.email,
          passwordHash: init.password === undefined ? undefined : await passwordHasher.hash(init.password),
          isStaff: init.isStaff,
          isSuperuser: init.isSuperuser,
          isActive: init.isActive,
        });
        if (init.permissions?.length) await grantUserPermissions(db, user.username, init.permissions);
        for (const group of init.groups ?? []) {
          await createGroup(db, group).catch((error: unknown) => {
            if (!(error instanceof StoreError && error.code === "DUPLICATE_GROUP")) throw error;
          });
          await addUsersToGroup(db, group, [user.username]);
        }
        return user;
      },
      close,
      [Symbol.asyncDispose]: close,
    };
  } catch (error) {
    await ownDatabase?.close();
    throw error;
  }
}

/** `options.routes`, plus AuthService over `parts` when asked for. */
function withAuthService(options: TestAuthOptions, parts: TestAuthServiceParts): (router: ConnectRouter) => void {
  if (options.authService === undefined || options.authService === false) return options.routes;
  const overrides = options.authService === true ? {} : options.authService(parts);
  const service = createAuthService({ ...parts, ...overrides });
  return (router) => {
    options.routes(router);
    router.service(AuthService, service);
  };
}
