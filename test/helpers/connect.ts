/**
 * Helpers for tests that call Connect services: catching the error of a call that must fail,
 * asserting its stable code and reason, sending a bearer token, and collecting a stream.
 */
import assert from "node:assert/strict";
import { Code, ConnectError, type CallOptions } from "@connectrpc/connect";
import { authErrorReason } from "../../src/exports/protoguard.js";

/**
 * Awaits `promise`, which must reject, and returns its error as a ConnectError
 * (`ConnectError.from`, so a plain error becomes `Code.Unknown`). Fails the test if it resolves.
 */
export async function failure(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  assert.fail("expected the call to fail, but it succeeded");
}

/**
 * Asserts that `promise` fails with `code` and the protoguard ErrorInfo `reason`, and, when
 * `message` is given, that the client sees exactly that message (`rawMessage`). Returns the error.
 */
export async function expectError(
  promise: Promise<unknown>,
  code: Code,
  reason: string,
  message?: string,
): Promise<ConnectError> {
  const err = await failure(promise);
  assert.equal(err.code, code, `expected ${Code[code]}, got ${Code[err.code]}: ${err.message}`);
  assert.equal(authErrorReason(err), reason);
  if (message !== undefined) assert.equal(err.rawMessage, message);
  return err;
}

/** Call options sending `token` as `authorization: Bearer <token>`. */
export const bearer = (token: string): CallOptions => ({ headers: { authorization: `Bearer ${token}` } });

/** Reads an async iterable (a server stream) to its end and returns every item. */
export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/**
 * Retries `check` until it passes or `ms` have gone by, then throws its last error: cache
 * invalidations arrive by database notification, a moment after the write that causes them.
 */
export async function eventually(check: () => Promise<unknown>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}
