/**
 * How a CLI write reaches the audit log: as actor `cli:<OS user>`, in the
 * same transaction as the write.
 */
import { userInfo } from "node:os";
import type { AuditContext, AuditEventInput } from "../audit-event.js";
import type { Runtime } from "../runtime/runtime.js";
import { recordAuditEvent } from "../store/audit.js";

/** What a CLI command records: an event without its context (the CLI supplies that). */
export type CliAuditEvent = Omit<AuditEventInput, "context">;

/**
 * The operating-system user running this process: `os.userInfo()`'s name,
 * or `uid:<n>` where the uid has no name (a container's arbitrary uid).
 */
export function osUserName(): string {
  try {
    const { username } = userInfo();
    if (username !== "") return username;
  } catch {
    // No passwd entry for this uid.
  }
  return typeof process.getuid === "function" ? `uid:${process.getuid()}` : "unknown";
}

/** The audit context of a CLI command: actor `cli` with the OS user; no peer, user agent or request id. */
export function cliAuditContext(): AuditContext {
  return { actor: { kind: "cli", osUser: osUserName() } };
}

/**
 * Runs `work` in one transaction with the audit events it yields, so the
 * write and its record commit together or not at all. `work` gets a runtime
 * whose database handle is that transaction; its own transactions nest as
 * savepoints.
 */
export async function runAudited<P, T>(
  runtime: Runtime,
  input: P,
  work: (runtime: Runtime, input: P) => Promise<T>,
  audit: (result: T, input: P) => CliAuditEvent | readonly CliAuditEvent[] | undefined,
): Promise<T> {
  const context = cliAuditContext();
  return runtime.database.db.transaction(async (tx) => {
    const scoped: Runtime = { ...runtime, database: { ...runtime.database, db: tx } };
    const result = await work(scoped, input);
    const events = audit(result, input);
    for (const event of events === undefined ? [] : Array.isArray(events) ? events : [events]) {
      await recordAuditEvent(tx, { ...(event as CliAuditEvent), context });
    }
    return result;
  });
}
