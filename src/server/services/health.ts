/**
 * grpc.health.v1.Health: the status probe that load balancers, Kubernetes
 * (`grpc` probes), grpc_health_probe and grpc-js clients understand.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey } from "@connectrpc/connect";
import type { ConnectRouter, ContextKey, HandlerContext } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatusEnum,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
} from "../../../gen/grpc/health/v1/health_pb.js";
import type { HealthCheckRequest, HealthCheckResponse } from "../../../gen/grpc/health/v1/health_pb.js";

/** The statuses a server sets; UNKNOWN and SERVICE_UNKNOWN are the protocol's, not ours to set. */
export type ServingStatus = "SERVING" | "NOT_SERVING";

/** Options of {@link createHealth}. */
export interface HealthOptions {
  /**
   * Services known from the start, each with its status. The overall server
   * status (the empty name "") is always known. Default: none besides "".
   */
  services?: Record<string, ServingStatus>;
  /** Status of the overall server "" at start. Default "SERVING". */
  overall?: ServingStatus;
  /**
   * Open Watch calls across all clients. Watch needs no token and never
   * ends on its own, so without a bound anyone could hold any number of
   * them (each costs an HTTP/2 stream and its buffers); one more is refused
   * with RESOURCE_EXHAUSTED. Default 1000. 0 means no limit.
   */
  maxWatchStreams?: number;
  /**
   * Open Watch calls on one connection (as told by
   * {@link healthConnectionKey}); a load balancer or probe watches a few
   * services, not hundreds. One more is refused with RESOURCE_EXHAUSTED.
   * Default 10. 0 means no limit.
   */
  maxWatchStreamsPerConnection?: number;
}

/** The defaults of the Watch bounds of {@link HealthOptions}. */
export const HEALTH_WATCH_DEFAULTS = Object.freeze({ maxWatchStreams: 1000, maxWatchStreamsPerConnection: 10 });

/**
 * Context value naming the connection a call arrived on (any object that
 * stays the same for the connection: the HTTP/2 session or the socket), for
 * {@link HealthOptions.maxWatchStreamsPerConnection}. Set it from
 * `connectNodeAdapter`'s `contextValues`; calls without it count only
 * against the global bound.
 */
export const healthConnectionKey: ContextKey<object | undefined> = createContextKey<object | undefined>(undefined, {
  description: "protoguard.healthConnection",
});

/** The health service of one server; see {@link createHealth}. */
export interface HealthService {
  /** Serves grpc.health.v1.Health (Check, List, Watch) on `router`. */
  register(router: ConnectRouter): void;
  /**
   * Sets the status of a service ("" is the whole server) and wakes every
   * Watch of it. Setting an unchanged status sends nothing. Ignored after
   * {@link shutdown}.
   */
  setStatus(service: string, status: ServingStatus): void;
  /** The current status, or undefined for a service never set. */
  getStatus(service: string): ServingStatus | undefined;
  /**
   * Marks every known service NOT_SERVING, ignores later updates, and ends
   * every Watch after telling it so. Call it before closing the server so
   * that load balancers drain it and open Watch streams do not hold the
   * close up for its whole grace period.
   */
  shutdown(): void;
}

/** Maximum entries in one List answer, as the protocol defines. */
const listLimit = 100;

/**
 * Creates the health service. The overall server status "" starts as
 * `options.overall` (default SERVING); other services are unknown until
 * set. Check of an unknown service fails with NOT_FOUND; Watch of one sends
 * SERVICE_UNKNOWN and keeps the stream open until the service is set. A
 * Watch ends when the call does (client cancel, deadline, server close) or
 * after {@link HealthService.shutdown}.
 */
export function createHealth(options: HealthOptions = {}): HealthService {
  const statuses = new Map<string, ServingStatusEnum>([["", toEnum(options.overall ?? "SERVING")]]);
  for (const [service, status] of Object.entries(options.services ?? {})) statuses.set(service, toEnum(status));
  let shutDown = false;
  const maxWatchStreams = options.maxWatchStreams ?? HEALTH_WATCH_DEFAULTS.maxWatchStreams;
  const maxPerConnection = options.maxWatchStreamsPerConnection ?? HEALTH_WATCH_DEFAULTS.maxWatchStreamsPerConnection;
  let openWatches = 0;
  // Weak: a connection's count goes with the connection, whatever happens to its calls.
  const watchesByConnection = new WeakMap<object, number>();
  // Wakes every Watch loop; each one re-reads the status it follows.
  const listeners = new Set<() => void>();

  const update = (service: string, status: ServingStatusEnum): void => {
    if (statuses.get(service) === status) return;
    statuses.set(service, status);
    for (const listener of [...listeners]) listener();
  };

  const nextChange = (signal: AbortSignal): Promise<void> =>
    new Promise<void>((resolve) => {
      const done = (): void => {
        listeners.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      listeners.add(done);
      signal.addEventListener("abort", done, { once: true });
    });

  /** Counts a Watch in, or refuses it when a bound is reached; returns the release. */
  const admitWatch = (context: HandlerContext): (() => void) => {
    const connection = context.values.get(healthConnectionKey);
    const onConnection = connection === undefined ? 0 : (watchesByConnection.get(connection) ?? 0);
    if (maxWatchStreams > 0 && openWatches >= maxWatchStreams) {
      throw new ConnectError("too many health watches on this server", Code.ResourceExhausted);
    }
    if (connection !== undefined && maxPerConnection > 0 && onConnection >= maxPerConnection) {
      throw new ConnectError("too many health watches on this connection", Code.ResourceExhausted);
    }
    openWatches++;
    if (connection !== undefined) watchesByConnection.set(connection, onConnection + 1);
    return () => {
      openWatches--;
      if (connection !== undefined) watchesByConnection.set(connection, (watchesByConnection.get(connection) ?? 1) - 1);
    };
  };

  async function* watch(request: HealthCheckRequest, context: HandlerContext): AsyncGenerator<HealthCheckResponse> {
    const release = admitWatch(context);
    try {
      yield* follow(request, context);
    } finally {
      release();
    }
  }

  async function* follow(request: HealthCheckRequest, context: HandlerContext): AsyncGenerator<HealthCheckResponse> {
    let sent: ServingStatusEnum | undefined;
    while (!context.signal.aborted) {
      const current = statuses.get(request.service) ?? ServingStatusEnum.SERVICE_UNKNOWN;
      if (current !== sent) {
        sent = current;
        yield create(HealthCheckResponseSchema, { status: current });
        // Re-read before waiting: the status may have changed while the
        // message was being written.
        continue;
      }
      // After shutdown the last message said NOT_SERVING: ending the stream
      // lets a graceful close finish instead of waiting out its grace period
      // (clients retry, find the port closed, and mark the server down).
      if (shutDown) return;
      // No await between reading the status and subscribing, so no change is missed.
      await nextChange(context.signal);
    }
  }

  return {
    register(router) {
      router.service(Health, {
        check(request) {
          const status = statuses.get(request.service);
          if (status === undefined) {
            throw new ConnectError(`unknown service "${request.service}"`, Code.NotFound);
          }
          return create(HealthCheckResponseSchema, { status });
        },
        list() {
          if (statuses.size > listLimit) {
            throw new ConnectError(`more than ${listLimit} services`, Code.ResourceExhausted);
          }
          const response = create(HealthListResponseSchema);
          for (const [service, status] of statuses) {
            response.statuses[service] = create(HealthCheckResponseSchema, { status });
          }
          return response;
        },
        watch,
      });
    },
    setStatus(service, status) {
      if (shutDown) return;
      update(service, toEnum(status));
    },
    getStatus(service) {
      const status = statuses.get(service);
      return status === undefined ? undefined : fromEnum(status);
    },
    shutdown() {
      if (shutDown) return;
      shutDown = true;
      for (const service of statuses.keys()) update(service, ServingStatusEnum.NOT_SERVING);
    },
  };
}

function toEnum(status: ServingStatus): ServingStatusEnum {
  return status === "SERVING" ? ServingStatusEnum.SERVING : ServingStatusEnum.NOT_SERVING;
}

function fromEnum(status: ServingStatusEnum): ServingStatus {
  return status === ServingStatusEnum.SERVING ? "SERVING" : "NOT_SERVING";
}
