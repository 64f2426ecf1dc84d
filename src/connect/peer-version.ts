import { validateUniversalHandlerOptions } from "@connectrpc/connect/protocol";

/**
 * The first `@connectrpc/connect` with the router option `requestGate`. An
 * older peer drops the option without a word, so the gate (refusing before
 * the body is read) would silently not run.
 */
const MIN_CONNECT_VERSION = "2.2.0";

let supported: boolean | undefined;

/**
 * Throws unless the installed `@connectrpc/connect` honours `requestGate`.
 * Detected by behaviour, not by version string: the router's own option
 * validation must hand the gate back. Checked once per process.
 *
 * @throws {Error} naming the peers to upgrade.
 */
export function assertRequestGateSupported(): void {
  if (supported === undefined) {
    const gate = async () => {};
    const validated = validateUniversalHandlerOptions({ requestGate: gate } as Parameters<
      typeof validateUniversalHandlerOptions
    >[0]) as { requestGate?: unknown };
    supported = validated.requestGate === gate;
  }
  if (!supported) {
    throw new Error(
      `protoguard needs @connectrpc/connect and @connectrpc/connect-node >= ${MIN_CONNECT_VERSION}: ` +
        "the installed version has no requestGate, so unauthenticated calls would not be refused before " +
        `their body is read. Install both at ^${MIN_CONNECT_VERSION}.`,
    );
  }
}
