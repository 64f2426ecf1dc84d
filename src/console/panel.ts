/**
 * A panel: one part of a view backed by one call. It says "Loading…", then
 * shows what the call returned, or why it failed — a refusal as the
 * permission the caller lacks — so a view is never silently empty.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { append, el, type Child } from "./dom.js";
import { describeFailure, type Failure } from "./refusal.js";

/** What every view is given. */
export interface ViewContext {
  /** Aborted when the view is left: streams and late answers stop there. */
  readonly signal: AbortSignal;
  /** Called when a call finds the session gone. */
  signedOut(message: string): void;
}

/** A panel, and how to load it again after a change. */
export interface Panel {
  readonly element: HTMLElement;
  /**
   * Where the outcome of a write made from the panel is said (`#<id>-status`): outside the
   * content, so it stays when the write reloads the panel.
   */
  readonly status: HTMLElement;
  reload(): Promise<void>;
}

/**
 * Creates a panel titled `heading` whose content `load` builds from the call
 * to `method` (made "to" do what `to` says, for the refusal message).
 */
export function panel(
  context: ViewContext,
  options: { id: string; heading: string; method: DescMethod; to: string },
  load: () => Promise<Child[]>,
): Panel {
  const headingId = `${options.id}-heading`;
  const body = el("div", { class: "panel-body", "aria-live": "polite", "aria-busy": "true" });
  const status = el("p", { id: `${options.id}-status`, class: "status", role: "status" });
  const element = el(
    "section",
    { id: options.id, class: "panel", "aria-labelledby": headingId },
    el("h3", { id: headingId }, options.heading),
    body,
    status,
  );
  const reload = async () => {
    body.setAttribute("aria-busy", "true");
    body.replaceChildren(el("p", { class: "loading" }, "Loading…"));
    try {
      const content = await load();
      if (context.signal.aborted) return;
      body.replaceChildren();
      append(body, content);
    } catch (error) {
      if (context.signal.aborted) return;
      body.replaceChildren(failureNote(context, describeFailure(error, options.method, options.to)));
    } finally {
      body.setAttribute("aria-busy", "false");
    }
  };
  void reload();
  return { element, status, reload };
}

/** A failure as a paragraph (role "alert" for a refusal), telling the shell when the session is gone. */
export function failureNote(context: ViewContext, failure: Failure): HTMLElement {
  if (failure.kind === "signed-out") context.signedOut(failure.message);
  return el("p", { class: failure.kind === "refused" ? "refusal" : "error", role: "alert" }, failure.message);
}

/**
 * Runs the write `action` (a call to `method`, to do what `to` says) from a
 * button or form, and puts its outcome into `status`; `done` runs after a
 * success (reloading the panel that shows the change).
 */
export async function write(
  context: ViewContext,
  status: HTMLElement,
  options: { method: DescMethod; to: string; success: string },
  action: () => Promise<unknown>,
  done?: () => Promise<void>,
): Promise<void> {
  status.replaceChildren(el("span", { class: "loading" }, "Working…"));
  try {
    await action();
    status.replaceChildren(el("span", { class: "ok" }, options.success));
    await done?.();
  } catch (error) {
    status.replaceChildren(failureNote(context, describeFailure(error, options.method, options.to)));
  }
}
