/**
 * Unit tests for the pre-filter's recognition (src/server/prefilter.ts): which requests it judges
 * (a POST to a routed method's path, in a content type Connect serves) and which it passes on
 * untouched. Driven through createPrefilter / createStreamPrefilter with minimal fake requests
 * and a fake `auth.check` that records what it is asked: no server, no socket, no token.
 */
import assert from "node:assert/strict";
import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import { describe, it } from "node:test";
import type { DescMethod } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { GuardedService } from "../gen/guardtest/v1/guarded_pb.js";
import type { Verdict } from "../src/decide/verdict.js";
import { createPrefilter, createStreamPrefilter } from "../src/server/prefilter/prefilter.js";
import type { NodeRequest } from "../src/server/http.js";

const PATH = `/${GuardedService.typeName}/PublicUnary`;

/** A fake auth layer answering every call with `outcome`, recording the methods it judged. */
function fakeAuth(outcome: "allow" | "deny" = "allow") {
  const judged: string[] = [];
  const auth = {
    check(method: DescMethod): Verdict {
      judged.push(method.name);
      const plan = { method, rule: { kind: "public" as const }, source: "method" as const };
      if (outcome === "allow") return { outcome: "allow", plan, principal: undefined };
      return { outcome: "deny", plan, code: Code.Unauthenticated, reason: "TOKEN_MISSING", message: "unauthenticated" };
    },
  };
  return { auth, judged };
}

/** Runs one HTTP/1.1-style request through createPrefilter; says whether `next` got it and what was judged. */
function h1(method: string, url: string, contentType: string | undefined, outcome: "allow" | "deny" = "allow") {
  const { auth, judged } = fakeAuth(outcome);
  let passedOn = false;
  const written: { status?: number; headers?: Record<string, string>; ended: boolean } = { ended: false };
  const handler = createPrefilter({ auth, services: [GuardedService], next: () => (passedOn = true) });
  const headers: IncomingHttpHeaders = { "content-length": "0" };
  if (contentType !== undefined) headers["content-type"] = contentType;
  const req = { method, url, headers, rawHeaders: [] } as unknown as NodeRequest;
  const res = {
    writeHead(status: number, h: Record<string, string>) {
      written.status = status;
      written.headers = h;
    },
    end() {
      written.ended = true;
    },
  };
  handler(req, res as unknown as Parameters<typeof handler>[1]);
  return { passedOn, judged, written };
}

describe("pre-filter recognition (HTTP/1.1 handler)", () => {
  it("judges a POST to a routed method in every protocol Connect serves", () => {
    for (const contentType of [
      "application/grpc",
      "application/grpc+proto",
      "application/GRPC+JSON",
      "application/grpc-web",
      "application/grpc-web+proto",
      "application/proto",
      "application/json",
      "application/json; charset=utf-8",
      "application/json;charset=UTF8",
      "application/connect+proto",
      "application/connect+json",
    ]) {
      const { passedOn, judged } = h1("POST", PATH, contentType);
      assert.deepEqual(judged, ["PublicUnary"], contentType);
      assert.equal(passedOn, true, contentType);
    }
  });

  it("ignores the query string when matching the path", () => {
    assert.deepEqual(h1("POST", `${PATH}?x=1`, "application/proto").judged, ["PublicUnary"]);
  });

  it("passes on, unjudged, what it does not recognise", () => {
    for (const [method, url, contentType] of [
      ["GET", PATH, "application/proto"], // Connect GET: Connect answers it
      ["POST", `/${GuardedService.typeName}/NoSuchMethod`, "application/proto"],
      ["POST", "/other.v1.Service/PublicUnary", "application/proto"],
      ["POST", `${PATH}/`, "application/proto"],
      ["POST", PATH, undefined],
      ["POST", PATH, "text/plain"],
      ["POST", PATH, "application/grpc-web-text"], // not served by Connect either
      ["POST", PATH, "application/json; charset=latin1"],
      ["POST", PATH, "application/connect+thrift"],
    ] as const) {
      const { passedOn, judged } = h1(method, url, contentType);
      assert.deepEqual(judged, [], `${method} ${url} ${contentType}`);
      assert.equal(passedOn, true, `${method} ${url} ${contentType}`);
    }
  });

  it("answers a refusal itself instead of passing it on (Connect unary: HTTP 401, JSON)", () => {
    const { passedOn, judged, written } = h1("POST", PATH, "application/json", "deny");
    assert.deepEqual(judged, ["PublicUnary"]);
    assert.equal(passedOn, false);
    assert.equal(written.status, 401);
    assert.equal(written.headers?.["content-type"], "application/json");
    assert.equal(written.ended, true);
  });

  it("answers a gRPC refusal as HTTP 200 with the status in headers", () => {
    const { written } = h1("POST", PATH, "application/grpc", "deny");
    assert.equal(written.status, 200);
    assert.equal(written.headers?.["grpc-status"], String(Code.Unauthenticated));
  });
});

describe("pre-filter recognition (raw HTTP/2 streams)", () => {
  it("judges by :method, :path and content-type, and passes the rest on", () => {
    const run = (headers: IncomingHttpHeaders) => {
      const { auth, judged } = fakeAuth();
      let passedOn = false;
      createStreamPrefilter({ auth, services: [GuardedService] })(
        {} as ServerHttp2Stream,
        headers,
        () => (passedOn = true),
      );
      return { judged, passedOn };
    };
    assert.deepEqual(run({ ":method": "POST", ":path": PATH, "content-type": "application/grpc" }), {
      judged: ["PublicUnary"],
      passedOn: true,
    });
    assert.deepEqual(run({ ":method": "GET", ":path": PATH, "content-type": "application/grpc" }), {
      judged: [],
      passedOn: true,
    });
    assert.deepEqual(run({ ":method": "POST", ":path": "/nope", "content-type": "application/grpc" }), {
      judged: [],
      passedOn: true,
    });
  });
});
