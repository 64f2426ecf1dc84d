/**
 * Keeps open streaming calls under the auth state: an admitted server-,
 * client- or bidi-streaming call is decided again when something that
 * decided it changes, and ended with the refusal a new call would get.
 *
 * Cheap by construction: no per-call polling. One invalidation listener is
 * shared by every open call (a registry keyed by user id and token id finds
 * the affected ones); one timer per call waits for its token's `exp`; one
 * shared sweep re-checks everything at the cache's max age, which bounds a
 * lost notification. Timers are unref'd and cleared when the call ends.
 * Re-checks look the user up again past the cache (one lookup per token per
 * batch), at most a few at once, and a change to a call's own user or token
 * goes before the bulk of a sweep, so it still lands within a second.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import type { ContextValues, StreamRequest, StreamResponse, UnaryRequest, UnaryResponse } from "@connectrpc/connect";
import type { HeaderReader } from "../credential/bearer.js";
import { originOf } from "./origin.js";
import type { CallOrigin, Decide } from "../decide/decide.js";
import { MESSAGES, type Allow, type TokenIdentity, type Verdict } from "../decide/verdict.js";
import type { InvalidationEvent } from "../invalidation-event.js";
import type { PrincipalLookup } from "../principal.js";
import { authSignalKey, principalKey } from "./context.js";
import { authError, verdictToConnectError } from "./errors.js";

/**
 * What re-checking needs of a principal source beyond `load`; every member
 * is optional, and `createPrincipalSource` provides them all. Without
 * `onInvalidation` open calls follow changes only at the sweep interval.
 */
export interface RevalidationHooks {
  /** Loads bypassing any cache. Default: `load`. */
  reload?(userId: number, token: { jti: string; issuedAt: number }): Promise<PrincipalLookup>;
  /** Calls `listener` after each invalidation; returns a function that removes it. */
  onInvalidation?(listener: (event: InvalidationEvent) => void): () => void;
  /** Longest time a cached lookup is trusted, in milliseconds. */
  readonly maxAgeMs?: number;
}

/** Tuning of `createAuth`'s `revalidateStreams`. */
export interface StreamRevalidationOptions {
  /**
   * Every open call is decided again at least this often, in milliseconds,
   * so a lost invalidation notification is bounded. Default: the principal
   * source's `maxAgeMs` (30000 for `createPrincipalSource`'s default), else
   * 30000.
   */
  intervalMs?: number;
}

/** What {@link createCallWatch} is built from; resolved once by `createAuth`. */
export interface CallWatchOptions {
  /** The decision for re-checks at `exp` (cached lookups are fine: the token is what changed). */
  decide: Decide;
  /**
   * A decision whose user lookups bypass caches, made anew for each batch of
   * re-checks (so calls of one token share one lookup within a batch).
   */
  freshDecide: () => Decide;
  /** Reports a re-check (logs, metrics). */
  report: ((method: DescMethod, verdict: Verdict, durationMs: number) => void) | undefined;
  /** The invalidation listener registration, when the principal source offers one. */
  onInvalidation: RevalidationHooks["onInvalidation"];
  /** Sweep period, milliseconds. */
  intervalMs: number;
  /** The verifier's leeway when known; otherwise the token is re-checked each second from `exp`. */
  leewaySeconds: number | undefined;
}

/** The registry of open calls; see {@link createCallWatch}. */
export interface CallWatch {
  /**
   * Runs an admitted streaming call under watch: the handler's `ctx.signal`
   * and `authSignal(ctx)` abort, and the request and response streams fail,
   * with the refusal once the call is no longer allowed.
   */
  run(
    req: StreamRequest,
    verdict: Allow & { readonly token: TokenIdentity },
    next: (req: UnaryRequest | StreamRequest) => Promise<UnaryResponse | StreamResponse>,
  ): Promise<UnaryResponse | StreamResponse>;
  /** Calls being watched now. */
  readonly size: number;
}

/** The verifier's own upper bound of leeway: past `exp` + this, a still-valid token is not ours to time. */
const MAX_LEEWAY_SECONDS = 60;
/** Timers fire at the whole second the verifier compares with; this much later, so never a hair early. */
const EXPIRY_MARGIN_MS = 10;
/** setTimeout's largest delay; longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Re-checks in flight at once: a few, so a sweep over thousands of open
 * calls leaves the connection pool (postgres.js: 10 by default) to new calls.
 */
const MAX_CONCURRENT_RECHECKS = 4;

/** `urgent`: a change to the call's own user or token, or its expiry; `bulk`: the sweep, or a change to everyone. */
type Priority = "urgent" | "bulk";

/** Why a call is decided again: a change announced (or the sweep), its token's `exp`, or a step past it. */
type RecheckCause = "change" | "expiry" | "step";

interface WatchedCall {
  readonly method: DescMethod;
  readonly headers: HeaderReader;
  /** Where the call came from (client certificate, socket peer): re-checks decide with it, as the call was. */
  readonly origin: CallOrigin;
  readonly token: TokenIdentity;
  readonly values: ContextValues;
  readonly controller: AbortController;
  expiryTimer: NodeJS.Timeout | undefined;
  /** A re-check is waiting for its turn, and with which priority. */
  queued: Priority | undefined;
  /** Numbers queue entries, so a superseded one is skipped. */
  ticket: number;
  /** A re-check is in flight. */
  checking: boolean;
  /** Something changed while it was: decide again (fresh) when it returns. */
  again: boolean;
  /** …and an expiry timer was among it (also while queued). */
  againTimed: boolean;
  ended: boolean;
}

/**
 * Creates the registry of open calls behind `createAuth`'s
 * `revalidateStreams`.
 */
export function createCallWatch(options: CallWatchOptions): CallWatch {
  const { freshDecide, intervalMs, leewaySeconds } = options;
  const calls = new OpenCalls(() => recheckAll(), intervalMs);
  const { recheck, armExpiry } = createRechecks(options, end);
  let subscribed = false;

  function onEvent(event: InvalidationEvent): void {
    if (calls.size === 0) return;
    const batch = freshDecide();
    if (event.kind === "all") recheckAll();
    else calls.affectedBy(event, (call) => recheck(call, batch, "change", "urgent"));
  }

  function recheckAll(): void {
    const batch = freshDecide();
    calls.each((call) => recheck(call, batch, "change", "bulk"));
  }

  function open(req: StreamRequest, token: TokenIdentity): WatchedCall {
    const call: WatchedCall = {
      method: req.method,
      headers: req.header,
      origin: originOf(req.contextValues),
      token,
      values: req.contextValues,
      controller: new AbortController(),
      expiryTimer: undefined,
      queued: undefined,
      ticket: 0,
      checking: false,
      again: false,
      againTimed: false,
      ended: false,
    };
    calls.add(call);
    if (token.expiresAt !== undefined) {
      armExpiry(call, Math.ceil(token.expiresAt + (leewaySeconds ?? 0)) * 1000 + EXPIRY_MARGIN_MS, "expiry");
    }
    if (!subscribed && options.onInvalidation !== undefined) {
      // Registered on first use and kept: one listener serves every call.
      subscribed = true;
      options.onInvalidation(onEvent);
    }
    return call;
  }

  function close(call: WatchedCall): void {
    if (call.ended) return;
    call.ended = true;
    clearTimeout(call.expiryTimer);
    calls.remove(call);
  }

  function end(call: WatchedCall, reason: Error): void {
    close(call);
    call.controller.abort(reason);
  }

  return {
    get size() {
      return calls.size;
    },
    async run(req, verdict, next) {
      if (req.signal.aborted) return next(req);
      const call = open(req, verdict.token);
      const authAbort = call.controller.signal;
      // Connect aborts the call's signal when the call ends, however it ends.
      req.signal.addEventListener("abort", () => close(call), { once: true });
      req.contextValues.set(authSignalKey, authAbort);
      const response = await raceAbort(
        next({
          ...req,
          signal: linkSignals(req.signal, authAbort),
          message: failOnAbort(req.message, authAbort),
        }),
        authAbort,
      );
      return response.stream ? { ...response, message: failOnAbort(response.message, authAbort) } : response;
    },
  };
}

/**
 * Deciding open calls again: each re-check waits its turn (a few at once,
 * changes to a call's own user or token before the bulk of a sweep), is
 * decided, and either ends the call (`end`) or, at its token's `exp`, arms
 * the next look.
 */
function createRechecks(
  options: Pick<CallWatchOptions, "decide" | "freshDecide" | "report">,
  end: (call: WatchedCall, reason: Error) => void,
): {
  recheck(call: WatchedCall, decideNow: Decide, cause: RecheckCause, priority: Priority): void;
  armExpiry(call: WatchedCall, at: number, cause: "expiry" | "step"): void;
} {
  const { decide, freshDecide, report } = options;
  // Re-checks wait their turn, so that a sweep over many open calls never
  // holds more than a few database connections, and a re-check caused by
  // a specific change (or an expiry) goes before the bulk.
  const limiter = createLimiter(MAX_CONCURRENT_RECHECKS);

  function recheck(call: WatchedCall, decideNow: Decide, cause: RecheckCause, priority: Priority): void {
    if (call.ended) return;
    const timed = cause !== "change";
    if (call.checking) {
      // A bulk re-check right after this one would find nothing new.
      if (priority === "bulk") return;
      call.again = true;
      // The timer that fired is spent: the re-run must arm the next step.
      if (timed) call.againTimed = true;
      return;
    }
    if (call.queued === "urgent" || (call.queued === "bulk" && priority === "bulk")) {
      // A queued check has not looked yet, so it will see this change too.
      if (timed) call.againTimed = true;
      return;
    }
    // Not queued, or queued in bulk and now urgent: queue (again); the turn
    // of a superseded entry is skipped.
    const ticket = ++call.ticket;
    call.queued = priority;
    limiter(priority, () => {
      if (ticket !== call.ticket || call.ended) return undefined;
      call.queued = undefined;
      call.checking = true;
      const effective: RecheckCause = cause === "change" && call.againTimed ? "step" : cause;
      call.againTimed = false;
      return check(call, decideNow, effective);
    });
  }

  function check(call: WatchedCall, decideNow: Decide, cause: RecheckCause): Promise<void> {
    const started = performance.now();
    // A decision never throws; should one reject all the same, the call
    // cannot be judged, and fails closed like an unavailable backend.
    return Promise.resolve()
      .then(() => decideNow(call.method, call.headers, undefined, call.origin))
      .then(
        (verdict) => {
          try {
            // Stepping through a leeway we were not told about, a still
            // valid token is no news: only the refusal is reported.
            if (cause !== "step" || verdict.outcome !== "allow")
              report?.(call.method, verdict, performance.now() - started);
          } catch {
            // Logs and metrics are best effort; the decision stands.
          }
          apply(call, verdict, cause);
        },
        (error: unknown) =>
          end(call, authError(MESSAGES.AUTH_BACKEND_UNAVAILABLE, Code.Unavailable, "AUTH_BACKEND_UNAVAILABLE", error)),
      )
      .finally(() => {
        call.checking = false;
        if (call.again && !call.ended) {
          const timed = call.againTimed;
          call.again = call.againTimed = false;
          recheck(call, freshDecide(), timed ? "step" : "change", "urgent");
        }
      });
  }

  function apply(call: WatchedCall, verdict: Verdict, cause: RecheckCause): void {
    if (call.ended) return;
    if (verdict.outcome !== "allow") {
      end(call, verdictToConnectError(verdict));
      return;
    }
    // Handlers that read the caller later see the current account.
    if (verdict.principal !== undefined) call.values.set(principalKey, verdict.principal);
    // The token still verifies at `exp` (+ the leeway we were told): the
    // verifier's leeway is larger, so look again at the next second, up to
    // the largest leeway a verifier accepts.
    const exp = call.token.expiresAt;
    if (cause !== "change" && exp !== undefined && Date.now() < (exp + MAX_LEEWAY_SECONDS + 1) * 1000) {
      armExpiry(call, (Math.floor(Date.now() / 1000) + 1) * 1000 + EXPIRY_MARGIN_MS, "step");
    }
  }

  function armExpiry(call: WatchedCall, at: number, cause: "expiry" | "step"): void {
    clearTimeout(call.expiryTimer);
    const wait = Math.min(Math.max(at - Date.now(), 0), MAX_TIMER_MS);
    call.expiryTimer = setTimeout(() => {
      call.expiryTimer = undefined;
      if (Date.now() < at) armExpiry(call, at, cause);
      else recheck(call, decide, cause, "urgent");
    }, wait);
    call.expiryTimer.unref();
  }

  return { recheck, armExpiry };
}

/**
 * The open calls under watch, found by the user and the token that a change
 * names; the shared sweep runs while there is any.
 */
class OpenCalls {
  readonly #byUser = new Map<number, Set<WatchedCall>>();
  readonly #byJti = new Map<string, Set<WatchedCall>>();
  readonly #sweep: () => void;
  readonly #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  size = 0;

  constructor(sweep: () => void, intervalMs: number) {
    this.#sweep = sweep;
    this.#intervalMs = intervalMs;
  }

  add(call: WatchedCall): void {
    add(this.#byUser, call.token.userId, call);
    add(this.#byJti, call.token.jti, call);
    this.size++;
    if (this.#timer === undefined) {
      this.#timer = setInterval(this.#sweep, this.#intervalMs);
      this.#timer.unref();
    }
  }

  remove(call: WatchedCall): void {
    remove(this.#byUser, call.token.userId, call);
    remove(this.#byJti, call.token.jti, call);
    this.size--;
    if (this.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  /** The calls of the user or token a change names. */
  affectedBy(event: InvalidationEvent & { kind: "user" | "token" }, fn: (call: WatchedCall) => void): void {
    forEach(event.kind === "user" ? this.#byUser.get(event.userId) : this.#byJti.get(event.jti), fn);
  }

  each(fn: (call: WatchedCall) => void): void {
    for (const calls of this.#byUser.values()) forEach(calls, fn);
  }
}

/**
 * Runs tasks at most `max` at a time, urgent ones first, each queue in
 * order. Queues are arrays read from a moving head, so a long bulk queue
 * costs no `shift` per task.
 */
function createLimiter(max: number): (priority: Priority, task: () => Promise<void> | undefined) => void {
  const queues: Record<Priority, { tasks: (() => Promise<void> | undefined)[]; head: number }> = {
    urgent: { tasks: [], head: 0 },
    bulk: { tasks: [], head: 0 },
  };
  let active = 0;
  const take = (queue: { tasks: (() => Promise<void> | undefined)[]; head: number }) => {
    if (queue.head === queue.tasks.length) return undefined;
    const task = queue.tasks[queue.head++];
    if (queue.head === queue.tasks.length) queue.tasks.length = queue.head = 0;
    return task;
  };
  function pump(): void {
    while (active < max) {
      const task = take(queues.urgent) ?? take(queues.bulk);
      if (task === undefined) return;
      const running = task();
      // A skipped (superseded) entry takes no slot.
      if (running === undefined) continue;
      active++;
      running
        .finally(() => {
          active--;
          pump();
        })
        // A check settles its own failures; this keeps a bug in one from
        // becoming an unhandled rejection.
        .catch(() => {});
    }
  }
  return (priority, task) => {
    queues[priority].tasks.push(task);
    pump();
  };
}

function forEach<T>(set: Set<T> | undefined, fn: (item: T) => void): void {
  if (set === undefined) return;
  // A copy: a re-check that ends a call synchronously removes it from the set.
  for (const item of [...set]) fn(item);
}

function add<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  let set = map.get(key);
  if (set === undefined) map.set(key, (set = new Set()));
  set.add(value);
}

function remove<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (set === undefined) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}

/** A signal aborted with the reason of whichever of `a` and `b` aborts first. */
function linkSignals(a: AbortSignal, b: AbortSignal): AbortSignal {
  const linked = new AbortController();
  const fromA = () => linked.abort(a.reason);
  const fromB = () => linked.abort(b.reason);
  // Both are per-call signals, so the listeners go with the call.
  a.addEventListener("abort", fromA, { once: true });
  b.addEventListener("abort", fromB, { once: true });
  return linked.signal;
}

/** `promise`, or a rejection with the signal's reason if it aborts first. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/**
 * `source`, whose pending and later reads fail with the signal's reason once
 * it aborts, and which is then told to return: a stream that a handler
 * never ends on its own still ends. No `Promise.race` per message, whose
 * reactions on a long-pending promise would pile up over a long stream.
 */
function failOnAbort<T>(source: AsyncIterable<T>, signal: AbortSignal): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const it = source[Symbol.asyncIterator]();
      let fail: ((reason: unknown) => void) | undefined;
      const onAbort = () => {
        fail?.(signal.reason);
        fail = undefined;
        // Queued behind a pending read on an async generator; runs its
        // `finally` blocks once it is suspended.
        it.return?.().catch(() => {});
      };
      signal.addEventListener("abort", onAbort, { once: true });
      return {
        next() {
          if (signal.aborted) return Promise.reject(signal.reason);
          return new Promise<IteratorResult<T>>((resolve, reject) => {
            fail = reject;
            it.next().then(
              (result) => {
                fail = undefined;
                resolve(result);
              },
              (error: unknown) => {
                fail = undefined;
                reject(error);
              },
            );
          });
        },
        return(value?: unknown) {
          signal.removeEventListener("abort", onAbort);
          return it.return?.(value) ?? Promise.resolve({ done: true, value: value as T });
        },
      };
    },
  };
}
