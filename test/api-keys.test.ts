/**
 * Scoped API keys through the public API: minted in the store (as `protoguard apikey create`
 * does) or by AuthService, presented as `authorization: Bearer pgk_<id>_<secret>`, resolved to
 * their owner with the owner's permissions intersected with the key's scopes at call time.
 * Runs on PGlite, and on PostgreSQL with two instances sharing one database when
 * DATABASE_URL is set (changes and revocations must reach the other instance too).
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, createClient, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { KindService } from "../gen/guardtest/v1/kinds_pb.js";
import { getPrincipal } from "../src/exports/protoguard.js";
import { describeRule, parseAuthorization, parseApiKey, planRule } from "../src/exports/core.js";
import { RuleSchema } from "../gen/protoguard/v1/options_pb.js";
import { create } from "@bufbuild/protobuf";
import { AuthService, ApiKeyError, mintApiKey, parseApiKeyLifetime } from "../src/exports/auth-service.js";
import {
  findApiKey,
  listApiKeys,
  revokeApiKey,
  revokeUserPermissions,
  grantUserPermissions,
  setUserActive,
} from "../src/exports/store.js";
import { createTestAuth, createTestDatabase, type TestAuth, type TestDatabase } from "../src/exports/testing.js";
import { bearer, collect, expectError, failure } from "./helpers/connect.js";
import { postgresUrl } from "./helpers/env.js";
import { assertOk, cleanEnv, runCliCaptured } from "./helpers/cli.js";

/** Handlers that say who called and with which permissions. */
function kindRoutes(router: ConnectRouter): void {
  const who = (_req: { text: string }, ctx: HandlerContext) => {
    const principal = getPrincipal(ctx);
    const perms = [...(principal?.permissions ?? [])].sort().join(",");
    return { text: `key=${principal?.apiKey?.id ?? "-"} perms=${perms}`, username: principal?.username ?? "" };
  };
  router.service(KindService, {
    forUsers: who,
    forServices: who,
    chargeForServices: who,
    authenticated: who,
    charge: who,
    public: who,
    async *follow(req, ctx) {
      yield who(req, ctx);
      await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
    },
  });
}

/**
 * The clock of both instances: real time plus `offset`, moved forward by the tests of expiry
 * and last-used marks (tokens issued meanwhile must still postdate their user's creation).
 */
let offset = 0;
const now = () => Date.now() + offset;

async function fixture(database?: TestDatabase): Promise<TestAuth> {
  return createTestAuth({ routes: kindRoutes, authService: true, now, ...(database !== undefined && { database }) });
}

describe("API key credential shape", () => {
  const key = `pgk_abcdefghijkl_${"A".repeat(43)}`;
  it("tells a key from a JWT by its shape alone, and refuses near-misses as malformed", () => {
    assert.deepEqual(parseAuthorization(`Bearer ${key}`), {
      kind: "api_key",
      key: { id: "abcdefghijkl", secret: "A".repeat(43) },
    });
    assert.equal(parseAuthorization("Bearer a.b.c").kind, "token");
    for (const bad of [
      "pgk_abcdefghijkl",
      `pgk_abcdefghijk_${"A".repeat(44)}`, // id one short
      `pgk_ABCDEFGHIJKL_${"A".repeat(43)}`, // id outside base32 lower case
      `pgk_abcdefghijkl-${"A".repeat(43)}`, // wrong separator
      `pgk_abcdefghijkl_${"A".repeat(42)}.`, // a dot in the secret
      `${key}A`, // too long
    ]) {
      assert.equal(parseAuthorization(`Bearer ${bad}`).kind, "malformed", bad);
    }
    assert.equal(parseApiKey(key)?.id, "abcdefghijkl");
  });

  it("plans api_keys: false, leaves rules without it unchanged, and describes it", () => {
    const refusing = planRule(create(RuleSchema, { authenticated: true, apiKeys: false }));
    assert.ok(!("problems" in refusing));
    assert.equal(refusing.apiKeys, false);
    assert.equal(describeRule(refusing), "authenticated; api_keys: false");
    const accepting = planRule(create(RuleSchema, { authenticated: true, apiKeys: true }));
    assert.ok(!("problems" in accepting) && !("apiKeys" in accepting));
    assert.deepEqual(planRule({ authenticated: true }), planRule(create(RuleSchema, { authenticated: true })));
    const publicRefusing = planRule({ public: true, apiKeys: false });
    assert.ok(!("problems" in publicRefusing) && publicRefusing.apiKeys === false);
  });

  it("reads key lifetimes like 30d and refuses nonsense", () => {
    assert.equal(parseApiKeyLifetime("30d"), 30 * 86_400);
    assert.equal(parseApiKeyLifetime("720h"), 720 * 3600);
    for (const bad of ["", "0s", "30", "1y", "-1d", "3651d", "1.5h"]) {
      assert.throws(
        () => parseApiKeyLifetime(bad),
        (e: unknown) => e instanceof ApiKeyError && e.code === "INVALID_LIFETIME",
        bad,
      );
    }
  });
});

for (const backend of ["pglite", "postgres"] as const) {
  const skip = backend === "postgres" && postgresUrl === undefined;
  describe(`API keys (${backend})`, {
    skip: skip && "DATABASE_URL not set: PostgreSQL part skipped",
    timeout: 180_000,
  }, () => {
    let db: TestDatabase;
    /** The instance calls go to. */
    let a: TestAuth;
    /** A second instance on the same database (PostgreSQL only; on PGlite the same as `a`). */
    let b: TestAuth;
    const instances = () => (a === b ? [a] : [a, b]);
    let counter = 0;

    before(async () => {
      db = await createTestDatabase(backend === "postgres" ? { url: postgresUrl } : {});
      a = await fixture(db);
      b = backend === "postgres" ? await fixture(db) : a;
    });
    after(async () => {
      if (b !== a) await b?.close();
      await a?.close();
      await db?.close();
    });

    const kinds = (t: TestAuth) => createClient(KindService, t.transport);
    const authService = (t: TestAuth) => createClient(AuthService, t.transport);

    async function owner(permissions: string[] = ["billing.charge", "shop.view_order"], extra: object = {}) {
      return a.createUser({ username: `owner${++counter}`, permissions, ...extra });
    }

    /**
     * Runs a write and waits until every instance has heard the database announce `userId`
     * (PostgreSQL: a moment after the commit), so the next call cannot race the notification.
     */
    async function announced<T>(userId: number, write: () => Promise<T>): Promise<T> {
      const heard = instances().map(
        (t) =>
          new Promise<() => void>((resolve) => {
            const stop = t.principals.onInvalidation((event) => {
              if (event.kind === "all" || (event.kind === "user" && event.userId === userId)) resolve(stop);
            });
          }),
      );
      const result = await write();
      for (const stop of await Promise.all(heard)) stop();
      return result;
    }

    it("a key calls with its owner's permissions intersected with its scopes, on every instance", async () => {
      const alice = await owner(["billing.charge", "shop.view_order"], { isStaff: true });
      const { key, info } = await a.createApiKey(alice, { scopes: ["shop.view_order"], name: "ci" });
      assert.match(key, /^pgk_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$/);
      assert.equal(info.owner, alice.username);
      for (const t of instances()) {
        const pong = await kinds(t).authenticated({ text: "" }, bearer(key));
        assert.equal(pong.text, `key=${info.id} perms=shop.view_order`);
        // billing.charge is the owner's, but outside the key's scopes.
        await expectError(kinds(t).charge({ text: "" }, bearer(key)), Code.PermissionDenied, "PERMISSION_MISSING");
        const me = await authService(t).whoAmI({}, bearer(key));
        assert.deepEqual(me.permissions, ["shop.view_order"]);
        assert.equal(me.isStaff, false, "staff status is not carried by a key");
      }
      const charging = await a.createApiKey(alice, { scopes: ["billing.charge"] });
      assert.match((await kinds(b).charge({ text: "" }, bearer(charging.key))).text, /perms=billing.charge$/);
    });

    it("a scope the owner lacks is refused when the key is made (store and AuthService)", async () => {
      const bob = await owner(["shop.view_order"]);
      await assert.rejects(
        mintApiKey(a.database, { owner: bob.id, scopes: ["billing.charge"] }),
        (e: unknown) => e instanceof ApiKeyError && e.code === "SCOPE_NOT_HELD",
      );
      const token = await a.accessToken(bob);
      await expectError(
        authService(a).createApiKey({ scopes: ["billing.charge"] }, bearer(token)),
        Code.PermissionDenied,
        "PERMISSION_MISSING",
      );
      const malformed = await failure(authService(a).createApiKey({ scopes: ["not a permission"] }, bearer(token)));
      assert.equal(malformed.code, Code.InvalidArgument);
      assert.deepEqual(await listApiKeys(a.database.db, bob.id), []);
    });

    it("AuthService creates, lists and revokes the caller's own keys; a key may list but not mint or revoke", async () => {
      const carol = await owner(["shop.view_order"]);
      const token = await a.accessToken(carol);
      const made = await authService(a).createApiKey(
        { scopes: ["shop.view_order"], name: "laptop", expiresIn: "30d" },
        bearer(token),
      );
      assert.equal(made.apiKey?.name, "laptop");
      assert.ok(made.apiKey?.expiresAt !== undefined);
      const listed = await authService(a).listApiKeys({}, bearer(made.key));
      assert.deepEqual(
        listed.apiKeys.map((k) => [k.id, k.scopes]),
        [[made.apiKey!.id, ["shop.view_order"]]],
      );
      const before = a.apiKeys.lookups;
      // api_keys: false on CreateApiKey and RevokeApiKey: refused by shape, with no look-up.
      await expectError(
        authService(a).createApiKey({ scopes: [] }, bearer(made.key)),
        Code.Unauthenticated,
        "API_KEY_NOT_ALLOWED",
      );
      await expectError(
        authService(a).revokeApiKey({ id: made.apiKey!.id }, bearer(made.key)),
        Code.Unauthenticated,
        "API_KEY_NOT_ALLOWED",
      );
      assert.equal(a.apiKeys.lookups, before);
      // Someone else's key is not found.
      const dave = await owner(["shop.view_order"]);
      const other = await failure(
        authService(a).revokeApiKey({ id: made.apiKey!.id }, bearer(await a.accessToken(dave))),
      );
      assert.equal(other.code, Code.NotFound);
      await announced(carol.id, () => authService(a).revokeApiKey({ id: made.apiKey!.id }, bearer(token)));
      for (const t of instances()) {
        await expectError(
          kinds(t).authenticated({ text: "" }, bearer(made.key)),
          Code.Unauthenticated,
          "TOKEN_REVOKED",
        );
      }
      assert.deepEqual((await authService(a).listApiKeys({}, bearer(token))).apiKeys, []);
    });

    it("an owner losing a permission takes it from the key at once, on every instance", async () => {
      const erin = await owner(["billing.charge"]);
      const { key } = await a.createApiKey(erin, { scopes: ["billing.charge"] });
      for (const t of instances()) await kinds(t).charge({ text: "" }, bearer(key)); // warm both caches
      await announced(erin.id, () => revokeUserPermissions(a.database.db, erin.username, ["billing.charge"]));
      for (const t of instances()) {
        await expectError(kinds(t).charge({ text: "" }, bearer(key)), Code.PermissionDenied, "PERMISSION_MISSING");
      }
      // Given back, the scope works again: the key was never changed, only its owner.
      await announced(erin.id, () => grantUserPermissions(a.database.db, erin.username, ["billing.charge"]));
      for (const t of instances()) await kinds(t).charge({ text: "" }, bearer(key));
    });

    it("a deactivated owner's keys are refused on every instance", async () => {
      const fay = await owner(["billing.charge"]);
      const { key } = await a.createApiKey(fay, { scopes: ["billing.charge"] });
      for (const t of instances()) await kinds(t).charge({ text: "" }, bearer(key));
      await announced(fay.id, () => setUserActive(a.database.db, fay.username, false));
      for (const t of instances()) {
        await expectError(kinds(t).charge({ text: "" }, bearer(key)), Code.Unauthenticated, "USER_INACTIVE");
      }
    });

    it("a revoked key is refused on every instance, and its refusal is cached", async () => {
      const gus = await owner(["billing.charge"]);
      const { key, info } = await a.createApiKey(gus, { scopes: ["billing.charge"] });
      for (const t of instances()) await kinds(t).charge({ text: "" }, bearer(key));
      const outcome = await announced(gus.id, () => revokeApiKey(a.database.db, info.id, new Date()));
      assert.equal(outcome.status, "revoked");
      for (const t of instances()) {
        await expectError(kinds(t).charge({ text: "" }, bearer(key)), Code.Unauthenticated, "TOKEN_REVOKED");
        const lookups = t.apiKeys.lookups;
        await expectError(kinds(t).charge({ text: "" }, bearer(key)), Code.Unauthenticated, "TOKEN_REVOKED");
        assert.equal(t.apiKeys.lookups, lookups, "the second refusal costs no look-up");
      }
      assert.equal((await revokeApiKey(a.database.db, info.id, new Date())).status, "already_revoked");
    });

    it("an expired key is refused", async () => {
      const hal = await owner(["billing.charge"]);
      const { key } = await a.createApiKey(hal, { scopes: ["billing.charge"], lifetimeSeconds: 60 });
      await kinds(a).charge({ text: "" }, bearer(key));
      offset += 61_000;
      try {
        await expectError(kinds(a).charge({ text: "" }, bearer(key)), Code.Unauthenticated, "TOKEN_EXPIRED");
      } finally {
        offset -= 61_000;
      }
    });

    it("malformed keys, unknown ids and wrong secrets are refused cleanly, the unknown id with no look-up the second time", async () => {
      const ida = await owner(["billing.charge"]);
      const { key, info } = await a.createApiKey(ida, { scopes: ["billing.charge"] });
      await expectError(kinds(a).charge({ text: "" }, bearer("pgk_short")), Code.Unauthenticated, "TOKEN_MALFORMED");
      const unknown = `pgk_${"a".repeat(12)}_${"B".repeat(43)}`;
      await expectError(kinds(a).charge({ text: "" }, bearer(unknown)), Code.Unauthenticated, "TOKEN_INVALID");
      const lookups = a.apiKeys.lookups;
      await expectError(kinds(a).charge({ text: "" }, bearer(unknown)), Code.Unauthenticated, "TOKEN_INVALID");
      assert.equal(a.apiKeys.lookups, lookups, "the unknown id is answered from the negative cache");
      // The right id with a wrong secret: the same answer as an unknown id.
      const wrong = `pgk_${info.id}_${"C".repeat(43)}`;
      await expectError(kinds(a).charge({ text: "" }, bearer(wrong)), Code.Unauthenticated, "TOKEN_INVALID");
      // A respelled secret (one character changed) is another secret.
      const respelled = key.slice(0, -1) + (key.endsWith("A") ? "B" : "A");
      await expectError(kinds(a).charge({ text: "" }, bearer(respelled)), Code.Unauthenticated, "TOKEN_INVALID");
      await kinds(a).charge({ text: "" }, bearer(key));
    });

    it("last use is kept coarse: at most one write a minute per key", async () => {
      const jan = await owner(["billing.charge"]);
      const { key, info } = await a.createApiKey(jan, { scopes: ["billing.charge"] });
      const touches = a.apiKeys.touches;
      for (let i = 0; i < 5; i++) await kinds(a).charge({ text: "" }, bearer(key));
      assert.equal(a.apiKeys.touches, touches + 1);
      const first = await waitForLastUsed(info.id, undefined);
      assert.ok(Math.abs(first - now()) < 5_000);
      offset += 30_000;
      try {
        await kinds(a).charge({ text: "" }, bearer(key));
        assert.equal(a.apiKeys.touches, touches + 1, "within the minute: no write");
        offset += 31_000;
        await kinds(a).charge({ text: "" }, bearer(key));
        assert.equal(a.apiKeys.touches, touches + 2);
        assert.ok((await waitForLastUsed(info.id, first)) >= first + 60_000);
      } finally {
        offset -= 61_000;
      }
    });

    /** The key's last_used_at once it differs from `previous` (the write is in the background). */
    async function waitForLastUsed(id: string, previous: number | undefined): Promise<number> {
      for (let i = 0; i < 100; i++) {
        const [row] = (await listApiKeys(a.database.db)).filter((k) => k.id === id);
        const at = row?.lastUsedAt?.getTime();
        if (at !== undefined && at !== previous) return at;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.fail("last_used_at was never written");
    }

    it("an open stream on a key ends when the key is revoked", async () => {
      const kim = await owner(["billing.charge"]);
      const { key, info } = await a.createApiKey(kim, { scopes: ["billing.charge"] });
      const controller = new AbortController();
      const stream = kinds(b).follow({ text: "" }, { ...bearer(key), signal: controller.signal });
      const iterator = stream[Symbol.asyncIterator]();
      const first = await iterator.next();
      assert.match(first.value?.text ?? "", /perms=billing.charge/);
      await revokeApiKey(a.database.db, info.id, new Date());
      await expectError(collect({ [Symbol.asyncIterator]: () => iterator }), Code.Unauthenticated, "TOKEN_REVOKED");
      controller.abort();
    });

    it("keeps only the hash of the secret", async () => {
      const lee = await owner(["billing.charge"]);
      const { key, info } = await a.createApiKey(lee, { scopes: ["billing.charge"] });
      const record = await findApiKey(a.database.db, info.id);
      const secret = key.slice(-43);
      assert.ok(record !== undefined);
      assert.match(record.secretHash, /^[0-9a-f]{64}$/);
      assert.ok(!JSON.stringify(record).includes(secret));
    });
  });
}

describe("protoguard apikey", { timeout: 180_000 }, () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoguard-apikey-"));
    env = cleanEnv({ PROTOGUARD_DATA_DIR: join(dir, "data") });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const cli = (...args: string[]) => runCliCaptured(args, env);

  it("creates a key once, refuses a scope the owner lacks, lists without secrets, and revokes", async () => {
    assertOk(await cli("user", "create", "alice", "--password", "pw-alice-1"));
    assertOk(await cli("user", "grant", "alice", "shop.view_order", "shop.change_order"));
    const created = await cli(
      "apikey",
      "create",
      "alice",
      "--scope",
      "shop.view_order",
      "--scope",
      "shop.change_order",
      "--expires",
      "30d",
      "--name",
      "ci",
    );
    assertOk(created);
    const made = JSON.parse(created.stdout) as { key: string; id: string; scopes: string[]; expires_at: string };
    assert.match(made.key, /^pgk_[a-z2-7]{12}_/);
    assert.equal(made.key.slice(4, 16), made.id);
    assert.deepEqual(made.scopes, ["shop.change_order", "shop.view_order"]);
    assert.ok(Date.parse(made.expires_at) > Date.now() + 29 * 86_400_000);

    const refused = await cli("apikey", "create", "alice", "--scope", "billing.charge");
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /does not hold billing\.charge/);
    const usage = await cli("apikey", "create", "alice", "--scope", "shop.view_order", "--expires", "soon");
    assert.equal(usage.code, 2);

    const listed = await cli("apikey", "list", "alice");
    assertOk(listed);
    assert.ok(!listed.stdout.includes(made.key.slice(17)), "no secret is listed");
    assert.deepEqual(
      (JSON.parse(listed.stdout) as { id: string; revoked_at: string | null }[]).map((k) => [k.id, k.revoked_at]),
      [[made.id, null]],
    );
    const revoked = await cli("apikey", "revoke", made.id);
    assertOk(revoked);
    assert.match(revoked.stdout, /revoked API key/);
    const after = JSON.parse((await cli("apikey", "list")).stdout) as { revoked_at: string | null }[];
    assert.ok(after[0]?.revoked_at !== null);
    assert.equal((await cli("apikey", "revoke", "aaaaaaaaaaaa")).code, 1);
  });
});
