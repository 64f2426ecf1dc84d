/**
 * The admin console at `/admin/`: logs in through protoguard.v1.AuthService
 * with protoguard/client's session, then shows users, groups, service
 * accounts, the audit log, the policy and the signing keys through
 * protoguard.v1.AdminService. Every action is a call the server checks
 * against the rules in admin.proto; the console adds no rights of its own.
 *
 * Served by `protoguard serve` (PROTOGUARD_ADMIN_CONSOLE=1) from the same
 * origin as the RPCs, under a Content-Security-Policy that allows only this
 * origin's script, style and fetches: no inline script or style here, text
 * only ever set as text. The tokens stay in this tab's sessionStorage (a
 * reload keeps the session, another tab or a new browser does not), never
 * in localStorage or a cookie.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AdminService } from "../../gen/protoguard/v1/admin_pb.js";
import { AuthService } from "../../gen/protoguard/v1/auth_pb.js";
import { createSession } from "../client/session.js";
import { webStorage } from "../client/storage.js";
import { codeName } from "./refusal.js";
import { auditView } from "./audit.js";
import type { ViewContext } from "./panel.js";
import { groupView, groupsView, keysView, policyView, serviceAccountsView, userView, usersView } from "./views.js";

/** The RPCs are served on the console's own origin (connect-src 'self'). */
const baseUrl = location.origin;

function element<T extends HTMLElement>(id: string, type: new () => T): T {
  const found = document.getElementById(id);
  if (!(found instanceof type)) throw new Error(`#${id} is missing from the page`);
  return found;
}

const loginSection = element("login", HTMLElement);
const loginForm = element("login-form", HTMLFormElement);
const usernameInput = element("username", HTMLInputElement);
const passwordInput = element("password", HTMLInputElement);
const otpInput = element("otp", HTMLInputElement);
const loginButton = element("login-button", HTMLButtonElement);
const loginError = element("login-error", HTMLParagraphElement);
const signedIn = element("signed-in", HTMLParagraphElement);
const logoutButton = element("logout", HTMLButtonElement);
const nav = element("nav", HTMLElement);
const view = element("view", HTMLElement);

const session = createSession({
  transport: createConnectTransport({ baseUrl }),
  storage: webStorage(sessionStorage, "protoguard.admin.session"),
  onSessionEnd: (reason) => {
    if (reason !== "LOGOUT") showLogin(`Your session has ended (${reason}): log in again.`);
  },
});
const transport = createConnectTransport({ baseUrl, interceptors: [session.interceptor] });
const admin = createClient(AdminService, transport);
const auth = createClient(AuthService, transport);

/** The view on screen; aborted when another replaces it. */
let current: AbortController | undefined;

function showLogin(message?: string): void {
  current?.abort();
  current = undefined;
  nav.hidden = true;
  view.hidden = true;
  view.replaceChildren();
  logoutButton.hidden = true;
  signedIn.textContent = "Not signed in.";
  loginSection.hidden = false;
  loginError.textContent = message ?? "";
  loginError.hidden = message === undefined;
  usernameInput.focus();
}

async function showSignedIn(): Promise<void> {
  loginSection.hidden = true;
  nav.hidden = false;
  view.hidden = false;
  logoutButton.hidden = false;
  try {
    const me = await auth.whoAmI({});
    signedIn.textContent = `Signed in as ${me.user?.username ?? "?"}${me.isSuperuser ? " (superuser)" : ""}.`;
  } catch (error) {
    // WhoAmI needs only a valid token: failing means the session is gone.
    await session.logout().catch(() => undefined);
    showLogin(`Your session has ended: log in again (${ConnectError.from(error).rawMessage}).`);
    return;
  }
  if (location.hash === "" || location.hash === "#" || location.hash === "#/") location.hash = "#/users";
  else render();
}

/** Shows the view the location's hash names. */
function render(): void {
  if (!view.isConnected || loginSection.hidden === false) return;
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const context: ViewContext = {
    signal: controller.signal,
    signedOut: (message) => {
      void session.logout().catch(() => undefined);
      showLogin(message);
    },
  };
  // Routes are "#/section[/name]"; any other hash (the skip link's "#view") is no route.
  const route = location.hash.startsWith("#/") ? location.hash.slice(2) : "";
  const [first, ...rest] = route.split("/");
  const section = first === undefined || first === "" ? "users" : first;
  const name = rest.length === 0 ? undefined : decodeURIComponent(rest.join("/"));
  const parts = viewFor(context, section, name);
  view.replaceChildren(...parts);
  for (const link of nav.querySelectorAll("a")) {
    const active = link.getAttribute("href") === `#/${section}`;
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const heading = view.querySelector("h2");
  document.title = `${heading?.textContent ?? "protoguard admin"} · protoguard admin`;
}

function viewFor(context: ViewContext, section: string, name: string | undefined): Node[] {
  switch (section) {
    case "users":
      return name === undefined ? usersView(context, admin, "") : userView(context, admin, name);
    case "groups":
      return name === undefined ? groupsView(context, admin) : groupView(context, admin, name);
    case "service-accounts":
      return serviceAccountsView(context, admin);
    case "audit":
      return auditView(context, admin);
    case "policy":
      return policyView(context, admin);
    case "keys":
      return keysView(context, admin);
    default: {
      const heading = document.createElement("h2");
      heading.textContent = "Not found";
      const text = document.createElement("p");
      text.textContent = `There is no “${section}” section.`;
      return [heading, text];
    }
  }
}

window.addEventListener("hashchange", () => {
  // The skip link moves the focus, not the view.
  if (!location.hash.startsWith("#/")) return;
  render();
  // Keyboard and screen-reader users land on the new content.
  view.focus();
});

loginForm.addEventListener("submit", (event) => {
  event.preventDefault();
  void login();
});

async function login(): Promise<void> {
  loginButton.disabled = true;
  loginError.hidden = true;
  try {
    await session.login({
      username: usernameInput.value.trim(),
      password: passwordInput.value,
      otpCode: otpInput.value.trim(),
    });
    await showSignedIn();
  } catch (error) {
    const connectError = ConnectError.from(error);
    showLogin(
      // One answer for every bad credential, on purpose (it tells nothing about which accounts exist).
      connectError.code === Code.Unauthenticated
        ? "Wrong username, password or TOTP code, or the account is inactive."
        : `Could not log in: ${codeName(connectError.code)}: ${connectError.rawMessage}`,
    );
  } finally {
    passwordInput.value = "";
    otpInput.value = "";
    loginButton.disabled = false;
  }
}

logoutButton.addEventListener("click", () => {
  void session.logout().finally(() => showLogin());
});

void session.isLoggedIn().then((loggedIn) => (loggedIn ? showSignedIn() : showLogin()));
