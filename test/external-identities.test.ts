// The external_identities store: provisioning on first sight holds under concurrency (one user
// per subject, whichever call or instance wins), never takes over a local account by name, and
// links made by an admin are unique. On PGlite always; on PostgreSQL when DATABASE_URL is set.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { eq } from "drizzle-orm";
import {
  createUser,
  findExternalIdentity,
  linkExternalIdentity,
  provisionExternalUser,
  StoreError,
  unlinkExternalIdentity,
} from "../src/exports/store.js";
import { externalIdentities, users } from "../src/store/schema.js";
import { createTestDatabase, type TestDatabase } from "../src/exports/testing.js";
import { describeOr, postgresUrl, skipWithoutPostgres } from "./helpers/env.js";

const ISSUER = "https://idp.example.com/";

function suite(open: () => Promise<TestDatabase>) {
  let database: TestDatabase;
  before(async () => {
    database = await open();
  });
  after(() => database?.close());

  it("concurrent first sightings of one subject make exactly one user and one link", async () => {
    const init = { issuer: ISSUER, subject: "auth0|race", username: "racer", email: "racer@example.com" };
    const ids = await Promise.all(Array.from({ length: 8 }, () => provisionExternalUser(database.db, init)));
    assert.equal(new Set(ids).size, 1, `one id for all: ${ids.join(",")}`);
    const rows = await database.db
      .select()
      .from(externalIdentities)
      .where(eq(externalIdentities.subject, "auth0|race"));
    assert.equal(rows.length, 1);
    const named = await database.db.select().from(users).where(eq(users.email, "racer@example.com"));
    assert.equal(named.length, 1, "the losers' users were rolled back");
    assert.equal(named[0]!.id, ids[0]);
  });

  it("never takes a local account's name; odd characters become _; no name uses the subject", async () => {
    await createUser(database.db, { username: "dora" });
    const id = await provisionExternalUser(database.db, { issuer: ISSUER, subject: "s-1", username: "dora" });
    const [row] = await database.db.select().from(users).where(eq(users.id, id));
    assert.match(row!.username, /^dora_[0-9a-f]{10}$/);
    assert.equal(row!.credentialsChangedAt.getTime(), 0, "tokens issued before first sight are not revoked");
    const odd = await provisionExternalUser(database.db, { issuer: ISSUER, subject: "google-oauth2|1 2/3" });
    const [oddRow] = await database.db.select().from(users).where(eq(users.id, odd));
    assert.equal(oddRow!.username, "google-oauth2_1_2_3");
  });

  it("links an existing user once; unlinking keeps the user", async () => {
    const eve = await createUser(database.db, { username: "eve" });
    await linkExternalIdentity(database.db, ISSUER, "eve-sub", "eve");
    assert.equal(await findExternalIdentity(database.db, ISSUER, "eve-sub"), eve.id);
    await assert.rejects(
      linkExternalIdentity(database.db, ISSUER, "eve-sub", "eve"),
      (error: unknown) => error instanceof StoreError && error.code === "DUPLICATE_LINK",
    );
    await assert.rejects(
      linkExternalIdentity(database.db, ISSUER, "x", "nobody"),
      (error: unknown) => error instanceof StoreError && error.code === "USER_NOT_FOUND",
    );
    assert.equal(await unlinkExternalIdentity(database.db, ISSUER, "eve-sub"), true);
    assert.equal(await findExternalIdentity(database.db, ISSUER, "eve-sub"), undefined);
    assert.equal((await database.db.select().from(users).where(eq(users.id, eve.id))).length, 1);
  });
}

describe("external identities on PGlite", { timeout: 60_000 }, () => suite(() => createTestDatabase()));

describeOr(skipWithoutPostgres, "external identities on PostgreSQL", { timeout: 60_000 }, () =>
  suite(() => createTestDatabase({ driver: "postgres", url: postgresUrl! })),
);
