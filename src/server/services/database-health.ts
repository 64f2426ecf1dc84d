/**
 * What the server says about its database path: a probe of the query pool every few seconds and
 * the state of the invalidation notifications, as gRPC health statuses, Prometheus gauges and a
 * log line on every change.
 */
import type { Logger } from "pino";
import { Gauge, type Registry } from "prom-client";
import type { CachedPrincipalSource } from "../../principals/source.js";
import type { Database } from "../../store/database-handle.js";
import { pingDatabase } from "../../store/probe.js";
import { describeCause } from "../../util/cause-chain.js";
import type { HealthService } from "./health.js";

/** Health service name of the database probe. */
export const DATABASE_HEALTH_SERVICE = "protoguard.database";
/** Health service name of the invalidation notifications (LISTEN connection and heartbeat). */
export const NOTIFICATIONS_HEALTH_SERVICE = "protoguard.notifications";

/** Options of `watchDatabaseHealth`. */
export interface DatabaseHealthOptions {
  /** Interval of the database probe (`select 1` over the query pool), ms. Default 2000. */
  probeIntervalMs?: number;
  /** How long the probe may take before the database counts as stalled, ms. Default 3000. */
  probeTimeoutMs?: number;
}

/** Defaults of {@link DatabaseHealthOptions}. */
export const DATABASE_HEALTH_DEFAULTS = Object.freeze({ probeIntervalMs: 2000, probeTimeoutMs: 3000 });

/** The parts `watchDatabaseHealth` reports on and to. */
export interface DatabaseHealthParts {
  readonly database: Database;
  readonly principals: Pick<CachedPrincipalSource, "notifications" | "onNotificationsChange">;
  readonly health: HealthService;
  readonly registry: Registry;
  readonly logger: Logger;
}

/**
 * Reports the database path:
 * - health `protoguard.database` and the overall status "" go NOT_SERVING when a probe fails or
 *   takes longer than `probeTimeoutMs` (a stalled pooler, a full pool, a server gone), and back
 *   to SERVING with the next probe that answers; gauge `protoguard_database_up` (1 or 0);
 * - health `protoguard.notifications` is SERVING while invalidation notifications arrive and
 *   NOT_SERVING while they are down (caches are then flushed at every heartbeat, so decisions
 *   stay within the heartbeat bound; the overall status is left alone); gauge
 *   `protoguard_invalidation_listening` (1 or 0; absent when the cache has no subscription).
 *
 * Both gauges aggregate across workers as the minimum: one worker down shows 0.
 */
export function watchDatabaseHealth(parts: DatabaseHealthParts, options: DatabaseHealthOptions = {}): () => void {
  const { database, principals, health, registry, logger } = parts;
  const intervalMs = options.probeIntervalMs ?? DATABASE_HEALTH_DEFAULTS.probeIntervalMs;
  const timeoutMs = options.probeTimeoutMs ?? DATABASE_HEALTH_DEFAULTS.probeTimeoutMs;

  const databaseUp = new Gauge({
    name: "protoguard_database_up",
    help: "Whether the last probe of the database's query pool answered in time (1) or not (0).",
    registers: [registry],
    aggregator: "min",
  });
  const listening = new Gauge({
    name: "protoguard_invalidation_listening",
    help: "Whether cache invalidation notifications arrive (1: LISTEN connection open and heartbeat returning) or not (0).",
    registers: [registry],
    aggregator: "min",
  });

  let up = true;
  databaseUp.set(1);
  health.setStatus(DATABASE_HEALTH_SERVICE, "SERVING");
  const setDatabase = (next: boolean, error?: unknown) => {
    databaseUp.set(next ? 1 : 0);
    if (next === up) return;
    up = next;
    health.setStatus(DATABASE_HEALTH_SERVICE, next ? "SERVING" : "NOT_SERVING");
    health.setStatus("", next ? "SERVING" : "NOT_SERVING");
    if (next) logger.info("database answering again");
    else logger.error({ error: describeCause(error) }, "database not answering");
  };

  const showNotifications = (state: CachedPrincipalSource["notifications"], reason: string, log: boolean) => {
    if (state === "off") return;
    listening.set(state === "listening" ? 1 : 0);
    health.setStatus(NOTIFICATIONS_HEALTH_SERVICE, state === "listening" ? "SERVING" : "NOT_SERVING");
    if (!log) return;
    if (state === "listening") logger.info({ reason }, "invalidation notifications arriving again");
    else logger.warn({ reason }, "invalidation notifications down: caches flushed at every heartbeat");
  };
  showNotifications(principals.notifications, "start", false);
  const unlisten = principals.onNotificationsChange((state, reason) => showNotifications(state, reason, true));

  let probing = false;
  let stopped = false;
  const timer = setInterval(() => {
    if (probing || stopped) return;
    probing = true;
    pingDatabase(database, timeoutMs).then(
      () => {
        probing = false;
        if (!stopped) setDatabase(true);
      },
      (error: unknown) => {
        probing = false;
        if (!stopped) setDatabase(false, error);
      },
    );
  }, intervalMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
    unlisten();
  };
}
