/** How deep a cause chain is followed: Drizzle wraps the driver's error, which may wrap a socket error. */
const MAX_CAUSE_DEPTH = 5;

/**
 * `error` and its causes, outermost first, as records to read fields such as `code` from. Drizzle
 * wraps driver errors (DrizzleQueryError) with the driver's error as `cause`, so a SQLSTATE or a
 * socket error code is found a level or two down. Stops at a non-object or after a few levels,
 * so a cyclic chain cannot loop.
 */
export function* causeChain(error: unknown): Generator<Record<string, unknown>> {
  let current: unknown = error;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && typeof current === "object" && current !== null; depth++) {
    yield current as Record<string, unknown>;
    current = (current as { cause?: unknown }).cause;
  }
}

/** What a log line may say about a failure: its type, the first machine code in its chain, and a message. */
export interface CauseSummary {
  readonly type: string;
  /** The driver's or the system's code found first down the chain (`ECONNREFUSED`, a SQLSTATE such as `57P01`). */
  readonly code?: string;
  readonly message: string;
}

/**
 * A summary of `error` for logs that never carries query text or parameters: a query wrapper
 * (Drizzle's `DrizzleQueryError`, whose message is "Failed query: … params: …") is skipped for
 * the error it wraps, so the line names the driver's reason (`ECONNREFUSED`, `57P01`, …) and not
 * the values bound (a token's `jti` among them). No stack, no other fields.
 */
export function describeCause(error: unknown): CauseSummary {
  let summary: { type: string; message: string } | undefined;
  let code: string | undefined;
  for (const link of causeChain(error)) {
    const wrapper =
      link["name"] === "DrizzleQueryError" ||
      (typeof link["message"] === "string" && link["message"].startsWith("Failed query:"));
    if (code === undefined && (typeof link["code"] === "string" || typeof link["errno"] === "string")) {
      code = String(link["code"] ?? link["errno"]);
    }
    if (summary === undefined && !wrapper) {
      const message = typeof link["message"] === "string" ? link["message"] : "";
      summary = { type: typeof link["name"] === "string" ? link["name"] : "Error", message };
    }
    if (summary !== undefined && code !== undefined) break;
  }
  if (summary === undefined) {
    summary =
      typeof error === "object" && error !== null
        ? { type: "DrizzleQueryError", message: "query failed" }
        : { type: typeof error, message: String(error) };
  }
  return code === undefined ? summary : { ...summary, code };
}
