/**
 * One writer per embedded (PGlite) data directory, across processes and
 * within one process.
 *
 * PGlite is PostgreSQL in single-user mode: it takes no lock of its own, and
 * two processes on one directory both "succeed" and then overwrite each
 * other's pages. So before PGlite starts, {@link acquireDataDirLock} creates
 * a lock file atomically (`O_CREAT | O_EXCL`, the `wx` flag) naming this
 * process: pid, start time, boot and a short command line. Whoever finds the
 * file and sees its holder alive is refused with a one-line
 * {@link StoreError} `DATA_DIR_LOCKED` naming that pid.
 *
 * The lock is removed by {@link DataDirLock.release} (`Database.close()`) and,
 * should the process exit without closing, by an `exit` listener. A process
 * killed by a signal leaves the file behind; the next opener finds its holder
 * dead (`kill(pid, 0)` fails with ESRCH), or, where `/proc` exists, the pid
 * reused by another process (a different start time) or a reboot since (a
 * different boot id), and recovers the lock.
 *
 * The file lives inside PGlite's own directory, beside PostgreSQL's
 * `postmaster.pid`, so that every path leading to one database (old and new
 * layouts, symlinks) meets the same lock.
 */
import { randomBytes } from "node:crypto";
import {
  closeSync,
  openSync,
  readFileSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { basename, extname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { StoreError } from "./errors.js";

/** Name of the lock file inside a PGlite data directory. */
export const DATA_DIR_LOCK_FILE = "protoguard.lock";

/** What a lock file records about the process holding the directory. */
export interface DataDirLockHolder {
  /** Process id of the holder. */
  readonly pid: number;
  /**
   * Start time of the holder (field 22 of `/proc/<pid>/stat`, clock ticks
   * since boot), telling a reused pid from the holder. Absent without `/proc`.
   */
  readonly startTime?: string;
  /** `/proc/sys/kernel/random/boot_id` when the lock was taken. Absent without `/proc`. */
  readonly bootId?: string;
  /** A short description of the holder, such as `protoguard serve`. */
  readonly command: string;
  /** Random, unique to this acquisition: tells our lock from a newer one. */
  readonly nonce: string;
  /** When the lock was taken (ISO 8601), for whoever reads the file. */
  readonly createdAt: string;
  /**
   * Set (ISO 8601) once the holder has begun to shut down
   * ({@link markDataDirsClosing}, `Database.close()`): an opener then waits
   * a few seconds for the directory instead of failing.
   */
  readonly closingSince?: string;
}

/** A held lock; see {@link acquireDataDirLock}. */
export interface DataDirLock {
  /** Removes the lock file if it is still ours. Safe to call more than once. */
  release(): void;
  /** Records in the lock file that this holder is shutting down (see {@link DataDirLockHolder.closingSince}). */
  markClosing(): void;
}

/**
 * How long a lock file may stay empty or unreadable before it counts as
 * abandoned. Creating and writing it are two system calls, so another opener
 * can see it empty for an instant; a process killed between the two leaves
 * it empty for ever.
 */
const UNREADABLE_GRACE_MS = 2_000;
/**
 * How long a takeover marker (see {@link removeStaleLock}) may live before it
 * counts as left by a process killed mid-takeover. A takeover takes a few
 * system calls.
 */
const TAKEOVER_GRACE_MS = 5_000;
/** How long to keep retrying while another opener is mid-write or mid-takeover. */
const CONTENDED_TIMEOUT_MS = 3_000;
/** Pause between those retries. */
const RETRY_MS = 20;
/**
 * How long an opener waits for a holder that is shutting down (a restart
 * right after SIGTERM) before it is refused.
 */
const CLOSING_WAIT_MS = 5_000;
/** Pause between looks at a closing holder's lock. */
const CLOSING_POLL_MS = 25;
/** Longest command line recorded, in characters. */
const MAX_COMMAND_LENGTH = 120;

/**
 * Locks held by this process, by the real path of their directory. Kept on
 * `globalThis` so that two copies of this module (a bundler, a source and a
 * built copy) still see each other's locks.
 */
interface Registry {
  readonly held: Map<string, { nonce: string; file: string; markClosing?: () => void }>;
  exitListener: boolean;
}
const REGISTRY_KEY = Symbol.for("protoguard.dataDirLocks");
const registry: Registry =
  ((globalThis as Record<symbol, unknown>)[REGISTRY_KEY] as Registry | undefined) ??
  ((globalThis as Record<symbol, unknown>)[REGISTRY_KEY] = { held: new Map(), exitListener: false } as Registry);

/** This process, as a lock file records it; computed once. */
const self = { pid: process.pid, startTime: procStartTime(process.pid), bootId: readBootId() };

/**
 * The default description of this process: the script's name (or `program`
 * when given) and up to two arguments after it, stopping at the first
 * option, so that flag values (`--password …`) never end up in a file or in
 * another process's error.
 */
export function defaultProcessName(program?: string, argv: readonly string[] = process.argv): string {
  const script = argv[1];
  const name = program ?? (script === undefined ? "node" : basename(script, extname(script)));
  const words: string[] = [];
  for (const arg of argv.slice(2, 4)) {
    if (arg.startsWith("-")) break;
    words.push(arg);
  }
  return [name, ...words].join(" ");
}

/** Options of {@link acquireDataDirLock}. */
export interface AcquireDataDirLockOptions {
  /** The directory as the caller named it, for messages. */
  readonly displayDir: string;
  /** How this process is described to others. Default {@link defaultProcessName}. */
  readonly processName?: string;
}

/**
 * Takes the lock of the PGlite directory `dir` (which must exist) for this
 * process, recovering a stale one.
 *
 * @throws {StoreError} `DATA_DIR_LOCKED` when a live process, or this one,
 *   holds the directory.
 */
export async function acquireDataDirLock(dir: string, options: AcquireDataDirLockOptions): Promise<DataDirLock> {
  const key = realpathSync(dir);
  const file = join(key, DATA_DIR_LOCK_FILE);
  if (registry.held.has(key)) {
    // Deterministic, and no file system race: refuse rather than share, since
    // two PGlite instances on one directory corrupt it just the same.
    throw new StoreError(
      "DATA_DIR_LOCKED",
      `the embedded database in ${options.displayDir} is already open in this process (pid ${process.pid}); ` +
        "close it first, or share one Database",
    );
  }
  const command = (options.processName ?? defaultProcessName()).replace(/\s+/g, " ").slice(0, MAX_COMMAND_LENGTH);
  const holder: DataDirLockHolder = {
    pid: self.pid,
    ...(self.startTime !== undefined && { startTime: self.startTime }),
    ...(self.bootId !== undefined && { bootId: self.bootId }),
    command,
    nonce: randomBytes(12).toString("hex"),
    createdAt: new Date().toISOString(),
  };
  const content = `${JSON.stringify(holder)}\n`;
  let released = false;
  const deadline = Date.now() + CONTENDED_TIMEOUT_MS;
  const closingDeadline = Date.now() + CLOSING_WAIT_MS;
  let lastHolder: DataDirLockHolder | undefined;
  for (;;) {
    if (tryCreate(file, content)) break;
    const found = readLock(file);
    if (found === "missing") continue; // released between our two calls: try again
    if (found === "unreadable") {
      if (ageMs(file) > UNREADABLE_GRACE_MS && (await removeStaleLock(file, undefined))) continue;
      if (Date.now() > deadline) throw lockedError(options.displayDir, undefined);
      await sleep(RETRY_MS);
      continue;
    }
    lastHolder = found;
    if (isAlive(found, key)) {
      // A holder shutting down is about to release: a restart waits for it.
      if (found.closingSince === undefined || found.pid === process.pid || Date.now() > closingDeadline) {
        throw lockedError(options.displayDir, found);
      }
      await sleep(CLOSING_POLL_MS);
      continue;
    }
    if (await removeStaleLock(file, found.nonce)) continue;
    if (Date.now() > deadline) throw lockedError(options.displayDir, lastHolder);
    await sleep(RETRY_MS);
  }
  const markClosing = () => {
    if (released || registry.held.get(key)?.nonce !== holder.nonce) return;
    rewriteIfOurs(file, holder.nonce, `${JSON.stringify({ ...holder, closingSince: new Date().toISOString() })}\n`);
  };
  registry.held.set(key, { nonce: holder.nonce, file, markClosing });
  if (!registry.exitListener) {
    registry.exitListener = true;
    // A process that ends without closing (process.exit, an uncaught error)
    // must not leave a lock naming itself. Signals that kill the process
    // skip this; the next opener recovers those locks.
    process.on("exit", () => {
      for (const { nonce, file: held } of registry.held.values()) removeIfOurs(held, nonce);
      registry.held.clear();
    });
  }
  return {
    markClosing,
    release() {
      if (released) return;
      released = true;
      registry.held.delete(key);
      removeIfOurs(file, holder.nonce);
    },
  };
}

/**
 * Marks every data directory this process holds as shutting down, so that a
 * process started meanwhile (a restart right after SIGTERM) waits up to 5 s
 * for it rather than failing `DATA_DIR_LOCKED`. `onShutdownSignals` calls it
 * on the first signal; `Database.close()` does it for its own directory.
 */
export function markDataDirsClosing(): void {
  for (const { markClosing } of registry.held.values()) markClosing?.();
}

/** Whether this very process holds the PGlite directory `dir`. */
export function isDataDirHeldHere(dir: string): boolean {
  try {
    return registry.held.has(realpathSync(dir));
  } catch {
    return false;
  }
}

/** Replaces the lock file's content atomically (write, then rename), if it still holds `nonce`. Never throws. */
function rewriteIfOurs(file: string, nonce: string, content: string): void {
  const partial = `${file}.${process.pid}.tmp`;
  try {
    const found = readLock(file);
    if (typeof found !== "object" || found.nonce !== nonce) return;
    writeFileSync(partial, content, { mode: 0o644 });
    renameSync(partial, file);
  } catch {
    // Only an optimization for a restart; the lock itself stands.
    try {
      unlinkSync(partial);
    } catch {
      // Never written.
    }
  }
}

function lockedError(displayDir: string, holder: DataDirLockHolder | undefined): StoreError {
  const who = holder === undefined ? "another process" : `process ${holder.pid} (${holder.command})`;
  return new StoreError(
    "DATA_DIR_LOCKED",
    `the embedded database in ${displayDir} is in use by ${who}; stop it, or use PostgreSQL (DATABASE_URL) for several processes`,
  );
}

/** Creates the lock file with our content, atomically; false if it exists. */
function tryCreate(file: string, content: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, "wx", 0o644);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  return true;
}

function readLock(file: string): DataDirLockHolder | "missing" | "unreadable" {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "missing";
    throw error;
  }
  try {
    const parsed = JSON.parse(text) as Partial<DataDirLockHolder>;
    if (!Number.isSafeInteger(parsed.pid) || (parsed.pid ?? 0) <= 0 || typeof parsed.nonce !== "string") {
      return "unreadable";
    }
    return { command: "unknown command", ...parsed } as DataDirLockHolder;
  } catch {
    return "unreadable";
  }
}

/** Milliseconds since `file` was last written; 0 if it is gone. */
function ageMs(file: string): number {
  try {
    return Date.now() - statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

/** Whether the process a lock names still holds it. */
function isAlive(holder: DataDirLockHolder, key: string): boolean {
  if (holder.bootId !== undefined && self.bootId !== undefined && holder.bootId !== self.bootId) return false;
  if (holder.pid === process.pid) {
    // Our own pid: held only if this very process took it. Otherwise the
    // file was copied along with the directory, or an earlier process with
    // our pid (pid 1 in a container) was killed.
    return registry.held.get(key)?.nonce === holder.nonce;
  }
  try {
    process.kill(holder.pid, 0);
  } catch (error) {
    // EPERM: alive, but another user's.
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return false;
  }
  if (holder.startTime !== undefined) {
    const current = procStartTime(holder.pid);
    // Unreadable (no /proc, hidepid): trust kill() and call it alive.
    if (current !== undefined && current !== holder.startTime) return false;
  }
  return true;
}

/**
 * Removes a stale lock file, provided it is still the one judged stale
 * (`nonce`; undefined for an unreadable file). Two openers may find the
 * same stale lock; without care the slower one would delete the lock the
 * faster one has just created. So the removal happens under a takeover
 * marker, itself created with `wx`, and only after reading the file again.
 * Resolves false when another opener is mid-takeover.
 */
async function removeStaleLock(file: string, nonce: string | undefined): Promise<boolean> {
  const marker = `${file}.takeover`;
  if (!tryCreate(marker, `${process.pid}\n`)) {
    // Left by a process killed mid-takeover: clear it and let the caller retry.
    if (ageMs(marker) > TAKEOVER_GRACE_MS) unlinkQuietly(marker);
    return false;
  }
  try {
    const found = readLock(file);
    const same = found === "missing" ? false : found === "unreadable" ? nonce === undefined : found.nonce === nonce;
    if (same) unlinkQuietly(file);
  } finally {
    unlinkQuietly(marker);
  }
  return true;
}

/**
 * Removes the lock file if it still holds `nonce`. Never throws: it runs in
 * `close()` and at exit, and a lock that could not be removed names a
 * process that is about to be gone, which the next opener recovers.
 */
function removeIfOurs(file: string, nonce: string): void {
  try {
    const found = readLock(file);
    if (typeof found === "object" && found.nonce === nonce) unlinkQuietly(file);
  } catch {
    // See above.
  }
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}

/** Field 22 (starttime) of `/proc/<pid>/stat`, or undefined without `/proc`. */
export function procStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 2 (comm) is in parentheses and may hold spaces and ")"; count
    // from after its last ")". There, field 3 is index 0, so 22 is index 19.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

function readBootId(): string | undefined {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}
