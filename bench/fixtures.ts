/**
 * What the bench's servers serve: users with grants in a database, the
 * tokens the calls carry, and the call mixes of the realistic variants.
 */
import { randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import { migrateExample } from "../example/migrate.js";
import type { Database } from "../src/store/database-handle.js";
import {
  addUsersToGroup,
  createGroup,
  createUser,
  ensurePermissions,
  grantGroupPermissions,
  grantUserPermissions,
} from "../src/store/users.js";
import type { TokenIssuer } from "../src/token/issuer.js";

/** The users every store gets, by role. */
export interface Seeded {
  /** The user of the fixed-token variants: 2 direct permissions, 1 through a group. */
  bench: number;
  /** Users with exactly 1, 10 and 100 direct permissions. */
  withPermissions: Record<1 | 10 | 100, number>;
  /** Ids of the population of the mixed variants (empty when not seeded). */
  population: number[];
}

export const BENCH_PASSWORD = "bench-password-of-decent-length";
/** Groups the population is spread over; each grants 2 permissions. */
const POPULATION_GROUPS = 10;

/**
 * Creates the example's tables and the users. `population` users are
 * inserted with SQL in bulk (the store's functions take one user at a
 * time): each has 2 direct permissions and belongs to one of
 * {@link POPULATION_GROUPS} groups, like an ordinary account.
 */
export async function seed(database: Database, passwordHash: string, population: number): Promise<Seeded> {
  await migrateExample(database);
  const { db } = database;
  const bench = await createUser(db, { username: "bench", email: "bench@example.com", passwordHash });
  await grantUserPermissions(db, "bench", ["shop.view_order", "products.change_product"]);
  await createGroup(db, "bench-group");
  await grantGroupPermissions(db, "bench-group", ["shop.change_order"]);
  await addUsersToGroup(db, "bench-group", ["bench"]);

  const many = Array.from({ length: 100 }, (_, i) => `bench.perm_${String(i).padStart(3, "0")}`);
  await ensurePermissions(db, many);
  const withPermissions = {} as Record<1 | 10 | 100, number>;
  for (const n of [1, 10, 100] as const) {
    const user = await createUser(db, { username: `perms-${n}`, email: `perms-${n}@example.com` });
    await grantUserPermissions(db, `perms-${n}`, many.slice(0, n));
    withPermissions[n] = user.id;
  }

  let ids: number[] = [];
  if (population > 0) {
    await ensurePermissions(db, ["shop.view_order", "shop.add_order", "profile.view", "profile.change"]);
    for (let g = 0; g < POPULATION_GROUPS; g++) {
      await createGroup(db, `population-${g}`);
      await grantGroupPermissions(db, `population-${g}`, [`team${g}.view_report`, `team${g}.change_report`]);
    }
    const rows = await db.execute<{ id: number }>(sql`
      insert into users (username, email)
      select 'pop-' || n, 'pop-' || n || '@example.com' from generate_series(1, ${population}) n
      returning id`);
    ids = [...(rows as unknown as { id: number }[])].map((r) => r.id).sort((a, b) => a - b);
    await db.execute(sql`
      insert into user_permissions (user_id, permission_id)
      select u.id, p.id from users u
        join permissions p on (p.app_label, p.codename) in (('shop', 'view_order'), ('profile', 'view'))
        where u.username like 'pop-%'`);
    await db.execute(sql`
      insert into user_groups (user_id, group_id)
      select u.id, g.id from users u
        join groups g on g.name = 'population-' || (u.id % ${POPULATION_GROUPS})
        where u.username like 'pop-%'`);
  }
  return { bench: bench.id, withPermissions, population: ids };
}

/** A token with the same header and payload and a signature of random bytes. */
export function forge(token: string): string {
  return `${token.slice(0, token.lastIndexOf(".") + 1)}${randomBytes(32).toString("base64url")}`;
}

/** What one call of a mix carries: a token, or none. */
export type MixCall = { readonly token: string | undefined; readonly expect: "ok" | "refused" };

/** Options of {@link zipfMix}. */
export interface ZipfMixOptions {
  /** User ids, most active first. */
  users: readonly number[];
  calls: number;
  issuer: TokenIssuer;
  /** Zipf exponent. Default 1. */
  exponent?: number;
  /** Calls one token serves (one session), inclusive range. Default [3, 8]. */
  usesPerToken?: readonly [number, number];
  /** Sessions going on at once, their calls interleaved. Default 200. */
  concurrentSessions?: number;
  /** Share of calls with a forged signature. Default 0.02. */
  forged?: number;
  /** Share of calls without a token. Default 0.01. */
  anonymous?: number;
  /** Deterministic randomness: a seed. Default 1. */
  seed?: number;
}

/**
 * A realistic call mix: sessions of users whose activity follows a Zipf law
 * (the k-th most active user starts sessions ∝ 1/k^s); a session is one
 * access token serving a handful of calls (an SPA until its refresh, a
 * mobile app until it sleeps), many sessions go on at once with their calls
 * interleaved, and a few percent of calls are refusals (forged signatures,
 * missing tokens). Tokens are signed up front, so the load generator only
 * sends.
 */
export async function zipfMix(options: ZipfMixOptions): Promise<MixCall[]> {
  const random = mulberry32(options.seed ?? 1);
  const { users, calls, issuer } = options;
  const exponent = options.exponent ?? 1;
  const [minUses, maxUses] = options.usesPerToken ?? [3, 8];
  const forged = options.forged ?? 0.02;
  const anonymous = options.anonymous ?? 0.01;
  const cumulative = new Float64Array(users.length);
  let total = 0;
  for (let k = 0; k < users.length; k++) cumulative[k] = total += 1 / (k + 1) ** exponent;
  const pick = () => {
    const target = random() * total;
    let lo = 0;
    let hi = users.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! < target) lo = mid + 1;
      else hi = mid;
    }
    return users[lo]!;
  };
  const session = async () => ({
    token: (await issuer.issueAccess(pick())).token,
    usesLeft: minUses + Math.floor(random() * (maxUses - minUses + 1)),
  });
  const sessions = await Promise.all(Array.from({ length: options.concurrentSessions ?? 200 }, session));
  const mix: MixCall[] = [];
  for (let i = 0; i < calls; i++) {
    const roll = random();
    if (roll < anonymous) {
      mix.push({ token: undefined, expect: "refused" });
      continue;
    }
    const slot = Math.floor(random() * sessions.length);
    const held = sessions[slot]!;
    if (roll < anonymous + forged) {
      mix.push({ token: forge(held.token), expect: "refused" });
      continue;
    }
    mix.push({ token: held.token, expect: "ok" });
    if (--held.usesLeft === 0) sessions[slot] = await session();
  }
  return mix;
}

/** One token per user, for the population variants: the calls pick users uniformly at random. */
export async function uniformMix(
  users: readonly number[],
  calls: number,
  issuer: TokenIssuer,
  seed = 2,
): Promise<MixCall[]> {
  const random = mulberry32(seed);
  const tokens = new Map<number, string>();
  for (const user of users) tokens.set(user, (await issuer.issueAccess(user)).token);
  return Array.from({ length: calls }, () => ({
    token: tokens.get(users[Math.floor(random() * users.length)]!)!,
    expect: "ok" as const,
  }));
}

/** A small, seedable PRNG: the mixes are the same from run to run. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
