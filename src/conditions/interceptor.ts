/**
 * The interceptor's body stage: reads the request message of a call the
 * cheap decision admitted, runs the condition, loader, fallback and shadow
 * rule (see `access.ts`), reports the decision and enforces it.
 */
import { Code, ConnectError, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import type { Message } from "@bufbuild/protobuf";
import type { Allow } from "../decide/verdict.js";
import type { DecisionEvent } from "../connect/auth.js";
import { verdictToConnectError } from "../connect/errors.js";
import type { AccessPlan, AccessStage } from "./access.js";

type AnyRequest = UnaryRequest | StreamRequest;

/**
 * Decides `req` on its body and returns the request to pass on (a
 * server-streaming request's message is read here, so it is handed on
 * anew), or throws the refusal as a ConnectError.
 */
export async function admitBody<R extends AnyRequest>(
  req: R,
  allowed: Allow,
  access: AccessPlan,
  stage: AccessStage,
  onDecision: ((event: DecisionEvent) => void) | undefined,
): Promise<R> {
  const started = onDecision === undefined ? 0 : performance.now();
  let request: Message | undefined;
  let forwarded = req;
  if (!req.stream) {
    request = req.message as Message;
  } else if (req.method.methodKind === "server_streaming") {
    const messages: Message[] = [];
    for await (const message of req.message as AsyncIterable<Message>) messages.push(message);
    if (messages.length !== 1) {
      throw new ConnectError(`expected one request message, got ${messages.length}`, Code.InvalidArgument);
    }
    request = messages[0];
    forwarded = { ...req, message: createAsyncIterable(messages) };
  }
  const principal = allowed.principal;
  const outcome = stage.run(access, allowed, request, {
    method: req.method,
    principal,
    header: req.header,
    values: req.contextValues,
    signal: req.signal,
  });
  const { verdict, shadow } = outcome instanceof Promise ? await outcome : outcome;
  onDecision?.({
    method: req.method,
    verdict,
    stage: "body",
    durationMs: performance.now() - started,
    ...(shadow !== undefined && { shadow }),
  });
  if (verdict.outcome !== "allow") throw verdictToConnectError(verdict);
  return forwarded;
}
