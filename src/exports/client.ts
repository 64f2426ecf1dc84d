/**
 * The client side of protoguard, for connect-web in the browser and
 * connect-node on servers: a session that logs in, attaches the bearer
 * token to every call, and refreshes it by itself. Loads nothing of the
 * server (no Node built-ins), so it bundles for the browser.
 *
 * @example
 * ```ts
 * import { createSession } from "protoguard/client";
 *
 * const session = createSession({ transport: createConnectTransport({ baseUrl }) });
 * const transport = createConnectTransport({ baseUrl, interceptors: [session.interceptor] });
 * await session.login({ username: "alice", password });
 * ```
 *
 * @module protoguard/client
 */
export { createSession } from "../client/session.js";
export type { Session, SessionEndReason, SessionOptions, SessionUser } from "../client/session.js";
export { memoryStorage, webStorage } from "../client/storage.js";
export type { SessionStorage, SessionTokens, WebStorageLike } from "../client/storage.js";
export { authErrorReason } from "../connect/errors.js";
export { retryDelayMs } from "../connect/errors.js";
export type { StepUpCredentials, StepUpPrompt } from "../client/session.js";
