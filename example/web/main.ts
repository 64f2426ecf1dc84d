/**
 * The example's browser page: logs in through protoguard.v1.AuthService and
 * calls a protected method of the example over both browser protocols, so
 * one page shows that the same rule, token and error codes hold for
 * gRPC-Web and Connect alike. Plain DOM on purpose: the point is the calls,
 * and a framework would hide them.
 *
 * Bundled by ./build.ts (esbuild) into dist/, which `protoguard serve`
 * serves under `/` on the RPC port itself, so every call goes to
 * `location.origin` and no CORS is involved.
 */
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { AccountService, type GetProfileResponse } from "../../gen/example/v1/account_pb.js";
import { createSession } from "../../src/exports/client.js";

const baseUrl = location.origin;
/**
 * protoguard/client's session logs in once and refreshes the access token by
 * itself, so the profile keeps loading past the access token's lifetime. Its
 * tokens live in memory only (the default storage), never in localStorage: a
 * bearer token in storage outlives the tab and is readable by any script
 * injected into the origin. Reloading the page means logging in again.
 */
const auth = createSession({
  // Login and Refresh go over Connect (JSON): the simplest protocol to read
  // in the browser's network panel.
  transport: createConnectTransport({ baseUrl }),
  onSessionEnd: (reason) => {
    if (reason === "LOGOUT") return;
    session.textContent = "Not signed in.";
    profileButton.disabled = true;
    showError(`the session ended (${reason}): log in again`);
  },
});
// The profile is fetched over both browser protocols, each with the session's interceptor.
const connect = createConnectTransport({ baseUrl, interceptors: [auth.interceptor] });
const grpcWeb = createGrpcWebTransport({ baseUrl, interceptors: [auth.interceptor] });

function element<T extends HTMLElement>(id: string, type: new () => T): T {
  const found = document.getElementById(id);
  if (!(found instanceof type)) throw new Error(`#${id} is missing from the page`);
  return found;
}

const form = element("login-form", HTMLFormElement);
const username = element("username", HTMLInputElement);
const password = element("password", HTMLInputElement);
const otp = element("otp", HTMLInputElement);
const loginButton = element("login", HTMLButtonElement);
const session = element("session", HTMLParagraphElement);
const errorBox = element("error", HTMLParagraphElement);
const profileButton = element("get-profile", HTMLButtonElement);
const results = {
  grpcWeb: element("grpcweb-result", HTMLDivElement),
  connect: element("connect-result", HTMLDivElement),
};

/** "PermissionDenied" → "permission_denied": the code as Connect spells it on the wire. */
function codeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

/** "code: message" of any failure, the message without Connect's "[code]" prefix. */
function describe(error: unknown): string {
  const connectError = ConnectError.from(error);
  return `${codeName(connectError.code)}: ${connectError.rawMessage}`;
}

function showError(text: string | undefined): void {
  errorBox.textContent = text ?? "";
  errorBox.hidden = text === undefined;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  void login();
});

async function login(): Promise<void> {
  loginButton.disabled = true;
  showError(undefined);
  try {
    const user = await auth.login({
      username: username.value.trim(),
      password: password.value,
      otpCode: otp.value.trim(),
    });
    session.textContent = `Signed in as ${user.username}.`;
    profileButton.disabled = false;
  } catch (error) {
    // A failed login ends any earlier session on this page: the form now
    // speaks for someone else.
    await auth.logout().catch(() => undefined);
    session.textContent = "Not signed in.";
    profileButton.disabled = true;
    showError(describe(error));
  } finally {
    password.value = "";
    otp.value = "";
    loginButton.disabled = false;
  }
}

profileButton.addEventListener("click", () => {
  void getProfiles();
});

async function getProfiles(): Promise<void> {
  if (!(await auth.isLoggedIn())) return;
  profileButton.disabled = true;
  showError(undefined);
  try {
    // Both at once and each on its own: one protocol failing must not hide
    // what the other answered.
    await Promise.all([showProfile(results.grpcWeb, grpcWeb), showProfile(results.connect, connect)]);
  } finally {
    profileButton.disabled = false;
  }
}

async function showProfile(target: HTMLDivElement, transport: Transport): Promise<void> {
  target.dataset["state"] = "pending";
  render(target, [["status", "calling…"]]);
  try {
    const profile: GetProfileResponse = await createClient(AccountService, transport).getProfile({});
    target.dataset["state"] = "ok";
    render(target, [
      ["username", profile.username],
      ["id", String(profile.id)],
      ["email", profile.email || "—"],
      ["staff", profile.isStaff ? "yes" : "no"],
      ["superuser", profile.isSuperuser ? "yes" : "no"],
      ["permissions", profile.permissions.length > 0 ? profile.permissions.join(", ") : "none"],
    ]);
  } catch (error) {
    target.dataset["state"] = "error";
    render(target, [["error", describe(error)]]);
  }
}

/** Replaces everything below the result's heading with a list of name/value pairs. */
function render(target: HTMLDivElement, rows: readonly (readonly [string, string])[]): void {
  const heading = target.querySelector("h3");
  const list = document.createElement("dl");
  for (const [name, value] of rows) {
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.textContent = value;
    detail.dataset["field"] = name;
    list.append(term, detail);
  }
  target.replaceChildren(...(heading === null ? [] : [heading]), list);
}
