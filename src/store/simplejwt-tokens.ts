/**
 * The store's side of adopting djangorestframework-simplejwt refresh tokens:
 * simplejwt's blacklist, read from the Django database, and the record of an
 * adopted token in protoguard's own `refresh_tokens`.
 */
import postgres from "postgres";
import type { DrizzleDb } from "./database-handle.js";
import { refreshTokens } from "./schema.js";

/** simplejwt's blacklist (`token_blacklist_blacklistedtoken` joined to `outstandingtoken`). */
export interface SimplejwtBlacklist {
  /**
   * Whether simplejwt blacklisted the token with this `jti`. False when the
   * Django database has no token_blacklist tables. Rejects when the database
   * cannot be reached: the caller answers UNAVAILABLE (fail closed).
   */
  isBlacklisted(jti: string): Promise<boolean>;
  /** Closes the connection pool. */
  close(): Promise<void>;
}

/**
 * Opens a read-only view of simplejwt's blacklist in the Django database at
 * `databaseUrl` (PostgreSQL). Connects lazily; at most 2 connections, closed after 5 s idle.
 *
 * @example
 * ```ts
 * const blacklist = openSimplejwtBlacklist("postgres://django@db/django");
 * if (await blacklist.isBlacklisted(jti)) refuse();
 * ```
 */
export function openSimplejwtBlacklist(databaseUrl: string): SimplejwtBlacklist {
  const client = postgres(databaseUrl, {
    max: 2,
    // Idle connections close, so a stopping server is not held open by this pool.
    idle_timeout: 5,
    onnotice: () => {},
    connection: { application_name: "protoguard-simplejwt-blacklist", default_transaction_read_only: true },
  });
  let tablesExist: Promise<boolean> | undefined;
  const checkTables = async () => {
    const [row] = await client<{ present: boolean }[]>`
      select to_regclass('token_blacklist_blacklistedtoken') is not null
         and to_regclass('token_blacklist_outstandingtoken') is not null as present`;
    return row?.present === true;
  };
  return {
    async isBlacklisted(jti) {
      tablesExist ??= checkTables().catch((error: unknown) => {
        tablesExist = undefined;
        throw error;
      });
      if (!(await tablesExist)) return false;
      const rows = await client`
        select 1 from token_blacklist_blacklistedtoken b
        join token_blacklist_outstandingtoken o on o.id = b.token_id
        where o.jti = ${jti} limit 1`;
      return rows.length > 0;
    },
    close: () => client.end({ timeout: 5 }),
  };
}

/** An adopted simplejwt refresh token, recorded as the used first token of a new family. */
export interface AdoptedRefreshToken {
  readonly jti: string;
  readonly familyId: string;
  readonly userId: number;
  /** SHA-256 hex of the token string. */
  readonly tokenHash: string;
  readonly issuedAt: Date;
  readonly expiresAt: Date;
  /** When it was adopted: the token is recorded as used at this time. */
  readonly usedAt: Date;
}

/**
 * Records an adopted token as already used, so presenting it again is reuse
 * and revokes the family. Returns false when a token with this `jti` is on
 * record already (a concurrent adoption won): the caller treats it as reuse.
 * No access token was issued beside it by protoguard, so none is revoked
 * with the family on its account.
 */
export async function recordAdoptedRefreshToken(db: DrizzleDb, token: AdoptedRefreshToken): Promise<boolean> {
  const inserted = await db
    .insert(refreshTokens)
    .values({ ...token, accessJti: "", accessExpiresAt: new Date(0) })
    .onConflictDoNothing({ target: refreshTokens.jti })
    .returning({ id: refreshTokens.id });
  return inserted.length > 0;
}
