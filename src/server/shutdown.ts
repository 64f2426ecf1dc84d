/**
 * Stopping on a signal: what a process manager (SIGTERM) or a terminal
 * (Ctrl-C, SIGINT) sends to ask a server to close gracefully. The close
 * itself is the connection tracker's (see `transport/connections.ts`).
 */
import { markDataDirsClosing } from "../store/data-dir-lock.js";

/** The signals a process manager or a terminal sends to ask for a stop. */
const shutdownSignals = ["SIGTERM", "SIGINT"] as const;

/** Options of {@link onShutdownSignals}. */
export interface ShutdownSignalOptions {
  /**
   * Exit at once when a second signal arrives while `fn` still runs, with
   * the conventional code 128 + signal number. An operator pressing Ctrl-C
   * twice wants the process gone. Default true.
   */
  forceOnRepeat?: boolean;
}

/**
 * Runs `fn` once on the first SIGTERM or SIGINT. Installing the listeners
 * replaces Node's default of exiting at once, so `fn` should end with the
 * process exiting (closing every server and timer is enough). A rejection of
 * `fn` is left unhandled on purpose: a failed shutdown should crash loudly.
 *
 * @returns a function that removes the listeners again
 */
export function onShutdownSignals(
  fn: (signal: NodeJS.Signals) => void | Promise<void>,
  options: ShutdownSignalOptions = {},
): () => void {
  const forceOnRepeat = options.forceOnRepeat ?? true;
  let started = false;
  const listener = (signal: NodeJS.Signals): void => {
    if (started) {
      if (forceOnRepeat) process.exit(128 + signalNumber(signal));
      return;
    }
    started = true;
    // Before the calls in flight are finished: a process started meanwhile
    // (a restart) waits for this one's embedded data directory to be free.
    markDataDirsClosing();
    void Promise.resolve().then(() => fn(signal));
  };
  for (const signal of shutdownSignals) process.on(signal, listener);
  return () => {
    for (const signal of shutdownSignals) process.off(signal, listener);
  };
}

function signalNumber(signal: NodeJS.Signals): number {
  return signal === "SIGINT" ? 2 : 15;
}
