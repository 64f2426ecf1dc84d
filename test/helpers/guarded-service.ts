import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { GuardedService, StaffOnlyService, UnannotatedService } from "../../gen/guardtest/v1/guarded_pb.js";
import { getUser } from "../../src/exports/protoguard.js";

/** Handlers for the test services: each answers with the caller's username. */
export function guardedRoutes(router: ConnectRouter): void {
  const pong = (text: string, ctx: HandlerContext) => ({ text, username: getUser(ctx)?.username ?? "" });
  const unary = (req: { text: string }, ctx: HandlerContext) => pong(req.text, ctx);
  async function* serverStream(req: { text: string }, ctx: HandlerContext) {
    yield pong(req.text, ctx);
    yield pong(req.text, ctx);
  }
  async function clientStream(reqs: AsyncIterable<{ text: string }>, ctx: HandlerContext) {
    const texts: string[] = [];
    for await (const r of reqs) texts.push(r.text);
    return pong(texts.join(","), ctx);
  }
  async function* bidi(reqs: AsyncIterable<{ text: string }>, ctx: HandlerContext) {
    for await (const r of reqs) yield pong(r.text, ctx);
  }
  router.service(GuardedService, {
    publicUnary: unary,
    authenticatedUnary: unary,
    permissionUnary: unary,
    twoPermissionsUnary: unary,
    staffUnary: unary,
    superuserUnary: unary,
    defaultUnary: unary,
    publicServerStream: serverStream,
    permissionServerStream: serverStream,
    staffClientStream: clientStream,
    publicClientStream: clientStream,
    superuserBidiStream: bidi,
    authenticatedBidiStream: bidi,
  });
  router.service(StaffOnlyService, { inherited: unary, overridden: unary, inheritedServerStream: serverStream });
  router.service(UnannotatedService, { anything: unary });
}
