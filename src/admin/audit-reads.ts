/**
 * AdminService's audit reads: a filtered, paged list (newest first), and a stream that follows
 * the rows any instance writes. Following polls the table by id: ids are taken under the audit
 * chain's head lock (src/store/audit.ts), so they become visible in increasing order and a poll
 * "after the last id seen" misses none.
 */
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { AuditEvent } from "../../gen/protoguard/v1/admin_pb.js";
import { AUDIT_EVENT_TYPES, type AuditEventType } from "../audit-event.js";
import { listAuditEvents, type AuditListFilter } from "../store/audit.js";
import type { DrizzleDb } from "../store/database-handle.js";
import { normalizeUsername } from "../store/users.js";
import { auditEventMessage } from "./convert.js";
import { adminError, invalidArgument } from "./errors.js";

/** Default and largest page of ListAuditEvents. */
export const AUDIT_PAGE = Object.freeze({ default: 100, max: 1000 });

/** Rows read per poll of FollowAuditEvents; a backlog is sent in batches of this many. */
const FOLLOW_BATCH = 500;

/** The filters ListAuditEvents and FollowAuditEvents share, as the request carries them. */
export interface AuditFilterRequest {
  readonly since?: Timestamp | undefined;
  readonly types: readonly string[];
  readonly username: string;
}

/**
 * The store filter for a request: `since` as a Date, each type checked (a type ending in "."
 * stands for every type it starts: "login." is login.succeeded, login.failed and
 * login.totp_failed), the username NFKC-normalized like every stored one.
 *
 * @throws {ConnectError} INVALID_ARGUMENT naming an unknown type.
 */
export function auditFilter(request: AuditFilterRequest): AuditListFilter {
  const types = new Set<AuditEventType>();
  for (const type of request.types) {
    const matching = type.endsWith(".")
      ? AUDIT_EVENT_TYPES.filter((known) => known.startsWith(type))
      : AUDIT_EVENT_TYPES.filter((known) => known === type);
    if (matching.length === 0) {
      throw invalidArgument(
        `unknown audit event type ${JSON.stringify(type)}: expected one of ${AUDIT_EVENT_TYPES.join(", ")}`,
      );
    }
    for (const known of matching) types.add(known);
  }
  return {
    ...(request.since !== undefined && { since: timestampDate(request.since) }),
    ...(types.size > 0 && { types: [...types] }),
    ...(request.username !== "" && { username: normalizeUsername(request.username) }),
  };
}

/** A page token: the id below which the next page starts, opaque to clients. */
function encodeToken(beforeId: number): string {
  return Buffer.from(`audit:${beforeId}`, "utf8").toString("base64url");
}

function decodeToken(token: string): number {
  const match = /^audit:(\d{1,15})$/.exec(Buffer.from(token, "base64url").toString("utf8"));
  if (match === null) throw invalidArgument("invalid page_token: pass the next_page_token of the previous page");
  return Number(match[1]);
}

/** One page of ListAuditEvents, newest first. */
export async function auditPage(
  db: DrizzleDb,
  request: AuditFilterRequest & { readonly pageSize: number; readonly pageToken: string },
): Promise<{ events: AuditEvent[]; nextPageToken: string }> {
  if (request.pageSize < 0) throw invalidArgument("page_size must not be negative");
  // As AIP-158: 0 is the default, and sizes above the largest are served as the largest.
  const size = Math.min(request.pageSize === 0 ? AUDIT_PAGE.default : request.pageSize, AUDIT_PAGE.max);
  const filter = auditFilter(request);
  const beforeId = request.pageToken === "" ? undefined : decodeToken(request.pageToken);
  const rows = await listAuditEvents(db, {
    ...filter,
    ...(beforeId !== undefined && { beforeId }),
    order: "desc",
    limit: size + 1,
  });
  const page = rows.slice(0, size);
  return {
    events: page.map(auditEventMessage),
    nextPageToken: rows.length > size ? encodeToken(page[page.length - 1]!.id) : "",
  };
}

/** Options of {@link followAuditEvents}. */
export interface FollowOptions {
  readonly db: DrizzleDb;
  /** Pause between polls when there is nothing new, ms. */
  readonly intervalMs: number;
  /** Ends the stream: the call's signal. */
  readonly signal: AbortSignal;
}

/**
 * The events matching the request's filters: those since `since` first (none without it),
 * then every new one as it is written, oldest first, until `signal` aborts.
 */
export async function* followAuditEvents(
  request: AuditFilterRequest,
  options: FollowOptions,
): AsyncGenerator<AuditEvent> {
  const { db, intervalMs, signal } = options;
  const filter = auditFilter(request);
  let lastId: number;
  if (filter.since === undefined) {
    // Only what is written from now on: start after the newest row, whatever it matches.
    const [newest] = await listAuditEvents(db, { order: "desc", limit: 1 });
    lastId = newest?.id ?? 0;
  } else lastId = 0;
  while (!signal.aborted) {
    const rows = await listAuditEvents(db, { ...filter, afterId: lastId, order: "asc", limit: FOLLOW_BATCH });
    for (const row of rows) {
      lastId = row.id;
      yield auditEventMessage(row);
    }
    // A full batch means more are waiting: read on without pausing.
    if (rows.length < FOLLOW_BATCH) await pause(intervalMs, signal);
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Counts open FollowAuditEvents streams against a bound: each polls the database, so an
 * unbounded number of them is a load anyone holding view_auditevent could impose.
 */
export function createFollowerGate(max: number): () => () => void {
  let open = 0;
  return () => {
    if (max > 0 && open >= max) {
      throw adminError(
        "too many audit followers on this server, try again later",
        Code.ResourceExhausted,
        "TOO_MANY_FOLLOWERS",
      );
    }
    open++;
    let released = false;
    return () => {
      if (!released) open--;
      released = true;
    };
  };
}
