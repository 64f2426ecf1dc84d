import type { IdentityResolution, IdentityResolver } from "../decide/decide.js";
import type { ExternalSubject } from "../identity/subject.js";
import type { Principal } from "../principal.js";
import type { Database } from "../store/database.js";
import { StoreError } from "../store/errors.js";
import { findExternalIdentity, loadGroupPermissions, provisionExternalUser } from "../store/external-identities.js";
import {
  subscribeInvalidations,
  type InvalidationEvent,
  type InvalidationSubscription,
} from "../store/invalidation.js";
import { LruMap } from "../util/lru.js";

/** Options of {@link createIdentityResolver}. */
export interface IdentityResolverOptions {
  /** The user store holding `external_identities`. Required. */
  database: Database;
  /**
   * Where invalidations come from: pass the principal source (its `onInvalidation`) so one
   * database subscription serves both. Default: a subscription of its own.
   */
  invalidations?: { onInvalidation(listener: (event: InvalidationEvent) => void): () => void };
  /** Most cached (issuer, subject) → user links, and group permission sets. Default 10000; 0 disables. */
  maxEntries?: number;
  /** Longest time a cached link or group is trusted, in milliseconds. Default 30000. */
  maxAgeMs?: number;
  /** Clock in milliseconds, for tests. Default `Date.now`. */
  now?: () => number;
}

/** An {@link IdentityResolver} over the database, with bounded, invalidated caches. */
export interface CachedIdentityResolver extends IdentityResolver {
  /** Applies one invalidation (they also arrive from the database on their own). */
  invalidate(event: InvalidationEvent): void;
  /** Stops listening (when it subscribed itself). The database stays open. */
  close(): Promise<void>;
}

interface Stamped<T> {
  readonly value: T;
  readonly storedAt: number;
}

/**
 * Maps a trusted issuer's subject to the local user linked to it in `external_identities`,
 * creating user and link on first sight when the issuer provisions (see
 * `provisionExternalUser`), and turns the token's groups into permissions: the permissions of
 * the protoguard groups of those names are added to the user's own for the call, and the
 * names to its `groups`; no membership is written. A group that does not exist grants nothing.
 *
 * Both lookups are cached: links by (issuer, subject), dropped when the database announces a
 * change to the linked user (its row or its links: deactivation, deletion, unlinking) or
 * everything; group permissions by group name, dropped by the `all` notice that any change to
 * groups, permissions or group grants sends. An unlinked subject is never cached, so a link
 * made by an admin works on the next call.
 *
 * @example
 * ```ts
 * const principals = await createPrincipalSource({ database });
 * const identities = await createIdentityResolver({ database, invalidations: principals });
 * const auth = createAuth({ verifier, principals, identities, services });
 * ```
 */
export async function createIdentityResolver(options: IdentityResolverOptions): Promise<CachedIdentityResolver> {
  const { database } = options;
  const maxEntries = options.maxEntries ?? 10_000;
  const maxAgeMs = options.maxAgeMs ?? 30_000;
  const now = options.now ?? Date.now;
  // Which cached links point at a user, so a change to the user drops exactly those.
  const byUser = new Map<number, Set<string>>();
  const links = new LruMap<string, Stamped<number>>(Math.max(maxEntries, 1), (key, entry) => {
    const keys = byUser.get(entry.value);
    keys?.delete(key);
    if (keys?.size === 0) byUser.delete(entry.value);
  });
  const groupGrants = new LruMap<string, Stamped<ReadonlySet<string>>>(Math.max(maxEntries, 1));
  // Bumped by every invalidation: a lookup that raced with one is not cached.
  let generation = 0;

  function invalidate(event: InvalidationEvent): void {
    generation++;
    if (event.kind === "all") {
      links.clear();
      byUser.clear();
      groupGrants.clear();
    } else if (event.kind === "user") {
      for (const key of byUser.get(event.userId) ?? []) links.delete(key);
      byUser.delete(event.userId);
    }
  }
  function remember(key: string, userId: number, storedAt: number): void {
    links.set(key, { value: userId, storedAt });
    let keys = byUser.get(userId);
    if (keys === undefined) byUser.set(userId, (keys = new Set()));
    keys.add(key);
  }

  const fresh = <T>(entry: Stamped<T> | undefined) =>
    entry !== undefined && now() - entry.storedAt < maxAgeMs ? entry.value : undefined;
  const keyOf = (subject: ExternalSubject) => `${subject.issuer}\n${subject.subject}`;

  function grantFor(groups: readonly string[], permissionsOf: (name: string) => ReadonlySet<string> | undefined) {
    return (principal: Principal): Principal => {
      if (groups.length === 0) return principal;
      const permissions = new Set(principal.permissions);
      const names = new Set(principal.groups ?? []);
      for (const name of groups) {
        const granted = permissionsOf(name);
        if (granted === undefined) continue;
        names.add(name);
        for (const permission of granted) permissions.add(permission);
      }
      return { ...principal, permissions, groups: names };
    };
  }

  function peek(subject: ExternalSubject): IdentityResolution | undefined {
    if (maxEntries === 0) return undefined;
    const userId = fresh(links.get(keyOf(subject)));
    if (userId === undefined) return undefined;
    const known = new Map<string, ReadonlySet<string> | undefined>();
    for (const name of subject.groups) {
      const granted = fresh(groupGrants.get(name));
      if (granted === undefined) return undefined;
      known.set(name, granted === NO_GROUP ? undefined : granted);
    }
    return { status: "linked", userId, grant: grantFor(subject.groups, (name) => known.get(name)) };
  }

  async function resolve(subject: ExternalSubject): Promise<IdentityResolution> {
    const known = peek(subject);
    if (known !== undefined) return known;
    const startedAt = generation;
    const storedAt = now();
    const key = keyOf(subject);
    let userId = fresh(links.get(key)) ?? (await findExternalIdentity(database.db, subject.issuer, subject.subject));
    if (userId === undefined) {
      if (!subject.provision) return { status: "not_linked" };
      try {
        userId = await provisionExternalUser(database.db, {
          issuer: subject.issuer,
          subject: subject.subject,
          ...(subject.username !== undefined && { username: subject.username }),
          ...(subject.email !== undefined && { email: subject.email }),
        });
      } catch (error) {
        // Unlinked, or its user deleted: that stays final until an admin links it again.
        if (error instanceof StoreError && error.code === "IDENTITY_UNLINKED") return { status: "not_linked" };
        throw error;
      }
    }
    const missing = subject.groups.filter((name) => fresh(groupGrants.get(name)) === undefined);
    const loaded = await loadGroupPermissions(database.db, missing);
    const cache = maxEntries > 0 && generation === startedAt;
    if (cache) remember(key, userId, storedAt);
    const byName = new Map<string, ReadonlySet<string> | undefined>();
    for (const name of subject.groups) {
      const cached = fresh(groupGrants.get(name));
      const permissions =
        cached !== undefined
          ? cached === NO_GROUP
            ? undefined
            : cached
          : loaded.has(name)
            ? new Set(loaded.get(name))
            : undefined;
      byName.set(name, permissions);
      // A name no group has is remembered too (as NO_GROUP): creating the group sends `all`, which drops it.
      if (cached === undefined && cache) groupGrants.set(name, { value: permissions ?? NO_GROUP, storedAt });
    }
    return { status: "linked", userId, grant: grantFor(subject.groups, (name) => byName.get(name)) };
  }

  let subscription: InvalidationSubscription | undefined;
  let unlisten: (() => void) | undefined;
  if (maxEntries > 0) {
    if (options.invalidations !== undefined) unlisten = options.invalidations.onInvalidation(invalidate);
    else subscription = await subscribeInvalidations(database, invalidate);
  }

  return {
    resolve,
    peek,
    invalidate,
    async close() {
      unlisten?.();
      await subscription?.close();
    },
  };
}

/** The cached value for a group name no group has. */
const NO_GROUP: ReadonlySet<string> = Object.freeze(new Set<string>());
