/**
 * `principal` as conditions see it. Principals are cached by the principal
 * source and shared by the calls of one user, so the CEL form is built once
 * per principal object rather than once per call.
 */
import { principalKind, type Principal } from "../principal.js";

const forms = new WeakMap<Principal, object>();

/**
 * The CEL value of `principal`: `id` (int), `username`, `kind` ("user" or
 * "service"), `is_staff`, `is_superuser`, `permissions` and `groups` (lists
 * of strings, sorted).
 */
export function celPrincipal(principal: Principal): object {
  let form = forms.get(principal);
  if (form === undefined) {
    form = Object.freeze({
      id: BigInt(principal.id),
      username: principal.username,
      kind: principalKind(principal),
      is_staff: principal.isStaff,
      is_superuser: principal.isSuperuser,
      permissions: Object.freeze([...principal.permissions].sort()),
      groups: Object.freeze([...(principal.groups ?? [])].sort()),
    });
    forms.set(principal, form);
  }
  return form;
}
