/**
 * The interceptor's body stage: reads the request message of a call the
 * cheap decision admitted, runs the condition, loader, fallback and shadow
 * rule (see `access.ts`), reports the decision and enforces it.
 */
import { Code, ConnectError, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import type { Message } from "@bufbuild/protobuf";
import type { Allow } from "../decide/verdict.js";
import type { DecisionEvent } from "../decide/event.js";
import { verdictToConnectError } from "./errors.js";
import type { AccessPlan, AccessResult, AccessStage } from "../decide/access.js";

type AnyRequest = UnaryRequest | StreamRequest;
type Report = ((event: DecisionEvent) => void) | undefined;

/**
 * Decides `req` on its body and returns the request to pass on (a
 * server-streaming request's message is read here, so it is handed on
 * anew), or throws the refusal as a ConnectError. A unary call whose stage
 * calls no code is decided synchronously: no promise on the common path.
 */
export function admitBody<R extends AnyRequest>(
  req: R,
  allowed: Allow,
  access: AccessPlan,
  stage: AccessStage,
  onDecision: Report,
): R | Promise<R> {
  if (req.stream) return admitStream(req, allowed, access, stage, onDecision);
  const started = onDecision === undefined ? 0 : performance.now();
  const outcome = stage.run(access, allowed, req.message as Message, req);
  if (outcome instanceof Promise) return outcome.then((result) => enforce(req, result, started, onDecision));
  return enforce(req, outcome, started, onDecision);
}

async function admitStream<R extends AnyRequest>(
  req: R,
  allowed: Allow,
  access: AccessPlan,
  stage: AccessStage,
  onDecision: Report,
): Promise<R> {
  const started = onDecision === undefined ? 0 : performance.now();
  let request: Message | undefined;
  let forwarded = req;
  if (req.method.methodKind === "server_streaming") {
    const messages: Message[] = [];
    for await (const message of req.message as AsyncIterable<Message>) messages.push(message);
    if (messages.length !== 1) {
      throw new ConnectError(`expected one request message, got ${messages.length}`, Code.InvalidArgument);
    }
    request = messages[0];
    forwarded = { ...req, message: createAsyncIterable(messages) };
  }
  // Client and bidi streams are decided before any message: `request` stays undefined.
  return enforce(forwarded, await stage.run(access, allowed, request, req), started, onDecision);
}

function enforce<R extends AnyRequest>(req: R, result: AccessResult, started: number, onDecision: Report): R {
  const { verdict, shadow } = result;
  onDecision?.({
    method: req.method,
    verdict,
    stage: "body",
    durationMs: performance.now() - started,
    ...(shadow !== undefined && { shadow }),
  });
  if (verdict.outcome !== "allow") throw verdictToConnectError(verdict);
  return req;
}
