/**
 * `startServer`'s AdminService: registered beside the application's routes, behind the same
 * auth layer, so the rules declared in admin.proto guard it like any service.
 */
import type { ConnectRouter } from "@connectrpc/connect";
import { AdminService } from "../../gen/protoguard/v1/admin_pb.js";
import { createAdminService, type AdminServiceOptions } from "../admin/admin-service.js";
import type { ServedPolicy } from "../admin/policy-table.js";
import { servicesOf } from "../connect/routes.js";
import type { PasswordHasher } from "../lifecycle/passwords.js";
import type { Database } from "../store/database-handle.js";
import type { Keyring } from "../token/keys.js";

/** What `startServer`'s `adminService` option can tune; the rest comes from the server. */
export type AdminServiceSettings = Pick<
  AdminServiceOptions,
  "passwordHasher" | "rotationGraceSeconds" | "auditFollowIntervalMs" | "maxAuditFollowers"
>;

/** The parts of the server AdminService works on. */
export interface AdminRouteParts {
  readonly database: Database;
  readonly keyring: Keyring;
  /** The runtime's hasher, unless the settings name one. */
  readonly passwordHasher?: PasswordHasher | undefined;
  /** The server's plans, known once its routes (these among them) are. */
  readonly policy: () => ServedPolicy;
}

/**
 * `routes` plus AdminService, unless `setting` is false or the application registers
 * AdminService itself (its own implementation then stands, as for AuthService).
 */
export function withAdminService(
  routes: (router: ConnectRouter) => void,
  setting: boolean | AdminServiceSettings | undefined,
  parts: AdminRouteParts,
): (router: ConnectRouter) => void {
  if (setting === false) return routes;
  if (servicesOf(routes).some((service) => service.typeName === AdminService.typeName)) return routes;
  const settings = setting === true || setting === undefined ? {} : setting;
  const passwordHasher = settings.passwordHasher ?? parts.passwordHasher;
  // One implementation for every time the routes are registered (discovery, then serving).
  const impl = createAdminService({
    ...settings,
    database: parts.database,
    keyring: parts.keyring,
    policy: parts.policy,
    ...(passwordHasher !== undefined && { passwordHasher }),
  });
  return (router) => {
    routes(router);
    router.service(AdminService, impl);
  };
}
