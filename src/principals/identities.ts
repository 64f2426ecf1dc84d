import type { IdentityResolution, IdentityResolver } from "../decide/decide.js";
import type { ExternalSubject } from "../claims.js";
import type { Principal } from "../principal.js";
import type { Database } from "../store/database-handle.js";
import { StoreError } from "../store/errors.js";
import { findExternalIdentity, loadGroupPermissions, provisionExternalUser } from "../store/external-identities.js";
import {
  subscribeInvalidations,
  type InvalidationEvent,
  type InvalidationSubscription,
} from "../store/invalidation.js";
import { PrincipalCache, resolveCacheLimits } from "./cache.js";

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
  const limits = resolveCacheLimits(options, { maxEntries: 10_000, maxAgeMs: 30_000 });
  // (issuer, subject) → the linked user: a change to that user drops exactly its links.
  const links = new PrincipalCache<string, number>(limits);
  // Group name → its permissions; only `all` (a group or permission row changed) drops them.
  const groupGrants = new PrincipalCache<string, ReadonlySet<string>>(limits);
  const maxEntries = limits.maxEntries;

  function invalidate(event: InvalidationEvent): void {
    links.invalidate(event);
    groupGrants.invalidate(event);
  }

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
    const userId = links.fresh(keyOf(subject));
    if (userId === undefined) return undefined;
    const known = new Map<string, ReadonlySet<string> | undefined>();
    for (const name of subject.groups) {
      const granted = groupGrants.fresh(name);
      if (granted === undefined) return undefined;
      known.set(name, granted === NO_GROUP ? undefined : granted);
    }
    return { status: "linked", userId, grant: grantFor(subject.groups, (name) => known.get(name)) };
  }

  async function resolve(subject: ExternalSubject): Promise<IdentityResolution> {
    const known = peek(subject);
    if (known !== undefined) return known;
    const started = { links: links.start(), groups: groupGrants.start() };
    const key = keyOf(subject);
    let userId = links.fresh(key) ?? (await findExternalIdentity(database.db, subject.issuer, subject.subject));
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
    const missing = subject.groups.filter((name) => groupGrants.fresh(name) === undefined);
    const loaded = await loadGroupPermissions(database.db, missing);
    links.store(key, userId, userId, started.links);
    const byName = new Map<string, ReadonlySet<string> | undefined>();
    for (const name of subject.groups) {
      const cached = groupGrants.fresh(name);
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
      if (cached === undefined) groupGrants.store(name, permissions ?? NO_GROUP, undefined, started.groups);
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
