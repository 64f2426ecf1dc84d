/**
 * The AuthService's security events (refresh-token reuse, a respelled twin, logout) reach
 * `onSecurityEvent` one by one, committed, and are never budgeted like refusals.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, createClient } from "@connectrpc/connect";
import { AuthService } from "../gen/protoguard/v1/auth_pb.js";
import { createPasswordHasher, type SecurityEvent } from "../src/exports/auth-service.js";
import { createTestAuth, type TestAuth } from "../src/exports/testing.js";
import { expectError } from "./helpers/connect.js";

/** The same token with the spare bits of its last character set: decoders read the same bytes. */
function twinOf(token: string): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const last = alphabet.indexOf(token.at(-1)!);
  return token.slice(0, -1) + alphabet[last | 1];
}

describe("security events of the AuthService", { timeout: 120_000 }, () => {
  let t: TestAuth;
  const events: SecurityEvent[] = [];

  before(async () => {
    const passwordHasher = createPasswordHasher({ scrypt: { logN: 10 } });
    t = await createTestAuth({
      passwordHasher,
      routes: () => {},
      // A reuse as such: the reuse grace window (refresh-grace.test.ts) is off here.
      authService: () => ({ onSecurityEvent: (event) => events.push(event), refreshReuseGraceSeconds: 0 }),
    });
  });
  after(() => t?.close());

  it("a reused refresh token, a respelled twin and a logout are each reported with the user and family", async () => {
    const client = createClient(AuthService, t.transport);
    const grace = await t.createUser({ username: "grace", password: "grace-password" });

    const first = await client.login({ username: "grace", password: "grace-password" });
    await client.refresh({ refreshToken: first.refreshToken });
    assert.equal(events.length, 0, "a rotation is no event");
    await expectError(client.refresh({ refreshToken: first.refreshToken }), Code.Unauthenticated, "TOKEN_REVOKED");
    assert.equal(events.length, 1);
    assert.equal(events[0]!.event, "refresh_reuse");
    assert.equal(events[0]!.userId, grace.id);
    assert.ok(events[0]!.familyId);

    const second = await client.login({ username: "grace", password: "grace-password" });
    const twin = twinOf(second.refreshToken);
    assert.notEqual(twin, second.refreshToken);
    await expectError(client.refresh({ refreshToken: twin }), Code.Unauthenticated, "TOKEN_MALFORMED");
    assert.equal(events.length, 2);
    assert.equal(events[1]!.event, "refresh_twin");
    assert.equal(events[1]!.userId, grace.id);
    assert.notEqual(events[1]!.familyId, events[0]!.familyId);

    const third = await client.login({ username: "grace", password: "grace-password" });
    await client.logout({ refreshToken: third.refreshToken });
    assert.equal(events.length, 3);
    assert.deepEqual(
      { ...events[2]!, familyId: undefined },
      { event: "logout", userId: grace.id, familyId: undefined },
    );
  });
});
