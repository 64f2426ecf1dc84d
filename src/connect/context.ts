import { createContextKey } from "@connectrpc/connect";
import type { Verdict } from "../decide/verdict.js";
import type { Principal } from "../principal.js";

/**
 * Context value holding the caller, set by the auth layer before the handler
 * runs. Read it with the handler helpers (`getUser`, `requireUser`, …) rather
 * than directly.
 */
export const principalKey = createContextKey<Principal | undefined>(undefined, {
  description: "protoguard principal",
});

/**
 * The decision already made for this call (by the HTTP pre-filter or the
 * request gate), so the interceptor does not make it twice.
 */
export const verdictKey = createContextKey<Verdict | undefined>(undefined, {
  description: "protoguard verdict",
});

/**
 * Aborted when the auth layer ends this open call because the caller's
 * token, account or permissions no longer allow it; the reason is the
 * ConnectError the client receives. Read it with `authSignal(ctx)`.
 */
export const authSignalKey = createContextKey<AbortSignal | undefined>(undefined, {
  description: "protoguard auth signal",
});
