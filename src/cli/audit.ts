/**
 * `protoguard audit list|verify|prune`: read the audit log (as text, or
 * NDJSON for a log shipper or a SIEM), check its hash chain, and apply the
 * retention period by hand.
 */
import { AUDIT_EVENT_TYPES, type AuditEventType } from "../audit-event.js";
import {
  auditEventJson,
  listAuditEvents,
  pruneAuditEvents,
  verifyAuditChain,
  type AuditListFilter,
} from "../store/audit.js";
import type { AuditEventRow } from "../store/schema.js";
import { defineSubcommand } from "./args.js";
import { cliAuditContext } from "./audit-record.js";
import { CliError, EXIT_OK, UsageError } from "./errors.js";
import { withRuntime } from "./io.js";

const UNITS_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * `--since`: an ISO 8601 time (`2026-01-31`, `2026-01-31T12:00:00Z`) or a
 * span back from now (`30m`, `24h`, `7d`, `2w`).
 */
export function parseSince(raw: string, nowMs: number): Date {
  const span = /^(\d{1,6})([smhdw])$/.exec(raw);
  if (span !== null) return new Date(nowMs - Number(span[1]) * UNITS_MS[span[2]!]!);
  if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(raw)) {
    const time = new Date(raw);
    if (!Number.isNaN(time.getTime())) return time;
  }
  throw new UsageError(
    `--since must be an ISO 8601 time (2026-01-31, 2026-01-31T12:00:00Z) or a span (30m, 24h, 7d), got "${raw}"`,
  );
}

/** `--type`: comma-separated event types, each one of {@link AUDIT_EVENT_TYPES} or a prefix ending in `.*` (`login.*`). */
export function parseTypes(raw: string): AuditEventType[] {
  const types = new Set<AuditEventType>();
  for (const part of raw.split(",").map((t) => t.trim())) {
    const matched = part.endsWith(".*")
      ? AUDIT_EVENT_TYPES.filter((t) => t.startsWith(part.slice(0, -1)))
      : AUDIT_EVENT_TYPES.filter((t) => t === part);
    if (matched.length === 0) {
      throw new UsageError(
        `--type: unknown event type "${part}" (one of ${AUDIT_EVENT_TYPES.join(", ")}, or a prefix like login.*)`,
      );
    }
    for (const t of matched) types.add(t);
  }
  return [...types];
}

function positiveInt(raw: string | undefined, flag: string, fallback: number, max: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 0 || n > max)
    throw new UsageError(`--${flag} must be a whole number from 0 to ${max}, got "${raw}"`);
  return n;
}

/** One human-readable line: id, time, type, actor, subject, where from, detail. */
function textLine(row: AuditEventRow): string {
  const actor =
    row.actorUsername !== null && !row.actor.startsWith("cli:") ? `${row.actor}(${row.actorUsername})` : row.actor;
  const parts = [String(row.id), row.time.toISOString(), row.type, actor, row.subject ?? "-"];
  if (row.peerAddress !== null) parts.push(`from=${row.peerAddress}`);
  if (row.requestId !== null) parts.push(`request=${row.requestId}`);
  if (Object.keys(row.detail).length > 0) parts.push(JSON.stringify(row.detail));
  return parts.join(" ");
}

/** Rows fetched per query while listing; the whole selection is streamed in such pages. */
const PAGE = 1000;

const auditList = defineSubcommand({
  usage: "audit list [--since T] [--type T] [--user NAME] [--after ID] [--limit N] [--json]",
  summary:
    "print audit events oldest first (--json: one JSON object per line, NDJSON, for a log shipper or a SIEM; " +
    "--after ID continues after the last id shipped)",
  flags: { since: "string", type: "string", user: "string", after: "string", limit: "string", json: "boolean" },
  positionals: { min: 0, max: 0, names: "no arguments" },
  async run({ flags }, env, io) {
    const filter: AuditListFilter = {};
    if (flags.since !== undefined) filter.since = parseSince(flags.since, Date.now());
    if (flags.type !== undefined) filter.types = parseTypes(flags.type);
    if (flags.user !== undefined) {
      if (flags.user === "") throw new UsageError("--user needs a username");
      filter.username = flags.user;
    }
    let afterId = positiveInt(flags.after, "after", 0, Number.MAX_SAFE_INTEGER);
    // 0: no limit.
    const limit = positiveInt(flags.limit, "limit", 0, Number.MAX_SAFE_INTEGER);
    const json = flags.json === true;
    await withRuntime(env, io, async ({ database }) => {
      let printed = 0;
      for (;;) {
        const want = limit === 0 ? PAGE : Math.min(PAGE, limit - printed);
        if (want <= 0) break;
        const rows = await listAuditEvents(database.db, { ...filter, afterId, limit: want });
        for (const row of rows) io.out(json ? JSON.stringify(auditEventJson(row)) : textLine(row));
        printed += rows.length;
        if (rows.length < want) break;
        afterId = rows.at(-1)!.id;
      }
    });
    return EXIT_OK;
  },
});

const auditVerify = defineSubcommand({
  usage: "audit verify",
  summary: "check the audit log's hash chain; exit 1 naming the first row altered, removed or reordered",
  flags: {},
  positionals: { min: 0, max: 0, names: "no arguments" },
  async run(_args, env, io) {
    const result = await withRuntime(env, io, ({ database }) => verifyAuditChain(database.db));
    if (!result.ok) throw new CliError(`${result.message} (${result.rows} rows checked)`);
    const from = result.anchorId === 0 ? "the start" : `the anchor after pruned row ${result.anchorId}`;
    io.out(
      `audit chain intact: ${result.rows} row${result.rows === 1 ? "" : "s"} from ${from} to row ${result.headId}`,
    );
    return EXIT_OK;
  },
});

const auditPrune = defineSubcommand({
  usage: "audit prune [--days N]",
  summary:
    "delete audit events older than N days (default PROTOGUARD_AUDIT_RETENTION_DAYS, 90), keeping the chain verifiable",
  flags: { days: "string" },
  positionals: { min: 0, max: 0, names: "no arguments" },
  async run({ flags }, env, io) {
    const fromFlag = flags.days === undefined ? undefined : positiveInt(flags.days, "days", 0, 36_500);
    const result = await withRuntime(env, io, async ({ database, config }) => {
      const days = fromFlag ?? config.auditRetentionDays;
      if (days === 0) return { days, deleted: 0 };
      const pruned = await pruneAuditEvents(database.db, new Date(Date.now() - days * 86_400_000), cliAuditContext());
      return { days, ...pruned };
    });
    if (result.days === 0) io.out("retention is 0 days (keep for ever): nothing pruned");
    else
      io.out(`pruned ${result.deleted} audit event${result.deleted === 1 ? "" : "s"} older than ${result.days} days`);
    return EXIT_OK;
  },
});

/** The `audit` subcommands. */
export const auditSubcommands = { list: auditList, verify: auditVerify, prune: auditPrune };
