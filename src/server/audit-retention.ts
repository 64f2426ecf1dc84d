/**
 * The audit log's retention in a running server: prunes events older than
 * the retention period soon after start and then every hour, until stopped.
 */
import type { Logger } from "pino";
import type { Database } from "../store/database-handle.js";
import { pruneAuditEvents } from "../store/audit.js";

/** The default retention of audit events, in days (`PROTOGUARD_AUDIT_RETENTION_DAYS`). */
export const DEFAULT_AUDIT_RETENTION_DAYS = 90;

const DAY_MS = 86_400_000;

/** Options of {@link startAuditRetention}. */
export interface AuditRetentionOptions {
  /** Where the audit log is. Required. */
  database: Database;
  /** Events older than this many days are pruned; 0 prunes nothing. Default 90. */
  retentionDays?: number | undefined;
  /** Time between prunes, in milliseconds. Default 3600000 (an hour). */
  intervalMs?: number;
  /** Delay before the first prune, in milliseconds (it waits for start-up to settle). Default 5000. */
  firstDelayMs?: number;
  /** Where a prune's outcome and failures are logged. Default: nowhere. */
  logger?: Pick<Logger, "info" | "warn">;
  /** Clock in milliseconds. Default: `Date.now`. */
  now?: () => number;
}

/** A running retention timer. */
export interface AuditRetention {
  /** Stops the timer and waits for a prune under way. Safe to call more than once. */
  stop(): Promise<void>;
}

/**
 * Starts pruning audit events older than `retentionDays`, by timer (unref'd:
 * it never keeps the process alive). Instances sharing a database may each
 * run one: prunes serialise on the chain's lock and each removes only what
 * is still there. A failed prune is logged and tried again next time.
 */
export function startAuditRetention(options: AuditRetentionOptions): AuditRetention {
  const days = options.retentionDays ?? DEFAULT_AUDIT_RETENTION_DAYS;
  const intervalMs = options.intervalMs ?? 3_600_000;
  const now = options.now ?? Date.now;
  if (!Number.isSafeInteger(days) || days < 0)
    throw new RangeError("retentionDays must be a whole number of days, 0 or more");
  if (days === 0) return { stop: () => Promise.resolve() };
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;

  const arm = (delayMs: number) => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = prune().finally(() => arm(intervalMs));
    }, delayMs);
    timer.unref();
  };

  async function prune(): Promise<void> {
    try {
      const result = await pruneAuditEvents(options.database.db, new Date(now() - days * DAY_MS));
      if (result.deleted > 0) options.logger?.info({ ...result, retentionDays: days }, "audit events pruned");
    } catch (error) {
      options.logger?.warn({ err: error }, "audit prune failed; retrying at the next interval");
    }
  }

  arm(options.firstDelayMs ?? 5_000);
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
