/**
 * The audit log's store: appending hash-chained events, listing them,
 * verifying the chain and pruning it for retention. All of its SQL is here.
 *
 * The chain: row N's `hash` is SHA-256 over the canonical encoding of its
 * content and row N-1's `hash` (its `prev_hash`). Appends lock the one row of
 * `audit_chain` FOR UPDATE until their transaction commits, so instances
 * writing at once still form one chain, and rows' ids (allocated under that
 * lock) follow chain order. Pruning deletes the oldest rows and moves the
 * chain's anchor to the hash of the last row it deleted, so what remains
 * still verifies from the anchor.
 */
import { createHash } from "node:crypto";
import { and, asc, desc, eq, gt, gte, lt, lte, or, sql, type SQL } from "drizzle-orm";
import type { AuditActor, AuditContext, AuditEventInput, AuditEventType } from "../audit-event.js";
import type { DrizzleDb } from "./database-handle.js";
import { auditChain, auditEvents, users, type AuditEventRow } from "./schema.js";

/** The `prev_hash` of the first row ever appended: 64 zeros. */
export const AUDIT_GENESIS_HASH = "0".repeat(64);

/** Field limits, matching the columns; longer values are cut, never refused (an audit write must not fail a login). */
const LIMITS = { actor: 300, actorUsername: 150, subject: 600, peerAddress: 128, userAgent: 512, requestId: 128 };

/** `user:12`, `service:3`, `cli:root`, `anonymous`, `system`: the actor column's spelling of an {@link AuditActor}. */
export function formatAuditActor(actor: AuditActor): string {
  switch (actor.kind) {
    case "user":
    case "service":
      return `${actor.kind}:${actor.id}`;
    case "cli":
      return `cli:${actor.osUser}`;
    case "anonymous":
    case "system":
      return actor.kind;
  }
}

function actorUsername(actor: AuditActor): string | undefined {
  if (actor.kind === "user" || actor.kind === "service") return actor.username;
  if (actor.kind === "cli") return actor.osUser;
  return undefined;
}

/** NUL and lone surrogates, which PostgreSQL text and jsonb cannot hold. */
// eslint-disable-next-line no-control-regex -- NUL is exactly what PostgreSQL refuses
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** `value` with what cannot be stored replaced by U+FFFD, rather than failing the write. */
function storable(value: string): string {
  return value.replace(UNSTORABLE, "\uFFFD");
}

function cut(value: string | undefined, max: number): string | null {
  if (value === undefined || value === "") return null;
  const clean = storable(value);
  // Cut on a code point boundary, so the cut does not leave a lone surrogate.
  return clean.length > max ? storable(clean.slice(0, max)) : clean;
}

/**
 * A JSON value in a canonical form: object keys sorted, `undefined` and
 * functions dropped, NUL replaced, non-finite numbers as null. jsonb gives
 * back exactly this value (it reorders keys, which the encoding ignores), so
 * a row's hash can be recomputed from what is read.
 */
function canonicalValue(value: unknown): unknown {
  if (value === null) return null;
  switch (typeof value) {
    case "string":
      return storable(value);
    case "number":
      return Number.isFinite(value) ? value : null;
    case "boolean":
      return value;
    case "bigint":
      return value.toString();
    case "object": {
      if (value instanceof Date) return value.toISOString();
      if (Array.isArray(value)) return value.map((v) => (v === undefined ? null : canonicalValue(v)));
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(value).sort()) {
        const v = (value as Record<string, unknown>)[key];
        if (v === undefined || typeof v === "function" || typeof v === "symbol") continue;
        out[key] = canonicalValue(v);
      }
      return out;
    }
    default:
      return null;
  }
}

/** JSON with keys sorted at every level: the encoding the hash covers. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(v).sort()) sorted[key] = (v as Record<string, unknown>)[key];
    return sorted;
  });
}

/** The content of a row that its hash covers (everything but `id` and `hash`). */
interface HashedContent {
  time: Date;
  type: string;
  actor: string;
  actorUsername: string | null;
  subject: string | null;
  peerAddress: string | null;
  userAgent: string | null;
  requestId: string | null;
  detail: unknown;
  prevHash: string;
}

/**
 * SHA-256 hex over the canonical encoding of a row's content: a versioned
 * JSON array, so no two different rows encode alike. The id is not covered:
 * order is what `prev_hash` links, and a row moved to another id breaks its
 * link to its neighbours.
 */
export function auditRowHash(row: HashedContent): string {
  const encoded = canonicalJson([
    "protoguard-audit-v1",
    row.time.toISOString(),
    row.type,
    row.actor,
    row.actorUsername,
    row.subject,
    row.peerAddress,
    row.userAgent,
    row.requestId,
    row.detail,
    row.prevHash,
  ]);
  return createHash("sha256").update(encoded, "utf8").digest("hex");
}

/**
 * Appends one event to the audit log. Pass the transaction that makes the
 * change the event records, so both commit or neither does; outside a
 * transaction it runs in one of its own. It holds the chain's head lock
 * until that transaction ends: keep the transaction short after calling it.
 * `event.detail` must never hold a password, a token or a secret.
 */
export async function recordAuditEvent(db: DrizzleDb, event: AuditEventInput): Promise<void> {
  await appendAuditEvent(db, event, new Date());
}

/**
 * {@link recordAuditEvent} at a given time, returning the row's id. For
 * retention tests and imports; services use `recordAuditEvent`.
 */
export async function appendAuditEvent(db: DrizzleDb, event: AuditEventInput, time: Date): Promise<number> {
  const { context } = event;
  const content: Omit<HashedContent, "prevHash"> = {
    // The column keeps milliseconds, as a Date does: the hash covers what is stored.
    time: new Date(Math.floor(time.getTime())),
    type: event.type,
    actor: cut(formatAuditActor(context.actor), LIMITS.actor) ?? "anonymous",
    actorUsername: cut(actorUsername(context.actor), LIMITS.actorUsername),
    subject: cut(event.subject, LIMITS.subject),
    peerAddress: cut(context.peerAddress, LIMITS.peerAddress),
    userAgent: cut(context.userAgent, LIMITS.userAgent),
    requestId: cut(context.requestId, LIMITS.requestId),
    detail: canonicalValue(event.detail ?? {}),
  };
  // A savepoint when `db` is already a transaction; the head lock then lasts until the outer commit.
  return db.transaction(async (tx) => {
    const [head] = await tx.select().from(auditChain).where(eq(auditChain.id, 1)).for("update");
    if (head === undefined) throw new Error("audit_chain has no state row: run the protoguard migrations");
    const prevHash = head.headHash;
    const hash = auditRowHash({ ...content, prevHash });
    const [row] = await tx
      .insert(auditEvents)
      .values({ ...content, detail: content.detail as Record<string, unknown>, prevHash, hash })
      .returning({ id: auditEvents.id });
    if (row === undefined) throw new Error("audit insert returned no row");
    await tx.update(auditChain).set({ headId: row.id, headHash: hash }).where(eq(auditChain.id, 1));
    return row.id;
  });
}

/** Filters of {@link listAuditEvents}. */
export interface AuditListFilter {
  /** Only events at or after this time. Default: all. */
  since?: Date;
  /** Only events of these types. Default: all. */
  types?: readonly AuditEventType[];
  /**
   * Only events by or about this user or service account: its actor (by username, or by id while
   * the account exists), subject `user:<name>` / `service:<name>`, or the username a login typed.
   * A CLI actor's OS user does not count.
   */
  username?: string;
  /** Only events with an id greater than this (for following the log). Default: 0. */
  afterId?: number;
  /** Only events with an id less than this (for paging newest first). Default: no bound. */
  beforeId?: number;
  /** At most this many rows. Default: 1000. */
  limit?: number;
  /** `asc` (oldest first, the default) or `desc`. */
  order?: "asc" | "desc";
}

/** Audit rows matching `filter`, oldest first unless `order` is `desc`. */
export async function listAuditEvents(db: DrizzleDb, filter: AuditListFilter = {}): Promise<AuditEventRow[]> {
  const where: SQL[] = [];
  if (filter.since !== undefined) where.push(gte(auditEvents.time, filter.since));
  if (filter.types !== undefined && filter.types.length > 0) {
    where.push(or(...filter.types.map((t) => eq(auditEvents.type, t))) as SQL);
  }
  if (filter.username !== undefined) {
    const name = filter.username;
    where.push(
      or(
        and(eq(auditEvents.actorUsername, name), sql`${auditEvents.actor} not like 'cli:%'`),
        eq(auditEvents.subject, `user:${name}`),
        eq(auditEvents.subject, `service:${name}`),
        sql`${auditEvents.detail}->>'username' = ${name}`,
        // An actor recorded by id alone (a refresh, a logout) is matched through the account.
        sql`${auditEvents.actor} in (select ${users.kind} || ':' || ${users.id} from ${users} where ${users.username} = ${name})`,
      ) as SQL,
    );
  }
  if (filter.afterId !== undefined) where.push(gt(auditEvents.id, filter.afterId));
  if (filter.beforeId !== undefined) where.push(lt(auditEvents.id, filter.beforeId));
  return db
    .select()
    .from(auditEvents)
    .where(where.length > 0 ? and(...where) : undefined)
    .orderBy(filter.order === "desc" ? desc(auditEvents.id) : asc(auditEvents.id))
    .limit(filter.limit ?? 1000);
}

/** The outcome of {@link verifyAuditChain}. */
export type AuditVerifyResult =
  | {
      readonly ok: true;
      /** Rows checked. */
      readonly rows: number;
      /** The anchor the check started from (0 and the genesis hash before any pruning). */
      readonly anchorId: number;
      readonly headId: number;
    }
  | {
      readonly ok: false;
      readonly rows: number;
      /** The first row found wrong (for a removed last row, the head id the chain state names). */
      readonly id: number;
      /** `altered` (its hash does not match its content), `unlinked` (a row before it removed, or rows reordered), `missing` (rows after the last one removed). */
      readonly problem: "altered" | "unlinked" | "missing";
      /** One line for an operator. */
      readonly message: string;
    };

const VERIFY_BATCH = 1000;

/**
 * Walks the chain from the anchor to the head in id order and names the
 * first row that was altered, removed or reordered. Reads in batches, so the
 * table's size does not bound memory. Run it outside a write transaction:
 * it reads the chain state once, then the rows up to that head.
 */
export async function verifyAuditChain(db: DrizzleDb): Promise<AuditVerifyResult> {
  const [state] = await db.select().from(auditChain).where(eq(auditChain.id, 1));
  if (state === undefined) throw new Error("audit_chain has no state row: run the protoguard migrations");
  let prev = state.anchorHash;
  let prevId = state.anchorId;
  let rows = 0;
  for (;;) {
    const batch = await db
      .select()
      .from(auditEvents)
      .where(and(gt(auditEvents.id, prevId), lte(auditEvents.id, state.headId)))
      .orderBy(asc(auditEvents.id))
      .limit(VERIFY_BATCH);
    for (const row of batch) {
      rows += 1;
      if (row.prevHash !== prev) {
        return {
          ok: false,
          rows,
          id: row.id,
          problem: "unlinked",
          message: `audit row ${row.id} does not follow ${prevId === state.anchorId ? `the chain's anchor (row ${prevId})` : `row ${prevId}`}: a row before it was removed, or rows were reordered`,
        };
      }
      const expected = auditRowHash({ ...row, detail: canonicalValue(row.detail) });
      if (row.hash !== expected) {
        return {
          ok: false,
          rows,
          id: row.id,
          problem: "altered",
          message: `audit row ${row.id} was altered: its hash does not match its content`,
        };
      }
      prev = row.hash;
      prevId = row.id;
    }
    if (batch.length < VERIFY_BATCH) break;
  }
  if (prevId !== state.headId || prev !== state.headHash) {
    return {
      ok: false,
      rows,
      id: state.headId,
      problem: "missing",
      message: `audit row ${state.headId} (the chain's head) is missing: the log ends at row ${prevId}, so its last rows were removed`,
    };
  }
  return { ok: true, rows, anchorId: state.anchorId, headId: state.headId };
}

/** The outcome of {@link pruneAuditEvents}. */
export interface AuditPruneResult {
  /** Rows deleted. */
  readonly deleted: number;
  /** The chain's anchor after pruning: the id of the last row deleted (0 if none ever was). */
  readonly anchorId: number;
}

const PRUNE_BATCH = 5000;

/**
 * Deletes the rows older than `before`, oldest first, in batches, and moves
 * the chain's anchor to the last deleted row's hash so the rest still
 * verifies. Stops at the first row (in chain order) at or after `before`:
 * rows are removed only as a prefix of the chain, even if clocks of several
 * instances disagreed. Each batch holds the head lock briefly.
 */
export async function pruneAuditEvents(
  db: DrizzleDb,
  before: Date,
  context: AuditContext = { actor: { kind: "system" } },
): Promise<AuditPruneResult> {
  let deleted = 0;
  let anchorId = 0;
  for (;;) {
    const batch = await db.transaction(async (tx) => {
      const [state] = await tx.select().from(auditChain).where(eq(auditChain.id, 1)).for("update");
      if (state === undefined) throw new Error("audit_chain has no state row: run the protoguard migrations");
      anchorId = state.anchorId;
      // The oldest PRUNE_BATCH rows, up to (not including) the first one that is new enough.
      const [firstKept] = await tx
        .select({ id: auditEvents.id })
        .from(auditEvents)
        .where(gte(auditEvents.time, before))
        .orderBy(asc(auditEvents.id))
        .limit(1);
      const candidates = await tx
        .select({ id: auditEvents.id, hash: auditEvents.hash })
        .from(auditEvents)
        .where(firstKept === undefined ? undefined : sql`${auditEvents.id} < ${firstKept.id}`)
        .orderBy(asc(auditEvents.id))
        .limit(PRUNE_BATCH);
      const last = candidates.at(-1);
      if (last === undefined) return 0;
      const removed = await tx
        .delete(auditEvents)
        .where(lte(auditEvents.id, last.id))
        .returning({ id: auditEvents.id });
      await tx
        .update(auditChain)
        .set({ anchorId: last.id, anchorHash: last.hash, prunedAt: new Date() })
        .where(eq(auditChain.id, 1));
      anchorId = last.id;
      return removed.length;
    });
    deleted += batch;
    if (batch < PRUNE_BATCH) break;
  }
  // The pruning itself is on the record (after the anchor, so it is never pruned with what it reports).
  if (deleted > 0) {
    await recordAuditEvent(db, {
      type: "audit.pruned",
      detail: { deleted, throughId: anchorId, before: before.toISOString() },
      context,
    });
  }
  return { deleted, anchorId };
}

/** The NDJSON / `--json` form of an audit row: stable field names for a SIEM. */
export interface AuditEventJson {
  id: number;
  time: string;
  type: string;
  actor: string;
  actorUsername: string | null;
  subject: string | null;
  peerAddress: string | null;
  userAgent: string | null;
  requestId: string | null;
  detail: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

/** An audit row as JSON (one NDJSON line once stringified). */
export function auditEventJson(row: AuditEventRow): AuditEventJson {
  return {
    id: row.id,
    time: row.time.toISOString(),
    type: row.type,
    actor: row.actor,
    actorUsername: row.actorUsername,
    subject: row.subject,
    peerAddress: row.peerAddress,
    userAgent: row.userAgent,
    requestId: row.requestId,
    detail: row.detail,
    prevHash: row.prevHash,
    hash: row.hash,
  };
}
