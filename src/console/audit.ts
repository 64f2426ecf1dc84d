/**
 * The audit log: filters (since, types, username), the matching events
 * newest first, and a live tail (FollowAuditEvents, a server stream) that
 * puts new events at the top as any instance writes them.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { AdminService, type AuditEvent } from "../../gen/protoguard/v1/admin_pb.js";
import { el, labelled } from "./dom.js";
import { failureNote, panel, type ViewContext } from "./panel.js";
import { describeFailure } from "./refusal.js";
import { auditTable, auditRow, type AdminClient } from "./views.js";

const methods = AdminService.method;

/** A Date as a protobuf Timestamp. */
function timestamp(date: Date): { seconds: bigint; nanos: number } {
  const ms = date.getTime();
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

/** The audit log view. */
export function auditView(context: ViewContext, admin: AdminClient): Node[] {
  const since = el("input", { id: "audit-since", name: "since", type: "datetime-local", step: 1 });
  const types = el("input", {
    id: "audit-types",
    name: "types",
    placeholder: "login., user.updated",
    autocomplete: "off",
  });
  const username = el("input", { id: "audit-username", name: "username", autocomplete: "off" });
  const filters = () => {
    const sinceDate = since.value === "" ? undefined : new Date(since.value);
    return {
      ...(sinceDate !== undefined && !Number.isNaN(sinceDate.getTime()) && { since: timestamp(sinceDate) }),
      types: types.value
        .split(",")
        .map((type) => type.trim())
        .filter((type) => type !== ""),
      username: username.value.trim(),
    };
  };
  /** Ids on the page, so an event the tail replays is not shown twice. */
  const shown = new Set<bigint>();
  let body: HTMLTableSectionElement | undefined;
  const events = panel(
    context,
    { id: "audit-events", heading: "Events", method: methods.listAuditEvents, to: "see the audit log" },
    async () => {
      const answer = await admin.listAuditEvents({ ...filters(), pageSize: 100 }, { signal: context.signal });
      shown.clear();
      for (const event of answer.events) shown.add(event.id);
      const rendered = auditTable("audit-table", "Audit events, newest first", answer.events);
      body = rendered.tBodies[0];
      return [rendered];
    },
  );

  const followButton = el("button", { id: "audit-follow", type: "button", "aria-pressed": "false" }, "Follow live");
  const liveStatus = el("p", { id: "audit-live-status", class: "status", role: "status" });
  let following: AbortController | undefined;
  const stop = (note: string) => {
    following?.abort();
    following = undefined;
    followButton.textContent = "Follow live";
    followButton.setAttribute("aria-pressed", "false");
    liveStatus.textContent = note;
  };
  context.signal.addEventListener("abort", () => following?.abort());
  const add = (event: AuditEvent) => {
    if (shown.has(event.id) || body === undefined) return;
    shown.add(event.id);
    body.querySelector("tr.empty")?.remove();
    const row = el("tr", { class: "live", "data-event-id": String(event.id) });
    for (const cell of auditRow(event)) row.append(el("td", {}, cell));
    body.prepend(row);
  };
  const follow = async () => {
    const controller = new AbortController();
    following = controller;
    followButton.textContent = "Stop following";
    followButton.setAttribute("aria-pressed", "true");
    liveStatus.textContent = "Following new events…";
    // From now: the list above already holds what came before.
    const request = { ...filters(), since: timestamp(new Date()) };
    try {
      for await (const answer of admin.followAuditEvents(request, { signal: controller.signal })) {
        if (answer.event !== undefined) add(answer.event);
      }
      if (following === controller) stop("The server ended the live tail.");
    } catch (error) {
      if (controller.signal.aborted) return;
      const connectError = ConnectError.from(error);
      if (connectError.code === Code.Canceled) return;
      stop("");
      liveStatus.replaceChildren(
        failureNote(context, describeFailure(connectError, methods.followAuditEvents, "follow the audit log")),
      );
    }
  };
  followButton.addEventListener("click", () => {
    if (following !== undefined) stop("Stopped.");
    else void follow();
  });

  const form = el(
    "form",
    {
      id: "audit-filters",
      class: "inline-form",
      onsubmit: (event: Event) => {
        event.preventDefault();
        const wasFollowing = following !== undefined;
        if (wasFollowing) stop("");
        void events.reload().then(() => {
          if (wasFollowing) void follow();
        });
      },
    },
    labelled("Since", since),
    labelled("Types (comma-separated; “login.” matches every login event)", types),
    labelled("Username (actor or subject)", username),
    el("button", { type: "submit" }, "Apply filters"),
  );
  return [el("h2", {}, "Audit log"), form, el("div", { class: "actions" }, followButton, liveStatus), events.element];
}
