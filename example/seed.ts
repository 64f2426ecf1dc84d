/**
 * First-start data for the example: a few products, the permission the
 * product rules name, demo users for an empty embedded database, and orders
 * for them. Every step can run on every start: it only adds what is missing.
 */
import { randomBytes } from "node:crypto";
import { count, eq, sql } from "drizzle-orm";
import { createUser, ensurePermissions, grantUserPermissions } from "../src/exports/store.js";
import * as schema from "../src/store/schema.js";
import type { DrizzleDb } from "../src/exports/store.js";
import type { PasswordHasher } from "../src/exports/auth-service.js";
import { orders, products } from "./schema.js";

/** The permission UpdateProduct requires (Django's auto-created `change` permission of a model). */
export const CHANGE_PRODUCT = "products.change_product";

/** Products every example database starts with. */
export const DEMO_PRODUCTS: ReadonlyArray<{ name: string; priceCents: bigint }> = [
  { name: "Espresso machine", priceCents: 24_900n },
  { name: "Burr grinder", priceCents: 12_950n },
  { name: "Milk jug", priceCents: 1_499n },
];

// "exseed" in ASCII: serializes seeding between instances sharing a database.
const SEED_LOCK_KEY = 0x657873656564n;

/** Options of {@link seedExample}. */
export interface SeedOptions {
  /**
   * Users that get two demo orders each, unless they already have orders.
   * Default: none.
   */
  orderOwners?: readonly number[];
}

/**
 * Adds the demo products (by name), the `products.change_product`
 * permission, and orders for `orderOwners` who have none. Idempotent, and
 * safe when several instances start at once: the work runs in one
 * transaction under an advisory lock.
 *
 * @returns the orders created now (none when every owner had some).
 */
export async function seedExample(db: DrizzleDb, options: SeedOptions = {}): Promise<SeededOrder[]> {
  return db.transaction(async (tx) => {
    const created: SeededOrder[] = [];
    await tx.execute(sql`select pg_advisory_xact_lock(${SEED_LOCK_KEY.toString()}::bigint)`);
    await tx
      .insert(products)
      .values([...DEMO_PRODUCTS])
      .onConflictDoNothing({ target: products.name });
    await ensurePermissions(tx, [CHANGE_PRODUCT]);
    for (const userId of options.orderOwners ?? []) {
      const [row] = await tx.select({ n: count() }).from(orders).where(eq(orders.userId, userId));
      if ((row?.n ?? 0) > 0) continue;
      const rows = await tx
        .insert(orders)
        .values([
          { userId, note: "two bags of beans, whole" },
          { userId, note: "leave at the door" },
        ])
        .returning({ id: orders.id, userId: orders.userId });
      created.push(...rows);
    }
    return created;
  });
}

/** An order created by {@link seedExample}. */
export interface SeededOrder {
  readonly id: number;
  readonly userId: number;
}

/** A demo account created by {@link createDemoUsers}, with its one-time readable password. */
export interface DemoUser {
  readonly id: number;
  readonly username: string;
  readonly password: string;
  /** What the account may do, for the start-up banner. */
  readonly role: string;
}

const DEMO_ACCOUNTS = [
  { username: "admin", role: "superuser, staff", isSuperuser: true, isStaff: true, permissions: [] },
  { username: "staff", role: "staff", isSuperuser: false, isStaff: true, permissions: [] },
  { username: "editor", role: CHANGE_PRODUCT, isSuperuser: false, isStaff: false, permissions: [CHANGE_PRODUCT] },
  { username: "alice", role: "no permissions", isSuperuser: false, isStaff: false, permissions: [] },
] as const;

/**
 * Creates the demo accounts `admin` (superuser and staff), `staff`,
 * `editor` (holds `products.change_product`) and `alice` (no permissions),
 * each with a fresh random password, but only when the store has no users
 * at all: demo accounts with known passwords must never appear beside real
 * ones.
 *
 * @returns the accounts with their passwords (only readable now: the store
 *   keeps hashes), or an empty list when users already existed.
 */
export async function createDemoUsers(db: DrizzleDb, hasher: PasswordHasher): Promise<DemoUser[]> {
  const [existing] = await db.select({ n: count() }).from(schema.users);
  if ((existing?.n ?? 0) > 0) return [];
  const created: DemoUser[] = [];
  for (const account of DEMO_ACCOUNTS) {
    // 96 random bits: unguessable, yet short enough to paste.
    const password = randomBytes(12).toString("base64url");
    const user = await createUser(db, {
      username: account.username,
      email: `${account.username}@example.com`,
      passwordHash: await hasher.hash(password),
      isStaff: account.isStaff,
      isSuperuser: account.isSuperuser,
    });
    if (account.permissions.length > 0) await grantUserPermissions(db, account.username, account.permissions);
    created.push({ id: user.id, username: account.username, password, role: account.role });
  }
  return created;
}
