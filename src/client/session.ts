import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { AuthService } from "../../gen/protoguard/v1/auth_pb.js";
import { authErrorMetadata, authErrorReason } from "../connect/errors.js";
import { memoryStorage, type SessionStorage, type SessionTokens } from "./storage.js";

/**
 * Why a session ended: `"LOGOUT"` when the app logged out, otherwise the
 * `ErrorInfo` reason of the failed Refresh (`TOKEN_REVOKED` when the refresh
 * token was already used elsewhere, `USER_INACTIVE`, `TOKEN_EXPIRED` for an
 * expired refresh token, ...), or `"REFRESH_FAILED"` when it carried none.
 */
export type SessionEndReason = "LOGOUT" | "REFRESH_FAILED" | (string & {});

/** The signed-in user, as Login returns it. */
export interface SessionUser {
  readonly id: number;
  readonly username: string;
  readonly email: string;
}

/** Options for {@link createSession}. */
export interface SessionOptions {
  /**
   * What the session calls `protoguard.v1.AuthService` through (Login,
   * Refresh, Logout). It may be the app's own transport, interceptor
   * included: the session never handles its own AuthService calls. Required.
   */
  transport: Transport;
  /** Where the token pair is kept. Default: {@link memoryStorage}. */
  storage?: SessionStorage;
  /**
   * Refresh before a call when the access token expires within this many
   * milliseconds, so calls do not fail first. Default: 10000.
   */
  refreshBeforeExpiryMs?: number;
  /**
   * Asked for a credential when a call is refused `STEP_UP_REQUIRED` (the method's rule sets
   * `max_auth_age` or `require_totp`): given what the server asks for, it returns the password
   * and/or the one-time code the user entered (a prompt, a dialog), or undefined to give up.
   * The session then calls `AuthService.StepUp`, keeps the fresh access token, and retries the
   * call once; a failed StepUp (a wrong code) reaches the caller as its error. Concurrent
   * refused calls share one prompt. Unary calls only, like the retry after `TOKEN_EXPIRED`.
   * Default: none, so the refusal reaches the caller.
   */
  onStepUp?: (required: StepUpPrompt) => Promise<StepUpCredentials | undefined>;
  /** Called once when the session ends, with the reason. Default: none. */
  onSessionEnd?: (reason: SessionEndReason) => void;
  /** Clock in milliseconds. Default: `Date.now`. */
  now?: () => number;
}

/** What a `STEP_UP_REQUIRED` refusal asks for (its ErrorInfo metadata), as `onStepUp` is given it. */
export interface StepUpPrompt {
  /** The longest time since the user entered a credential the method accepts, in seconds, when it sets one. */
  readonly maxAuthAge?: number;
  /** Whether the method needs a one-time code (`otpCode`), not the password alone. */
  readonly requireTotp: boolean;
}

/** What `onStepUp` answers: the credential(s) to send to `AuthService.StepUp`. */
export interface StepUpCredentials {
  readonly password?: string;
  readonly otpCode?: string;
}

/** A client-side session: see {@link createSession}. */
export interface Session {
  /**
   * Put it into the app's transports (`interceptors: [session.interceptor]`):
   * attaches `authorization: Bearer …`, refreshes once for any number of
   * concurrent calls, and retries a unary call that failed with
   * `TOKEN_EXPIRED` once (or `STEP_UP_REQUIRED`, after `onStepUp`). Streaming
   * calls are refreshed before they start and never retried.
   */
  readonly interceptor: Interceptor;
  /** Logs in (Login RPC) and keeps the token pair. Throws the RPC's error. */
  login(credentials: { username: string; password: string; otpCode?: string }): Promise<SessionUser>;
  /**
   * Revokes the refresh token's family on the server (Logout RPC, best
   * effort) and forgets the tokens; `onSessionEnd("LOGOUT")`.
   */
  logout(): Promise<void>;
  /** Whether a token pair is held (loaded from storage on first use). */
  isLoggedIn(): Promise<boolean>;
  /**
   * Refreshes now (joining a refresh already in flight).
   * @returns false when there was no session or it ended.
   */
  refresh(): Promise<boolean>;
}

/** Methods of AuthService that the session calls itself, with tokens it passes explicitly. */
function isSessionCall(method: DescMethod): boolean {
  return method.parent.typeName === AuthService.typeName && method.name !== "WhoAmI";
}

/** `exp` of a JWT in milliseconds, read without verifying (the server verifies). */
function expiresAt(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const { exp } = JSON.parse(atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), "="))) as {
      exp?: unknown;
    };
    return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Creates a client session for a protoguard server: logs in, keeps the token
 * pair, and refreshes it by itself, as the django-cfg reference tells
 * clients to ("refresh the access token using the refresh token" when the
 * UNAUTHENTICATED detail says expired), once for any number of calls.
 *
 * When Refresh fails as UNAUTHENTICATED (the refresh token was reused
 * elsewhere, revoked, or its user deactivated), the session ends cleanly:
 * tokens cleared, `onSessionEnd(reason)` called, and the call that needed
 * the refresh gets the UNAUTHENTICATED error. Other failures (the server is
 * unreachable) keep the session and reach the caller as they are.
 *
 * @example
 * ```ts
 * import { createSession, webStorage } from "protoguard/client";
 *
 * const base = createConnectTransport({ baseUrl });
 * const session = createSession({ transport: base, storage: webStorage(sessionStorage) });
 * const transport = createConnectTransport({ baseUrl, interceptors: [session.interceptor] });
 * await session.login({ username, password });
 * await createClient(AccountService, transport).getProfile({});
 * ```
 */
export function createSession(options: SessionOptions): Session {
  const auth = createClient(AuthService, options.transport);
  const storage = options.storage ?? memoryStorage();
  const refreshBeforeExpiryMs = options.refreshBeforeExpiryMs ?? 10_000;
  const now = options.now ?? Date.now;
  const onSessionEnd = options.onSessionEnd;
  const onStepUp = options.onStepUp;

  /** The pair in use; `null` until loaded from storage. */
  let current: SessionTokens | undefined | null = null;
  let loading: Promise<SessionTokens | undefined> | undefined;
  /** The one refresh in flight, shared by every call that needs it. */
  let refreshing: Promise<SessionTokens | undefined> | undefined;

  async function tokens(): Promise<SessionTokens | undefined> {
    if (current !== null) return current;
    loading ??= Promise.resolve(storage.load()).then((loaded) => {
      if (current === null) current = loaded;
      return current;
    });
    return loading;
  }

  async function keep(next: SessionTokens): Promise<void> {
    current = next;
    await storage.save(next);
  }

  async function end(reason: SessionEndReason): Promise<void> {
    if (current === undefined) return;
    current = undefined;
    await storage.clear();
    onSessionEnd?.(reason);
  }

  /**
   * A fresh pair replacing `used`: the current one if another call already
   * refreshed, else the result of the one refresh in flight (starting it).
   * `undefined` when the session ended.
   */
  function refreshFrom(used: SessionTokens): Promise<SessionTokens | undefined> {
    if (current !== used) return Promise.resolve(current ?? undefined);
    refreshing ??= (async () => {
      try {
        const answer = await auth.refresh({ refreshToken: used.refreshToken });
        const next = { accessToken: answer.accessToken, refreshToken: answer.refreshToken };
        // A logout (or a new login) while the refresh was in flight wins.
        if (current !== used) return current ?? undefined;
        await keep(next);
        return next;
      } catch (error) {
        const connectError = ConnectError.from(error);
        if (connectError.code !== Code.Unauthenticated) throw connectError;
        if (current === used) await end(authErrorReason(connectError) ?? "REFRESH_FAILED");
        return undefined;
      } finally {
        refreshing = undefined;
      }
    })();
    return refreshing;
  }

  /** The one step-up in flight, shared by every call refused while it runs. */
  let steppingUp: Promise<SessionTokens | undefined> | undefined;

  /**
   * A pair with a stepped-up access token replacing `used`'s, or undefined when the app gave
   * no credential. A StepUp failure is thrown.
   */
  function stepUpFrom(used: SessionTokens, refusal: ConnectError): Promise<SessionTokens | undefined> {
    if (current !== used && current != null) return Promise.resolve(current);
    steppingUp ??= (async () => {
      try {
        const metadata = authErrorMetadata(refusal);
        const maxAuthAge = Number(metadata.maxAuthAgeSeconds);
        const credentials = await onStepUp!({
          ...(Number.isFinite(maxAuthAge) && metadata.maxAuthAgeSeconds !== undefined && { maxAuthAge }),
          requireTotp: metadata.requireTotp === "true",
        });
        if (credentials === undefined) return undefined;
        const answer = await auth.stepUp(
          { password: credentials.password ?? "", otpCode: credentials.otpCode ?? "" },
          { headers: { authorization: `Bearer ${used.accessToken}` } },
        );
        // A logout (or a new login) while the prompt was open wins.
        if (current !== used) return current ?? undefined;
        const next = { accessToken: answer.accessToken, refreshToken: used.refreshToken };
        await keep(next);
        return next;
      } finally {
        steppingUp = undefined;
      }
    })();
    return steppingUp;
  }

  const sessionEnded = () => new ConnectError("the session ended: log in again", Code.Unauthenticated);

  const interceptor: Interceptor = (next) => async (req) => {
    if (isSessionCall(req.method)) return next(req);
    let pair = await tokens();
    if (pair === undefined) return next(req);
    const exp = expiresAt(pair.accessToken);
    if (exp !== undefined && exp - now() <= refreshBeforeExpiryMs) {
      const fresh = await refreshFrom(pair);
      if (fresh === undefined) throw sessionEnded();
      pair = fresh;
    }
    req.header.set("authorization", `Bearer ${pair.accessToken}`);
    try {
      return await next(req);
    } catch (error) {
      // A streaming call's request may already be consumed: never replayed.
      if (req.stream) throw error;
      const connectError = ConnectError.from(error);
      if (connectError.code !== Code.Unauthenticated) throw error;
      const reason = authErrorReason(connectError);
      if (reason === "STEP_UP_REQUIRED" && onStepUp !== undefined) {
        const stepped = await stepUpFrom(pair, connectError);
        if (stepped === undefined) throw error;
        req.header.set("authorization", `Bearer ${stepped.accessToken}`);
        return next(req);
      }
      if (reason !== "TOKEN_EXPIRED") throw error;
      const fresh = await refreshFrom(pair);
      if (fresh === undefined) throw error;
      req.header.set("authorization", `Bearer ${fresh.accessToken}`);
      return next(req);
    }
  };

  return {
    interceptor,
    async login({ username, password, otpCode }) {
      const answer = await auth.login({ username, password, otpCode: otpCode ?? "" });
      await keep({ accessToken: answer.accessToken, refreshToken: answer.refreshToken });
      const user = answer.user;
      return { id: user?.id ?? 0, username: user?.username ?? username, email: user?.email ?? "" };
    },
    async logout() {
      const pair = await tokens();
      if (pair === undefined) return;
      try {
        await auth.logout({ refreshToken: pair.refreshToken });
      } catch (error) {
        // Already revoked or expired on the server: logged out all the same.
        if (ConnectError.from(error).code !== Code.Unauthenticated) {
          await end("LOGOUT");
          throw error;
        }
      }
      await end("LOGOUT");
    },
    async isLoggedIn() {
      return (await tokens()) !== undefined;
    },
    async refresh() {
      const pair = await tokens();
      if (pair === undefined) return false;
      return (await refreshFrom(pair)) !== undefined;
    },
  };
}
