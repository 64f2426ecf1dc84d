import type { DescService } from "@bufbuild/protobuf";
import { createConnectRouter, type ConnectRouter } from "@connectrpc/connect";

/**
 * The distinct services `routes` registers, in registration order, found by letting it register
 * on a scratch router. A routes function is the one description of an application's services
 * (the same one `connectNodeAdapter({ routes })` takes), so the server and the testing kit read
 * the services from it rather than asking for a second list that could drift.
 *
 * @example
 * ```ts
 * const services = servicesOf((router) => router.service(ProductService, impl));
 * // [ProductService]
 * ```
 */
export function servicesOf(routes: (router: ConnectRouter) => void): DescService[] {
  const probe = createConnectRouter();
  routes(probe);
  return [...new Set(probe.handlers.map((handler) => handler.service))];
}
