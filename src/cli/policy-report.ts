/** The effective rules of a set of services, as `protoguard policy` reports them in every format. */

/**
 * Where a method's rule comes from: its own option, its service's option,
 * the server default, the server itself (health and reflection, served
 * without the auth layer), or nowhere because the rule is malformed.
 */
export type PolicySource = "method" | "service" | "default" | "server" | "invalid";

/** One method of a {@link PolicyReport}. */
export interface PolicyRow {
  /** `/package.Service/Method`, as in request paths and logs. */
  readonly method: string;
  readonly service: string;
  /** unary, server_streaming, client_streaming or bidi_streaming. */
  readonly kind: string;
  /** The rule as a .proto option would read (`describeRule`), or "invalid". */
  readonly rule: string;
  readonly source: PolicySource;
  /** For an invalid rule: what is wrong with it. */
  readonly problems?: readonly string[];
  /** The rule's CEL condition and the message a refused caller sees (also in `rule`). */
  readonly condition?: { readonly expression: string; readonly message?: string };
  /** The shadow rule, described, and where it is declared: evaluated and reported, never enforced. */
  readonly shadow?: { readonly rule: string; readonly source: "method" | "service" };
  /** Whether a resource loader is registered for the method; known only for an application (`--routes`). */
  readonly resourceLoader?: boolean;
  /**
   * `false` when the rule refuses API keys (`api_keys: false`); absent when a key
   * (`Bearer pgk_…`) may be presented, limited to its scopes (or, for "server" and "invalid"
   * rows, when there is no rule to say).
   */
  readonly apiKeys?: false;
}

/** The effective rules of a set of services. */
export interface PolicyReport {
  /** The server default, described. */
  readonly defaultRule: string;
  readonly rows: readonly PolicyRow[];
  /** Whether the application sets an `authorize` fallback; known only for an application (`--routes`). */
  readonly authorizeFallback?: boolean;
}
