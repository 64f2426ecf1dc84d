/**
 * The console's views, one function per page: users (search, one user),
 * groups, service accounts, the policy table and the signing keys. The
 * audit log is in ./audit.ts. Every view calls AdminService only, so every
 * action is checked on the server by the rules declared in admin.proto;
 * the console hides nothing on its own judgement and shows each refusal.
 */
import type { Client } from "@connectrpc/connect";
import { AdminService, type AuditEvent } from "../../gen/protoguard/v1/admin_pb.js";
import { el, facts, labelled, table, when, yesNo, type Child } from "./dom.js";
import { panel, write, type ViewContext } from "./panel.js";

/** The AdminService client every view uses. */
export type AdminClient = Client<typeof AdminService>;

const methods = AdminService.method;

/** The link to one user's page. */
export function userLink(username: string): HTMLAnchorElement {
  return el("a", { href: `#/users/${encodeURIComponent(username)}` }, username);
}

function list(items: readonly string[], none: string): Child {
  if (items.length === 0) return el("span", { class: "none" }, none);
  return el("ul", { class: "inline" }, ...items.map((item) => el("li", {}, item)));
}

/** Users: a search form and the matching users, page by page. */
export function usersView(context: ViewContext, admin: AdminClient, search: string): Node[] {
  const input = el("input", { id: "user-search", type: "search", name: "search", value: search });
  const services = el("input", { id: "user-search-services", type: "checkbox", name: "services" });
  let pageToken = "";
  const results = panel(
    context,
    { id: "users", heading: "Users", method: methods.listUsers, to: "see users" },
    async () => {
      const answer = await admin.listUsers(
        { search: input.value.trim(), includeServices: services.checked, pageSize: 50, pageToken },
        { signal: context.signal },
      );
      const rows = answer.users.map((user) => [
        userLink(user.username),
        user.email || "—",
        yesNo(user.isActive),
        yesNo(user.isStaff),
        yesNo(user.isSuperuser),
        user.kind,
        when(user.lastLogin),
      ]);
      const next = answer.nextPageToken;
      return [
        table(
          "users-table",
          `Users matching “${input.value.trim()}”`,
          ["Username", "Email", "Active", "Staff", "Superuser", "Kind", "Last login"],
          rows,
          "No user matches.",
        ),
        next !== "" &&
          el(
            "button",
            {
              type: "button",
              onclick: () => {
                pageToken = next;
                void results.reload();
              },
            },
            "Next page",
          ),
      ];
    },
  );
  const form = el(
    "form",
    {
      id: "user-search-form",
      role: "search",
      class: "inline-form",
      onsubmit: (event: Event) => {
        event.preventDefault();
        pageToken = "";
        void results.reload();
      },
    },
    labelled("Search users (username or email)", input),
    labelled("Include service accounts", services),
    el("button", { type: "submit" }, "Search"),
  );
  return [el("h2", {}, "Users"), form, results.element];
}

/** One user: flags, groups, permissions with their sources, sessions, recent audit events. */
export function userView(context: ViewContext, admin: AdminClient, username: string): Node[] {
  const detail = panel(
    context,
    { id: "user-detail", heading: "Account", method: methods.getUser, to: "see users" },
    async () => {
      const { user: detailed } = await admin.getUser({ username }, { signal: context.signal });
      if (detailed?.user === undefined) return ["The server sent no user."];
      const user = detailed.user;
      const status = detail.status;
      const toggle = el(
        "button",
        {
          id: "user-toggle-active",
          type: "button",
          onclick: () =>
            void write(
              context,
              status,
              {
                method: methods.updateUser,
                to: "change users",
                success: user.isActive ? "Deactivated." : "Activated.",
              },
              () => admin.updateUser({ username, isActive: !user.isActive }),
              () => reloadAll(),
            ),
        },
        user.isActive ? "Deactivate" : "Activate",
      );
      const grantInput = el("input", {
        id: "grant-permission",
        name: "permission",
        required: true,
        placeholder: "app_label.codename",
        autocomplete: "off",
      });
      const grantTarget = { target: { case: "username" as const, value: username } };
      const grant = el(
        "form",
        {
          id: "grant-form",
          class: "inline-form",
          onsubmit: (event: Event) => {
            event.preventDefault();
            const permission = grantInput.value.trim();
            if (permission === "") return;
            void write(
              context,
              status,
              { method: methods.grantPermissions, to: "grant permissions", success: `Granted ${permission}.` },
              () => admin.grantPermissions({ target: grantTarget, permissions: [permission] }),
              () => reloadAll(),
            );
          },
        },
        labelled(`Grant a permission to ${username}`, grantInput),
        el("button", { type: "submit" }, "Grant"),
      );
      const revoke = (permission: string) =>
        el(
          "button",
          {
            type: "button",
            class: "small",
            "aria-label": `Revoke ${permission} from ${username}`,
            onclick: () =>
              void write(
                context,
                status,
                { method: methods.revokePermissions, to: "revoke permissions", success: `Revoked ${permission}.` },
                () => admin.revokePermissions({ target: grantTarget, permissions: [permission] }),
                () => reloadAll(),
              ),
          },
          "Revoke",
        );
      return [
        facts("user-flags", [
          ["Username", user.username],
          ["Email", user.email || "—"],
          ["Kind", user.kind],
          ["Active", yesNo(user.isActive)],
          ["Staff", yesNo(user.isStaff)],
          ["Superuser", yesNo(user.isSuperuser)],
          ["Two-factor (TOTP)", yesNo(user.totpEnabled)],
          ["Joined", when(user.dateJoined)],
          ["Last login", when(user.lastLogin)],
          ["Groups", list(detailed.groups, "none")],
        ]),
        el("div", { class: "actions" }, toggle),
        table(
          "user-permissions",
          "Effective permissions and where each comes from",
          ["Permission", "Source", ""],
          detailed.effectivePermissions.map((effective) => [
            effective.permission,
            effective.sources.join(", "),
            detailed.directPermissions.includes(effective.permission) ? revoke(effective.permission) : "",
          ]),
          "No permission.",
        ),
        grant,
      ];
    },
  );
  const sessions = panel(
    context,
    { id: "user-sessions", heading: "Sessions", method: methods.listUserSessions, to: "see sessions" },
    async () => {
      const answer = await admin.listUserSessions({ username }, { signal: context.signal });
      const status = sessions.status;
      const end = (id: string) =>
        el(
          "button",
          {
            type: "button",
            class: "small",
            "aria-label": `End session ${id}`,
            "data-session": id,
            onclick: () =>
              void write(
                context,
                status,
                { method: methods.revokeUserSession, to: "end sessions", success: "Session ended." },
                () => admin.revokeUserSession({ sessionId: id }),
                () => reloadAll(),
              ),
          },
          "End",
        );
      return [
        table(
          "user-sessions-table",
          `Sessions of ${username}`,
          ["Session", "Started", "Last refreshed", "Address", "User agent", "Access token expires", ""],
          answer.sessions.map((session) => [
            el("code", {}, session.id),
            when(session.createdAt),
            when(session.lastRefreshedAt),
            session.peerAddress || "—",
            session.userAgent || "—",
            when(session.accessExpiresAt),
            end(session.id),
          ]),
          "No open session.",
        ),
      ];
    },
  );
  const audit = panel(
    context,
    { id: "user-audit", heading: "Recent audit events", method: methods.listAuditEvents, to: "see the audit log" },
    async () => {
      const answer = await admin.listAuditEvents({ username, pageSize: 20 }, { signal: context.signal });
      return [auditTable("user-audit-table", `Recent events by or about ${username}`, answer.events)];
    },
  );
  const reloadAll = async () => {
    await Promise.all([detail.reload(), sessions.reload(), audit.reload()]);
  };
  return [
    el("h2", {}, `User ${username}`),
    el("p", {}, el("a", { href: "#/users" }, "← All users")),
    detail.element,
    sessions.element,
    audit.element,
  ];
}

/** Audit rows as a table, newest first as given. */
export function auditTable(id: string, caption: string, events: readonly AuditEvent[]): HTMLTableElement {
  return table(id, caption, AUDIT_HEADERS, events.map(auditRow), "No event.");
}

/** The columns of an audit table. */
export const AUDIT_HEADERS = ["Time", "Type", "Actor", "Subject", "Address", "Request", "Detail"];

/** One audit event as table cells. */
export function auditRow(event: AuditEvent): Child[] {
  return [
    when(event.time),
    el("code", {}, event.type),
    event.actorUsername === "" ? event.actor : `${event.actorUsername} (${event.actor})`,
    event.subject || "—",
    event.peerAddress || "—",
    event.requestId || "—",
    event.detailJson === "" || event.detailJson === "{}" ? "—" : el("code", { class: "detail" }, event.detailJson),
  ];
}

/** Groups with their permissions; one group's members on its own page. */
export function groupsView(context: ViewContext, admin: AdminClient): Node[] {
  const groups = panel(
    context,
    { id: "groups", heading: "Groups", method: methods.listGroups, to: "see groups" },
    async () => {
      const answer = await admin.listGroups({}, { signal: context.signal });
      return [
        table(
          "groups-table",
          "Groups",
          ["Name", "Members", "Permissions"],
          answer.groups.map((group) => [
            el("a", { href: `#/groups/${encodeURIComponent(group.name)}` }, group.name),
            String(group.memberCount),
            list(group.permissions, "none"),
          ]),
          "No group.",
        ),
      ];
    },
  );
  return [el("h2", {}, "Groups"), groups.element];
}

/** One group: its permissions and members. */
export function groupView(context: ViewContext, admin: AdminClient, name: string): Node[] {
  const group = panel(
    context,
    { id: "group-detail", heading: "Group", method: methods.getGroup, to: "see groups" },
    async () => {
      const { group: detail } = await admin.getGroup({ name }, { signal: context.signal });
      return [
        facts("group-facts", [
          ["Name", detail?.group?.name ?? name],
          ["Permissions", list(detail?.group?.permissions ?? [], "none")],
        ]),
        table(
          "group-members",
          `Members of ${name}`,
          ["Username"],
          (detail?.members ?? []).map((member) => [userLink(member)]),
          "No member.",
        ),
      ];
    },
  );
  return [el("h2", {}, `Group ${name}`), el("p", {}, el("a", { href: "#/groups" }, "← All groups")), group.element];
}

/** Service accounts, never their secrets. */
export function serviceAccountsView(context: ViewContext, admin: AdminClient): Node[] {
  const accounts = panel(
    context,
    {
      id: "service-accounts",
      heading: "Service accounts",
      method: methods.listServiceAccounts,
      to: "see service accounts",
    },
    async () => {
      const answer = await admin.listServiceAccounts({}, { signal: context.signal });
      return [
        table(
          "service-accounts-table",
          "Service accounts",
          ["Name", "Client id", "Active", "Permissions", "TLS identity", "Secret rotated", "Previous secret expires"],
          answer.serviceAccounts.map((account) => [
            account.name,
            el("code", {}, account.clientId),
            yesNo(account.isActive),
            list(account.permissions, "none"),
            account.tlsIdentity || "—",
            when(account.secretRotatedAt),
            when(account.previousSecretExpiresAt),
          ]),
          "No service account.",
        ),
      ];
    },
  );
  return [el("h2", {}, "Service accounts"), accounts.element];
}

/** Who may call what: the rule of every served method, and who can call one. */
export function policyView(context: ViewContext, admin: AdminClient): Node[] {
  const procedure = el("input", {
    id: "who-can-procedure",
    name: "procedure",
    required: true,
    placeholder: "/package.Service/Method",
    autocomplete: "off",
  });
  const whoCan = panel(
    context,
    { id: "who-can", heading: "Who can call it", method: methods.whoCan, to: "see who may call a method" },
    async () => {
      const asked = procedure.value.trim();
      if (asked === "") return [el("p", { class: "hint" }, "Choose a method above or in the table.")];
      const answer = await admin.whoCan({ procedure: asked }, { signal: context.signal });
      if (answer.public) {
        return [
          facts("who-can-facts", [
            ["Method", answer.procedure],
            ["Rule", answer.rule],
            ["Who", "anyone"],
          ]),
        ];
      }
      return [
        facts("who-can-facts", [
          ["Method", answer.procedure],
          ["Rule", el("code", {}, answer.rule)],
          ["Users", list(answer.users, "none")],
          ["Groups", list(answer.groups, "none")],
          ["Service accounts", list(answer.serviceAccounts, "none")],
          ["Conditions", list(answer.conditions, "none")],
        ]),
      ];
    },
  );
  const ask = (name: string) => {
    procedure.value = name;
    void whoCan.reload();
    whoCan.element.scrollIntoView({ block: "nearest" });
  };
  const policy = panel(
    context,
    { id: "policy", heading: "Rules in force", method: methods.getPolicy, to: "see the policy" },
    async () => {
      const answer = await admin.getPolicy({}, { signal: context.signal });
      return [
        table(
          "policy-table",
          "The rule of every method this server serves",
          ["Method", "Rule", "From", "Shadow rule", "API keys", "Rate limit", ""],
          answer.entries.map((entry) => [
            el("code", {}, entry.procedure),
            el("code", {}, entry.rule),
            entry.source,
            entry.shadowRule === "" ? "—" : el("code", {}, entry.shadowRule),
            entry.acceptsApiKeys ? "accepted" : "refused",
            entry.rateLimit || "—",
            el(
              "button",
              {
                type: "button",
                class: "small",
                "aria-label": `Who can call ${entry.procedure}`,
                onclick: () => ask(entry.procedure),
              },
              "Who can?",
            ),
          ]),
          "No method.",
        ),
      ];
    },
  );
  const form = el(
    "form",
    {
      id: "who-can-form",
      class: "inline-form",
      onsubmit: (event: Event) => {
        event.preventDefault();
        void whoCan.reload();
      },
    },
    labelled("Method", procedure),
    el("button", { type: "submit" }, "Who can call it?"),
  );
  return [el("h2", {}, "Policy"), form, whoCan.element, policy.element];
}

/** The signing keys' status, never their material. */
export function keysView(context: ViewContext, admin: AdminClient): Node[] {
  const keys = panel(
    context,
    { id: "signing-keys", heading: "Signing keys", method: methods.listSigningKeys, to: "see the signing keys" },
    async () => {
      const answer = await admin.listSigningKeys({}, { signal: context.signal });
      return [
        table(
          "signing-keys-table",
          "Keys the server signs and verifies tokens with",
          ["Key id", "Algorithm", "Status"],
          answer.keys.map((key) => [el("code", {}, key.kid || "(none)"), key.algorithm, key.status]),
          "No key.",
        ),
      ];
    },
  );
  return [el("h2", {}, "Signing keys"), keys.element];
}
