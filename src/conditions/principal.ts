/**
 * `principal` as conditions see it. Principals are cached by the principal
 * source and shared by the calls of one user, so the CEL form is built once
 * per principal object rather than once per call, and built as a CEL map
 * already: handing CEL a plain object would make it convert the object on
 * every evaluation.
 */
import { celList, celMap, type CelMap } from "@bufbuild/cel";
import { principalKind, type Principal } from "../principal.js";

const forms = new WeakMap<Principal, CelMap>();

/**
 * The CEL value of `principal`: `id` (int), `username`, `kind` ("user" or
 * "service"), `is_staff`, `is_superuser`, `permissions` and `groups` (lists
 * of strings, sorted), and `api_key`: the id of the API key the caller
 * presented, `""` for a token (so `principal.api_key == ""` admits tokens only).
 */
export function celPrincipal(principal: Principal): CelMap {
  let form = forms.get(principal);
  if (form === undefined) {
    form = celMap(
      new Map<string, bigint | string | boolean | ReturnType<typeof celList>>([
        ["id", BigInt(principal.id)],
        ["username", principal.username],
        ["kind", principalKind(principal)],
        ["is_staff", principal.isStaff],
        ["is_superuser", principal.isSuperuser],
        ["permissions", celList([...principal.permissions].sort())],
        ["groups", celList([...(principal.groups ?? [])].sort())],
        ["api_key", principal.apiKey?.id ?? ""],
      ]),
    );
    forms.set(principal, form);
  }
  return form;
}
