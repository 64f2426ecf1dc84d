/**
 * `protoguard policy`: every method the server serves, with the rule in
 * force and where that rule comes from, read from the same descriptors the
 * server enforces. `--check` fails when a method has no rule of its own or
 * of its service, so CI notices an RPC that silently falls back to the
 * server default.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { createAuthPolicy, PolicyError, type AuthPolicy } from "../policy/policy.js";
import { describeRule } from "../policy/rule.js";
import { methodKey } from "../decide/app-callbacks.js";
import { SERVER_SERVICES } from "../server/services/server-services.js";
import { parseArgs } from "./args.js";
import { PROGRAM, type CliIo, type Command } from "./io.js";
import { EXIT_FAILURE, EXIT_OK, UsageError } from "./errors.js";
import { readImageServices } from "./image.js";
import { policyOpenApi } from "./openapi.js";
import type { PolicyReport, PolicyRow } from "./policy-report.js";
import { resolveApp, servedServices } from "./serve.js";

/** Output formats of {@link formatPolicy}. */
export type PolicyFormat = "table" | "markdown" | "json";

const FORMATS: readonly PolicyFormat[] = ["table", "markdown", "json"];

/** Options of {@link policyReport}. */
export interface PolicyReportOptions {
  /** Services the server adds and serves to anyone, without rules. Default: none. */
  publicByServer?: readonly DescService[];
  /**
   * What the application registers in code: the methods with a resource
   * loader (`package.Service/Method`) and whether it sets an `authorize`
   * fallback. Default: unknown (a Buf image carries no code), so the report
   * says nothing about either.
   */
  code?: { readonly resourceLoaders: ReadonlySet<string>; readonly authorize: boolean };
}

/**
 * The rule in force for every method of `services` (then of
 * `options.publicByServer`), in declaration order. A malformed rule does
 * not stop the report: its rows say "invalid" with the problems.
 */
export function policyReport(
  services: readonly DescService[],
  policy: AuthPolicy,
  options: PolicyReportOptions = {},
): PolicyReport {
  const rows: PolicyRow[] = [];
  const where = (method: DescMethod) => ({
    method: `/${method.parent.typeName}/${method.name}`,
    service: method.parent.typeName,
    kind: method.methodKind,
  });
  for (const method of services.flatMap((s) => s.methods)) {
    try {
      const plan = policy.planFor(method);
      const hasLoader = options.code?.resourceLoaders.has(methodKey(method));
      const readsResource = [plan.condition, plan.shadow?.condition].find((c) => c?.readsResource);
      if (hasLoader === false && readsResource !== undefined) {
        // The server would refuse to start: say so here rather than at deploy time.
        const problem = `condition "${readsResource.expression}" reads resource, but the application registers no resource loader for ${methodKey(method)}`;
        rows.push({ ...where(method), rule: "invalid", source: "invalid", problems: [problem] });
        continue;
      }
      const { condition, conditionMessage } = plan.rule;
      rows.push({
        ...where(method),
        rule: describeRule(plan.rule),
        source: plan.source,
        ...(condition !== undefined && {
          condition: { expression: condition, ...(conditionMessage !== undefined && { message: conditionMessage }) },
        }),
        ...(plan.shadow !== undefined && {
          shadow: { rule: describeRule(plan.shadow.rule), source: plan.shadow.source },
        }),
        ...(hasLoader !== undefined && { resourceLoader: hasLoader }),
        ...(plan.rule.apiKeys === false && { apiKeys: false }),
      });
    } catch (error) {
      if (!(error instanceof PolicyError)) throw error;
      rows.push({ ...where(method), rule: "invalid", source: "invalid", problems: error.problems });
    }
  }
  for (const method of (options.publicByServer ?? []).flatMap((s) => s.methods)) {
    rows.push({ ...where(method), rule: "public", source: "server" });
  }
  return {
    defaultRule: describeRule(policy.defaultRule),
    rows,
    ...(options.code !== undefined && { authorizeFallback: options.code.authorize }),
  };
}

/** Renders a report as lines of text: an aligned table, a Markdown table, or JSON. */
export function formatPolicy(report: PolicyReport, format: PolicyFormat): string[] {
  if (format === "json") return JSON.stringify(report, null, 2).split("\n");
  // Columns for shadow rules and loaders only when there is something to say,
  // so a policy without them reads as before.
  const withShadow = report.rows.some((r) => r.shadow !== undefined);
  const withLoader = report.authorizeFallback !== undefined;
  const header = [
    "method",
    "kind",
    "rule",
    ...(withShadow ? ["shadow"] : []),
    ...(withLoader ? ["loader"] : []),
    "source",
  ];
  const cells = report.rows.map((r) => [
    r.method,
    r.kind,
    r.problems ? `invalid: ${r.problems.join("; ")}` : r.rule,
    ...(withShadow ? [r.shadow ? `${r.shadow.rule} (${r.shadow.source})` : "-"] : []),
    ...(withLoader ? [r.resourceLoader ? "yes" : "-"] : []),
    r.source,
  ]);
  const notes = [
    `default rule (methods whose source is "default"): ${report.defaultRule}`,
    'source "server": added by the server (health, reflection) and served without the auth layer',
    // Which methods accept API keys: every one whose rule does not say so (the rule column does).
    report.rows.some((r) => r.apiKeys === false)
      ? `API keys (Bearer pgk_...): refused where the rule says api_keys: false (${report.rows.filter((r) => r.apiKeys === false).length} methods), accepted by every other method within their scopes`
      : "API keys (Bearer pgk_...): accepted by every method, within their scopes (no rule says api_keys: false)",
    ...(withShadow ? ["shadow: a rule being rolled out, evaluated and reported as would_deny, never enforced"] : []),
    ...(report.rows.some((r) => r.condition?.message !== undefined)
      ? report.rows
          .filter((r) => r.condition?.message !== undefined)
          .map((r) => `condition message of ${r.method}: "${r.condition?.message}"`)
      : []),
    ...(withLoader
      ? [
          `loader: "yes" when the application registers a resource loader for the method`,
          `authorize fallback: ${report.authorizeFallback ? "set, called for every call the rules admit" : "not set"}`,
        ]
      : []),
  ];
  if (format === "markdown") {
    const line = (values: string[]) => `| ${values.map((v) => v.replaceAll("|", "\\|")).join(" | ")} |`;
    return [
      line(header),
      line(header.map(() => "---")),
      ...cells.map(([method, ...rest]) => line([`\`${method}\``, ...rest] as string[])),
      "",
      ...notes.map((n) => `${n}.`),
    ];
  }
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header.map((h) => h.toUpperCase())), ...cells.map((c) => line(c as string[])), "", ...notes];
}

/** The flags of `policy`. */
const POLICY_FLAGS = {
  check: "boolean",
  format: "string",
  image: "string",
  "include-protoguard": "boolean",
  routes: "string",
} as const;

const USAGE = [
  `usage: ${PROGRAM} policy [--image FILE [--include-protoguard] | --routes MODULE] [--check] [--format table|markdown|json|openapi]`,
  "  Lists every method with its rule (with its CEL condition) and where the rule comes",
  "  from (method option, service option, server default, or the server itself), its",
  "  shadow rule if any, and, for an application, which methods have a resource loader",
  "  and whether an authorize fallback is set.",
  "  --image    a Buf image or FileDescriptorSet (npx buf build -o FILE; - for stdin):",
  "             reports every service of its own files, except protoguard's own (protoguard.v1,",
  "             there when the module includes protoguard's protos; --include-protoguard keeps them)",
  "  --routes   a module exporting a ServeApp: reports what serve --routes would serve",
  "  --check    exit 1 if a method relies on the server default or has a malformed rule",
  "  --format   table (default), markdown, json, or openapi (an OpenAPI 3.1 document)",
];

/**
 * `policy` over an explicit set of services, for tests and for applications
 * that serve their own: prints the report to `io.out`; with `--check`,
 * names each method relying on the server default on `io.err` and returns 1.
 * A malformed rule always returns 1: the server would refuse to start.
 *
 * @throws {UsageError} for unknown flags, arguments or formats.
 */
export async function runPolicy(
  services: readonly DescService[],
  args: string[],
  io: CliIo,
  options: PolicyReportOptions = {},
): Promise<number> {
  const parsed = parseArgs(args, POLICY_FLAGS);
  if (parsed.help) {
    for (const line of USAGE) io.out(line);
    return EXIT_OK;
  }
  if (parsed.positionals.length > 0) {
    throw usage(`unexpected argument ${JSON.stringify(parsed.positionals[0])}`);
  }
  const format = parsed.flags.format ?? "table";
  if (format !== "openapi" && !isFormat(format)) {
    throw usage(`--format must be one of ${[...FORMATS, "openapi"].join(", ")}, got "${format}"`);
  }

  const report = policyReport(services, createAuthPolicy(), options);
  const lines =
    format === "openapi"
      ? JSON.stringify(policyOpenApi(services, report), null, 2).split("\n")
      : formatPolicy(report, format);
  for (const line of lines) io.out(line);

  let exitCode = EXIT_OK;
  for (const row of report.rows.filter((r) => r.source === "invalid")) {
    io.err(`${PROGRAM}: ${row.method} has a malformed rule: ${row.problems?.join("; ")}`);
    exitCode = EXIT_FAILURE;
  }
  if (parsed.flags.check === true) {
    const relying = report.rows.filter((r) => r.source === "default");
    for (const row of relying) {
      io.err(
        `${PROGRAM}: ${row.method} has no rule of its own or of its service (server default: ${report.defaultRule})`,
      );
    }
    if (relying.length > 0) {
      io.err(`${PROGRAM}: policy check failed: ${relying.length} method(s) rely on the server default`);
      exitCode = EXIT_FAILURE;
    }
  }
  return exitCode;
}

/**
 * `protoguard policy`: with `--image FILE`, over every service of a Buf image
 * (what a team's CI checks); otherwise over what `protoguard serve` would
 * register: the `--routes` application (or the CLI's default one),
 * AuthService, health and reflection. Reads no environment: rules come from
 * descriptors only.
 */
export const policyCommand: Command = async (args, _env, io, options) => {
  const parsed = parseArgs(args, POLICY_FLAGS);
  if (parsed.help) return runPolicy([], args, io);
  const { image, routes } = parsed.flags;
  if (image !== undefined && routes !== undefined) throw usage("--image and --routes cannot be combined");
  if (image !== undefined) {
    const all = await readImageServices(image);
    // protoguard's own services come with its protos (buf.yaml's module of the installed
    // package), not with the app: the app serves AuthService only if it registers it.
    const services = parsed.flags["include-protoguard"] === true ? all : all.filter((s) => !isProtoguardService(s));
    const left = all.filter((s) => !services.includes(s));
    if (left.length > 0) {
      io.err(
        `${PROGRAM}: left out protoguard's own ${left.map((s) => s.typeName).join(", ")} (--include-protoguard reports them)`,
      );
    }
    if (services.length === 0) io.err(`${PROGRAM}: warning: --image ${image} declares no services`);
    return runPolicy(services, args, io);
  }
  const app = await resolveApp(routes, options?.defaultApp);
  return runPolicy(servedServices(app), args, io, {
    publicByServer: SERVER_SERVICES,
    ...(app !== undefined && {
      code: { resourceLoaders: new Set(Object.keys(app.resources ?? {})), authorize: app.authorize !== undefined },
    }),
  });
};

/** A service of protoguard's own proto package (protoguard.v1.AuthService and the like). */
function isProtoguardService(service: DescService): boolean {
  return service.file.proto.package.startsWith("protoguard.");
}

function isFormat(value: string): value is PolicyFormat {
  return (FORMATS as readonly string[]).includes(value);
}

function usage(message: string): UsageError {
  const error = new UsageError(message);
  error.command = "policy";
  return error;
}
