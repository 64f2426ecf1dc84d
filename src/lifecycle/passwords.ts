/**
 * Password hashing for the user store: scrypt in a PHC-style string for new
 * hashes, plus verification (and upgrade on login) of hashes imported from a
 * Django `auth_user` table.
 *
 * Why scrypt: it is in Node 20's `node:crypto`, so no native addon; argon2id
 * only arrives built in with Node 24. The parameters follow OWASP's scrypt
 * recommendation (N=2^17, r=8, p=1).
 */
import { availableParallelism } from "node:os";
import { pbkdf2, randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import type { ScryptOptions } from "node:crypto";
import { ProtoguardError } from "../errors.js";
import { verifyDjangoHash } from "./django-hashes.js";

/**
 * Longest password accepted, in UTF-8 bytes. Far above any real passphrase,
 * but it keeps a megabyte "password" from being fed to the key derivation.
 */
export const MAX_PASSWORD_BYTES = 4096;

/** scrypt cost parameters (the `N = 2^logN`, `r`, `p` of RFC 7914). */
export interface ScryptParams {
  /** log2 of the CPU/memory cost N. Default 17 (N = 131072, 128 MiB with r=8). */
  readonly logN: number;
  /** Block size. Default 8. */
  readonly r: number;
  /** Parallelisation. Default 1. */
  readonly p: number;
}

/** The parameters new hashes get unless configured otherwise: N=2^17, r=8, p=1. */
export const DEFAULT_SCRYPT_PARAMS: ScryptParams = Object.freeze({ logN: 17, r: 8, p: 1 });

/** Options of {@link createPasswordHasher}. */
export interface PasswordHasherOptions {
  /**
   * Parameters for new hashes; each field defaults to {@link DEFAULT_SCRYPT_PARAMS}. Stored
   * hashes with weaker parameters still verify but report `needsRehash`. Lower values are
   * meant for tests only.
   */
  scrypt?: { logN?: number; r?: number; p?: number };
  /**
   * Most derivations running at once. Default: the smaller of `os.availableParallelism()` and
   * the libuv threadpool size (`UV_THREADPOOL_SIZE`, default 4), and at least 1.
   */
  maxConcurrent?: number;
  /**
   * Most calls waiting for a free slot, shared fairly between
   * {@link PasswordWorkOptions.fairnessKey fairness keys}. Default 64. When it is full, a call
   * rejects with {@link PasswordBusyError} at once, unless its key has at least two calls fewer
   * waiting than the key with the most, whose newest waiting call is then refused instead.
   */
  maxQueue?: number;
}

/** Per-call options of {@link PasswordHasher}'s methods. */
export interface PasswordWorkOptions {
  /**
   * Whom the work is for, e.g. the client address of a login. Waiting calls are started
   * round-robin across keys, and a full queue makes room for a key with fewer calls waiting
   * by refusing the newest call of the key with the most, so one client cannot hold every
   * place while others wait. Default `""`: one key shared by every call that names none.
   */
  readonly fairnessKey?: string;
}

/** Result of {@link PasswordHasher.verify}. */
export interface PasswordVerification {
  /** The password matches the stored hash. */
  readonly ok: boolean;
  /**
   * Only meaningful when `ok`: the stored hash is a legacy (Django) one or uses weaker
   * parameters than configured, so the caller should store `await hash(password)` now, while
   * it has the plaintext. Always false when `ok` is false.
   */
  readonly needsRehash: boolean;
}

/** Hashes and verifies passwords; see {@link createPasswordHasher}. */
export interface PasswordHasher {
  /**
   * Hashes a password into `$scrypt$ln=17,r=8,p=1$<salt>$<key>` (16-byte random salt, 32-byte
   * key, unpadded standard base64). Rejects with a `RangeError` for a password above
   * {@link MAX_PASSWORD_BYTES} (before any hashing), and with {@link PasswordBusyError} when
   * the queue is full.
   * Length and strength policy (minimums, breached-password checks) belong to the caller.
   */
  hash(password: string, options?: PasswordWorkOptions): Promise<string>;
  /**
   * Checks a password against a stored hash: this module's scrypt strings and Django's
   * `pbkdf2_sha256$…` / `pbkdf2_sha1$…`, `argon2$…`, `bcrypt_sha256$…`, `bcrypt$…` and `scrypt$…`. An empty, unusable (Django's `!…`), unknown,
   * malformed or absurdly expensive stored value, and a password above
   * {@link MAX_PASSWORD_BYTES}, give `{ ok: false }` without throwing. Rejects only with
   * {@link PasswordBusyError}.
   */
  verify(password: string, encoded: string, options?: PasswordWorkOptions): Promise<PasswordVerification>;
  /**
   * Does the work of a `verify` against a hash with the configured parameters and discards
   * the result. Call it when the user does not exist (or has no usable password) so the
   * response takes as long as for a real user. It matches users whose hash has the configured
   * parameters; imported Django hashes take their own PBKDF2 time until they are upgraded on
   * login. Rejects only with {@link PasswordBusyError}.
   */
  dummyVerify(password: string, options?: PasswordWorkOptions): Promise<void>;
}

/**
 * Thrown (as a rejection) when `maxQueue` calls are already waiting and none of them gives way
 * to this one, or when a waiting call is displaced by a call of a less busy fairness key. Map it to
 * RESOURCE_EXHAUSTED: a login flood then fails fast instead of queueing without bound and
 * starving the server of memory and threadpool time.
 */
export class PasswordBusyError extends ProtoguardError<"HASHER_BUSY"> {
  constructor(message = "too many password checks in progress, try again later") {
    super("HASHER_BUSY", message);
  }
}

// Bounds on parameters found in stored hashes: the stored string is data, and a tampered or
// corrupt row must not make one login allocate gigabytes or spin for minutes.
const MAX_LOG_N = 20;
const MAX_R = 32;
const MAX_P = 16;
const MAX_SCRYPT_MEMORY = 1024 * 1024 * 1024; // 128 * N * r bytes
const MAX_SCRYPT_WORK = 2 ** 23; // N * r * p, 8x the default
const MAX_PBKDF2_ITERATIONS = 10_000_000;
const MAX_DJANGO_SALT_LENGTH = 256;

const SALT_BYTES = 16;
const KEY_BYTES = 32;
const DEFAULT_MAX_QUEUE = 64;

const SCRYPT_PREFIX = "$scrypt$";
const SCRYPT_RE = /^\$scrypt\$ln=([1-9][0-9]?),r=([1-9][0-9]?),p=([1-9][0-9]?)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;
const DJANGO_PBKDF2_RE = /^pbkdf2_(sha256|sha1)\$([1-9][0-9]{0,7})\$([^$]+)\$([A-Za-z0-9+/]+={0,2})$/;

const NOT_OK: PasswordVerification = Object.freeze({ ok: false, needsRehash: false });

/**
 * Creates a password hasher.
 *
 * Defaults: scrypt N=2^17, r=8, p=1 for new hashes; at most
 * min(availableParallelism, libuv threadpool size) derivations at once (each takes 128 MiB at
 * the default parameters); at most 64 calls waiting, shared fairly between
 * {@link PasswordWorkOptions.fairnessKey fairness keys}, beyond which calls reject with
 * {@link PasswordBusyError}. Throws a `RangeError` for out-of-range options.
 *
 * @example
 * ```ts
 * const hasher = createPasswordHasher();
 * const user = await store.findByUsername(username);
 * if (user === undefined || user.password === "") {
 *   await hasher.dummyVerify(password);
 *   throw unauthenticated();
 * }
 * const { ok, needsRehash } = await hasher.verify(password, user.password);
 * if (!ok) throw unauthenticated();
 * if (needsRehash) await store.setPasswordHash(user.id, await hasher.hash(password));
 * ```
 */
export function createPasswordHasher(options: PasswordHasherOptions = {}): PasswordHasher {
  const params: ScryptParams = Object.freeze({
    logN: options.scrypt?.logN ?? DEFAULT_SCRYPT_PARAMS.logN,
    r: options.scrypt?.r ?? DEFAULT_SCRYPT_PARAMS.r,
    p: options.scrypt?.p ?? DEFAULT_SCRYPT_PARAMS.p,
  });
  // The same bounds as for stored hashes, so a hasher can always verify what it produced.
  if (!scryptParamsAcceptable(params)) {
    throw new RangeError(
      `scrypt parameters out of range: logN 1..${MAX_LOG_N}, r 1..${MAX_R}, p 1..${MAX_P}, ` +
        `128*N*r <= 1 GiB, N*r*p <= 2^23`,
    );
  }
  const maxConcurrent = options.maxConcurrent ?? defaultMaxConcurrent();
  if (!Number.isSafeInteger(maxConcurrent) || maxConcurrent < 1) {
    throw new RangeError("maxConcurrent must be a positive integer");
  }
  const maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
  if (!Number.isSafeInteger(maxQueue) || maxQueue < 0) {
    throw new RangeError("maxQueue must be a non-negative integer");
  }

  const limiter = new FairLimiter(maxConcurrent, maxQueue);
  // Random per process: the dummy comparison can never succeed, and nothing about it is secret.
  const dummySalt = randomBytes(SALT_BYTES);
  const dummyKey = randomBytes(KEY_BYTES);

  async function hash(password: string, options?: PasswordWorkOptions): Promise<string> {
    if (typeof password !== "string") throw new TypeError("password must be a string");
    if (Buffer.byteLength(password, "utf8") > MAX_PASSWORD_BYTES) {
      throw new RangeError(`password longer than ${MAX_PASSWORD_BYTES} bytes`);
    }
    const salt = randomBytes(SALT_BYTES);
    const key = await limiter.run(keyOf(options), () => scryptAsync(password, salt, KEY_BYTES, params));
    return formatScrypt(params, salt, key);
  }

  async function verify(
    password: string,
    encoded: string,
    options?: PasswordWorkOptions,
  ): Promise<PasswordVerification> {
    if (!passwordAcceptable(password) || typeof encoded !== "string") return NOT_OK;
    if (encoded.startsWith(SCRYPT_PREFIX)) {
      const stored = parseScrypt(encoded);
      if (stored === undefined) return NOT_OK;
      const key = await limiter.run(keyOf(options), () =>
        scryptAsync(password, stored.salt, stored.key.length, stored.params),
      );
      if (!timingSafeEqual(key, stored.key)) return NOT_OK;
      const weaker =
        stored.params.logN < params.logN ||
        stored.params.r < params.r ||
        stored.params.p < params.p ||
        stored.salt.length < SALT_BYTES;
      return { ok: true, needsRehash: weaker };
    }
    const django = parseDjangoPbkdf2(encoded);
    if (django === undefined) {
      // Django's argon2, bcrypt and scrypt hashers (users imported from Django).
      const other = await verifyDjangoHash(password, encoded, (task) => limiter.run(keyOf(options), task));
      return other === true ? { ok: true, needsRehash: true } : NOT_OK;
    }
    const key = await limiter.run(keyOf(options), () =>
      pbkdf2Async(password, django.salt, django.iterations, django.key.length, django.digest),
    );
    if (!timingSafeEqual(key, django.key)) return NOT_OK;
    // Always upgrade: PBKDF2 is far cheaper to attack on GPUs than scrypt at equal latency.
    return { ok: true, needsRehash: true };
  }

  async function dummyVerify(password: string, options?: PasswordWorkOptions): Promise<void> {
    // Mirror verify's early exit so an oversized password costs the same for everyone.
    if (!passwordAcceptable(password)) return;
    const key = await limiter.run(keyOf(options), () => scryptAsync(password, dummySalt, KEY_BYTES, params));
    timingSafeEqual(key, dummyKey);
  }

  return { hash, verify, dummyVerify };
}

function keyOf(options: PasswordWorkOptions | undefined): string {
  const key = options?.fairnessKey;
  return typeof key === "string" ? key : "";
}

function passwordAcceptable(password: unknown): password is string {
  return typeof password === "string" && Buffer.byteLength(password, "utf8") <= MAX_PASSWORD_BYTES;
}

function defaultMaxConcurrent(): number {
  // Derivations beyond the threadpool size would only wait inside libuv, invisible to
  // maxQueue and ahead of the fs and dns work the rest of the server needs.
  const raw = Number.parseInt(process.env["UV_THREADPOOL_SIZE"] ?? "", 10);
  const threadpool = Number.isFinite(raw) ? Math.min(Math.max(raw, 1), 1024) : 4;
  return Math.max(1, Math.min(availableParallelism(), threadpool));
}

function scryptParamsAcceptable({ logN, r, p }: ScryptParams): boolean {
  if (![logN, r, p].every(Number.isSafeInteger)) return false;
  if (logN < 1 || logN > MAX_LOG_N || r < 1 || r > MAX_R || p < 1 || p > MAX_P) return false;
  const n = 2 ** logN;
  return 128 * n * r <= MAX_SCRYPT_MEMORY && n * r * p <= MAX_SCRYPT_WORK;
}

function scryptAsync(password: string, salt: Buffer, keylen: number, { logN, r, p }: ScryptParams): Promise<Buffer> {
  const n = 2 ** logN;
  const scryptOptions: ScryptOptions = {
    N: n,
    r,
    p,
    // OpenSSL needs 128*r*(N+2) bytes for V plus 128*r*p for B; Node's 32 MiB default is
    // below the 128 MiB that N=2^17, r=8 takes. A little slack on top.
    maxmem: 128 * r * (n + p + 2) + 1024 * 1024,
  };
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keylen, scryptOptions, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function pbkdf2Async(
  password: string,
  salt: Buffer,
  iterations: number,
  keylen: number,
  digest: "sha256" | "sha1",
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2(password, salt, iterations, keylen, digest, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function formatScrypt({ logN, r, p }: ScryptParams, salt: Buffer, key: Buffer): string {
  return `${SCRYPT_PREFIX}ln=${logN},r=${r},p=${p}$${b64NoPad(salt)}$${b64NoPad(key)}`;
}

function b64NoPad(bytes: Buffer): string {
  return bytes.toString("base64").replace(/=+$/, "");
}

/** Decodes base64 only if re-encoding gives the same text, so there is one spelling per value. */
function strictBase64(text: string, padded: boolean): Buffer | undefined {
  const bytes = Buffer.from(text, "base64");
  const canonical = padded ? bytes.toString("base64") : b64NoPad(bytes);
  return canonical === text ? bytes : undefined;
}

function parseScrypt(encoded: string): { params: ScryptParams; salt: Buffer; key: Buffer } | undefined {
  const match = SCRYPT_RE.exec(encoded);
  if (match === null) return undefined;
  const params: ScryptParams = { logN: Number(match[1]), r: Number(match[2]), p: Number(match[3]) };
  if (!scryptParamsAcceptable(params)) return undefined;
  const salt = strictBase64(match[4]!, false);
  const key = strictBase64(match[5]!, false);
  if (salt === undefined || key === undefined) return undefined;
  // A key shorter than ours is refused, not accepted as weaker: scrypt's
  // output for a shorter length is a prefix of the longer one, so a stored
  // hash cut short (a truncated column, a damaged copy) would otherwise
  // still verify, with fewer bits to guess.
  if (salt.length < 8 || salt.length > 64 || key.length < KEY_BYTES || key.length > 64) return undefined;
  return { params, salt, key };
}

function parseDjangoPbkdf2(
  encoded: string,
): { digest: "sha256" | "sha1"; iterations: number; salt: Buffer; key: Buffer } | undefined {
  // Django's `!…` unusable passwords and '' fall through here: no match, not ok.
  const match = DJANGO_PBKDF2_RE.exec(encoded);
  if (match === null) return undefined;
  const digest = match[1] === "sha1" ? "sha1" : "sha256";
  const iterations = Number(match[2]);
  if (iterations > MAX_PBKDF2_ITERATIONS) return undefined;
  const saltText = match[3]!;
  if (saltText.length > MAX_DJANGO_SALT_LENGTH) return undefined;
  const key = strictBase64(match[4]!, true);
  // Django uses the digest size as dklen: 32 bytes for SHA-256, 20 for SHA-1.
  if (key === undefined || key.length !== (digest === "sha256" ? 32 : 20)) return undefined;
  // Django hands the salt to PBKDF2 as its UTF-8 bytes, not decoded.
  return { digest, iterations, salt: Buffer.from(saltText, "utf8"), key };
}

/** One call waiting for a derivation slot. */
interface Waiter {
  readonly start: () => void;
  readonly refuse: (error: PasswordBusyError) => void;
}

/**
 * A counting semaphore whose bounded wait queue is shared fairly between
 * keys (the client address, for logins): freed slots go round-robin across
 * the keys that have calls waiting, and when the queue is full, a newcomer
 * whose key has fewer calls waiting displaces the newest call of the key
 * with the most. One key alone may still fill an idle queue (no capacity is
 * held back), but it cannot keep another key out of it.
 */
class FairLimiter {
  private active = 0;
  private waitingCount = 0;
  /** Waiting calls per key; the Map's order is the round-robin order. */
  private readonly queues = new Map<string, Waiter[]>();

  constructor(
    private readonly maxActive: number,
    private readonly maxWaiting: number,
  ) {}

  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    if (this.active >= this.maxActive) {
      // The releasing call hands its slot over directly, so `active` stays counted.
      await this.wait(key);
    } else {
      this.active++;
    }
    try {
      return await task();
    } finally {
      this.release();
    }
  }

  private wait(key: string): Promise<void> {
    const own = this.queues.get(key);
    if (this.waitingCount >= this.maxWaiting && !this.displaceFor(own?.length ?? 0)) {
      return Promise.reject(new PasswordBusyError());
    }
    return new Promise<void>((start, refuse) => {
      const waiter: Waiter = { start, refuse };
      // Looked up again: displacing may have emptied and removed a queue.
      const queue = this.queues.get(key);
      if (queue === undefined) this.queues.set(key, [waiter]);
      else queue.push(waiter);
      this.waitingCount++;
    });
  }

  /**
   * Refuses the newest waiting call of the longest queue if that queue is at
   * least two calls longer than the newcomer's would be, so the swap
   * narrows the gap instead of moving it. Returns whether a place was freed.
   */
  private displaceFor(ownLength: number): boolean {
    let longest: Waiter[] | undefined;
    let longestKey = "";
    for (const [key, queue] of this.queues) {
      if (longest === undefined || queue.length > longest.length) {
        longest = queue;
        longestKey = key;
      }
    }
    if (longest === undefined || longest.length < ownLength + 2) return false;
    const victim = longest.pop()!;
    if (longest.length === 0) this.queues.delete(longestKey);
    this.waitingCount--;
    victim.refuse(new PasswordBusyError());
    return true;
  }

  private release(): void {
    const next = this.queues.entries().next();
    if (next.done === true) {
      this.active--;
      return;
    }
    const [key, queue] = next.value;
    const waiter = queue.shift()!;
    // Served keys go to the back of the round, so each key gets a turn in order.
    this.queues.delete(key);
    if (queue.length > 0) this.queues.set(key, queue);
    this.waitingCount--;
    waiter.start();
  }
}
