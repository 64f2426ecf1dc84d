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
