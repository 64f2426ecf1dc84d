// Issue 19 item 6: provisioning cannot be made to fail for good by another subject's choice of
// name. An IdP user who may pick `preferred_username` takes the names a future victim's
// provisioning would fall back to (`<name>_<hash of iss and sub>`, in both lengths); the victim is
// still provisioned, as a user of its own whose name starts with its chosen one, and the squatters
// keep theirs. Through the store's public API on PGlite (and PostgreSQL when DATABASE_URL is set).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { eq } from "drizzle-orm";
import { createUser, findExternalIdentity, provisionExternalUser } from "../src/exports/store.js";
import { users } from "../src/store/schema.js";
import { createTestDatabase, type TestDatabase } from "../src/exports/testing.js";
import { postgresUrl } from "./helpers/env.js";

const ISSUER = "https://idp.example.com/";

for (const backend of ["pglite", "postgres"] as const) {
  describe(`provisioning username squat (${backend})`, {
    skip: backend === "postgres" && postgresUrl === undefined && "DATABASE_URL not set: PostgreSQL part skipped",
    timeout: 60_000,
  }, () => {
    let database: TestDatabase;
    before(async () => {
      database = backend === "postgres" ? await createTestDatabase({ url: postgresUrl! }) : await createTestDatabase();
    });
    after(() => database?.close());

    it("the victim is provisioned whatever names the squatters took", async () => {
      const victim = "victim-sub";
      const hash = createHash("sha256").update(`${ISSUER}\n${victim}`).digest("hex");
      // The plain name is a local account; the derived fallbacks are taken by other IdP users.
      await createUser(database.db, { username: "victim" });
      const squatters = [];
      for (const [i, name] of [`victim_${hash.slice(0, 10)}`, `victim_${hash.slice(0, 20)}`].entries()) {
        const id = await provisionExternalUser(database.db, {
          issuer: ISSUER,
          subject: `squatter-${i}`,
          username: name,
        });
        const [row] = await database.db.select().from(users).where(eq(users.id, id));
        assert.equal(row!.username, name, "the squatter got the name it chose");
        squatters.push(id);
      }
      const id = await provisionExternalUser(database.db, { issuer: ISSUER, subject: victim, username: "victim" });
      assert.ok(!squatters.includes(id));
      const [row] = await database.db.select().from(users).where(eq(users.id, id));
      assert.match(row!.username, /^victim_[0-9a-f]{16}$/);
      assert.equal(await findExternalIdentity(database.db, ISSUER, victim), id);
      // Stable afterwards: the link decides, not the name.
      assert.equal(
        await provisionExternalUser(database.db, { issuer: ISSUER, subject: victim, username: "victim" }),
        id,
      );
    });
  });
}
