/** The token pair a client session holds. */
export interface SessionTokens {
  readonly accessToken: string;
  readonly refreshToken: string;
}

/**
 * Where a session keeps its tokens between calls (and, for a browser
 * storage, between page loads). Methods may be synchronous or return
 * promises; they must not throw for a missing entry.
 */
export interface SessionStorage {
  /** The stored pair, or `undefined` when there is none (or it is unreadable). */
  load(): SessionTokens | undefined | Promise<SessionTokens | undefined>;
  save(tokens: SessionTokens): void | Promise<void>;
  clear(): void | Promise<void>;
}

/**
 * Tokens in this object only: gone with the process or the page. The
 * default, and the safest place for a bearer token in a browser.
 */
export function memoryStorage(): SessionStorage {
  let held: SessionTokens | undefined;
  return {
    load: () => held,
    save: (tokens) => void (held = tokens),
    clear: () => void (held = undefined),
  };
}

/** The part of the Web Storage API {@link webStorage} uses (`localStorage`, `sessionStorage`). */
export interface WebStorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/**
 * Tokens in a Web Storage area, so a session survives a reload. Prefer
 * `sessionStorage` (one tab) to `localStorage`: anything stored there is
 * readable by every script that runs on the origin.
 *
 * @param storage for example `window.sessionStorage`.
 * @param key the entry's name. Default: `"protoguard.session"`.
 */
export function webStorage(storage: WebStorageLike, key = "protoguard.session"): SessionStorage {
  return {
    load() {
      const raw = storage.getItem(key);
      if (raw === null) return undefined;
      try {
        const parsed = JSON.parse(raw) as Partial<SessionTokens>;
        if (typeof parsed.accessToken === "string" && typeof parsed.refreshToken === "string") {
          return { accessToken: parsed.accessToken, refreshToken: parsed.refreshToken };
        }
      } catch {
        // A corrupt entry is no session.
      }
      return undefined;
    },
    save: (tokens) =>
      storage.setItem(key, JSON.stringify({ accessToken: tokens.accessToken, refreshToken: tokens.refreshToken })),
    clear: () => storage.removeItem(key),
  };
}
