/**
 * Long-lived handlers for the stream re-check tests: each runs until the
 * call ends and ignores every signal on purpose (the auth layer must end the
 * call anyway), but records what `authSignal(ctx)` and `ctx.signal` carried
 * when they aborted.
 */
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { GuardedService, StaffOnlyService } from "../../gen/guardtest/v1/guarded_pb.js";
import { authSignal } from "../../src/connect/helpers.js";
import { getUser } from "../../src/exports/protoguard.js";

/** What a handler saw when the auth layer aborted its call. */
export interface SeenAbort {
  readonly method: string;
  readonly authReason: unknown;
  /** `ctx.signal.reason` at that moment (undefined if not aborted yet). */
  readonly ctxReason: unknown;
}

/** Observations shared between the handlers and the test. */
export interface StreamProbe {
  readonly aborts: SeenAbort[];
  /** Messages the server-stream handlers have produced in total. */
  emitted: number;
}

export function createStreamProbe(): StreamProbe {
  return { aborts: [], emitted: 0 };
}

const TICK_MS = 100;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * GuardedService and StaffOnlyService with handlers that never end on their
 * own: server streams emit every 100 ms, client streams read until the
 * client ends, bidi streams echo until the client ends.
 */
export function streamingRoutes(probe: StreamProbe): (router: ConnectRouter) => void {
  function observe(method: string, ctx: HandlerContext): void {
    const signal = authSignal(ctx);
    signal.addEventListener("abort", () => {
      probe.aborts.push({
        method,
        authReason: signal.reason,
        ctxReason: ctx.signal.aborted ? ctx.signal.reason : undefined,
      });
    });
  }
  const pong = (text: string, ctx: HandlerContext) => ({ text, username: getUser(ctx)?.username ?? "" });
  async function* ticking(method: string, req: { text: string }, ctx: HandlerContext) {
    observe(method, ctx);
    for (;;) {
      probe.emitted++;
      yield pong(req.text, ctx);
      await sleep(TICK_MS);
    }
  }
  async function collect(method: string, reqs: AsyncIterable<{ text: string }>, ctx: HandlerContext) {
    observe(method, ctx);
    const texts: string[] = [];
    for await (const r of reqs) texts.push(r.text);
    return pong(texts.join(","), ctx);
  }
  async function* echo(method: string, reqs: AsyncIterable<{ text: string }>, ctx: HandlerContext) {
    observe(method, ctx);
    for await (const r of reqs) yield pong(r.text, ctx);
  }
  return (router) => {
    router.service(GuardedService, {
      publicServerStream: (req, ctx) => ticking("publicServerStream", req, ctx),
      permissionServerStream: (req, ctx) => ticking("permissionServerStream", req, ctx),
      staffClientStream: (reqs, ctx) => collect("staffClientStream", reqs, ctx),
      publicClientStream: (reqs, ctx) => collect("publicClientStream", reqs, ctx),
      superuserBidiStream: (reqs, ctx) => echo("superuserBidiStream", reqs, ctx),
      authenticatedBidiStream: (reqs, ctx) => echo("authenticatedBidiStream", reqs, ctx),
      authenticatedUnary: (req, ctx) => pong(req.text, ctx),
    });
    router.service(StaffOnlyService, {
      inheritedServerStream: (req, ctx) => ticking("inheritedServerStream", req, ctx),
    });
  };
}
