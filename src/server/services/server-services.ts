/**
 * The services the server adds itself, gRPC health and reflection, on a
 * router of their own without the auth layer.
 */
import type { DescService } from "@bufbuild/protobuf";
import { createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { file_grpc_health_v1_health, Health } from "../../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionAlpha } from "../../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { NodeHandler } from "../http.js";
import { healthConnectionKey, type HealthService } from "./health.js";
import { fileRegistryOf, reflectionFiles, registerReflection } from "./reflection.js";

/**
 * Services the server adds itself and serves to anyone, without the auth
 * layer: load balancers probe health without tokens, and reflection only
 * describes the schema (which `buf curl --schema` users hold anyway).
 */
export const SERVER_SERVICES: readonly DescService[] = [Health, ServerReflection, ServerReflectionAlpha];

/** What {@link serverServicesHandler} serves. */
export interface ServerServicesOptions {
  /** The health service to register. */
  readonly health: HealthService;
  /** The application's services, which reflection describes. */
  readonly services: readonly DescService[];
  /** Largest request message accepted, in bytes. */
  readonly readMaxBytes: number;
  /** Answers paths that name none of {@link SERVER_SERVICES}' methods. */
  readonly fallback: NodeHandler;
}

/**
 * A handler for {@link SERVER_SERVICES} alone. A router of its own, without
 * the auth layer: it holds nothing but health and reflection, so no path can
 * reach an application method through it, whatever the request says.
 */
export function serverServicesHandler(options: ServerServicesOptions): NodeHandler {
  const { health, services } = options;
  return connectNodeAdapter({
    routes(router) {
      health.register(router);
      registerReflection(router, {
        registry: fileRegistryOf(...services.map((s) => s.file), file_grpc_health_v1_health, ...reflectionFiles),
        services: [...services.map((s) => s.typeName), Health.typeName, ServerReflection.typeName],
      });
    },
    // Health counts Watch calls per connection: the HTTP/2 session, or the socket.
    contextValues: (req) =>
      createContextValues().set(healthConnectionKey, "stream" in req ? req.stream.session : req.socket),
    readMaxBytes: options.readMaxBytes,
    fallback: options.fallback,
  });
}
