/**
 * `protoc-gen-protoguard`: for every service of a generated file that
 * carries a protoguard rule, writes `<file>_protoguard.ts` next to
 * protoc-gen-es's `<file>_pb.ts` with
 *
 * - `GuardedXxxImpl` and `implementGuardedXxx(impl)`: the service's
 *   implementation with the caller as a third argument, non-optional where
 *   the rule requires one (see `guardImplementation`);
 * - `XxxConformance`: the cases each method's rule demands, for
 *   `runConformance` of `protoguard/testing`.
 *
 * Options (besides protoplugin's `target`, `import_extension`, …):
 * - `protoguard_import=SPEC`: where protoguard is imported from. Default
 *   `protoguard` (the package). A
 *   path starting with `.` is a directory relative to the output root that
 *   holds protoguard's sources (its entry point `exports/protoguard.js`), for a
 *   repository that generates against its own copy.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createEcmaScriptPlugin, type GeneratedFile, type Schema } from "@bufbuild/protoplugin";
import type { DescFile, DescService } from "@bufbuild/protobuf";
import type { ConformanceMethod } from "../policy/conformance-table.js";
import { conformanceMethod, describe, isAnnotated, readRule, type GeneratedRule } from "./rules.js";

/** Options of the plugin, parsed from `opt:` in buf.gen.yaml. */
export interface ProtoguardPluginOptions {
  /** Module protoguard is imported from. Default: `protoguard`. */
  protoguardImport: string;
}

/** The version written into generated files' headers: the installed protoguard's. */
const PLUGIN_VERSION = `v${packageVersion()}`;

/** The plugin, for `runNodeJs` (the executable) and for tests that run it in process. */
export const protocGenProtoguard = createEcmaScriptPlugin({
  name: "protoc-gen-protoguard",
  version: PLUGIN_VERSION,
  parseOptions,
  generateTs,
});

/**
 * protoguard's version from its package.json, found by walking up from this
 * module: two levels from src/plugin in a checkout, three from
 * dist/src/plugin in the package.
 */
function packageVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dirname(dir) !== dir; dir = dirname(dir)) {
    const file = join(dir, "package.json");
    if (!existsSync(file)) continue;
    const manifest = JSON.parse(readFileSync(file, "utf8")) as { name?: unknown; version?: unknown };
    if (manifest.name === "protoguard" && typeof manifest.version === "string") return manifest.version;
  }
  throw new Error("protoc-gen-protoguard: cannot find protoguard's package.json");
}

function parseOptions(raw: { key: string; value: string }[]): ProtoguardPluginOptions {
  const options: ProtoguardPluginOptions = { protoguardImport: "protoguard" };
  for (const { key, value } of raw) {
    if (key !== "protoguard_import") throw new Error(`unknown option "${key}"`);
    if (value === "") throw new Error("protoguard_import needs a value, e.g. protoguard_import=protoguard");
    options.protoguardImport = value.replace(/\/$/, "");
  }
  return options;
}

function generateTs(schema: Schema<ProtoguardPluginOptions>): void {
  const spec = schema.options.protoguardImport;
  const relative = spec.startsWith(".");
  const modules = {
    main: relative ? `${spec}/exports/protoguard.js` : spec,
  };
  for (const file of schema.files) {
    const services = file.services.filter(isAnnotated);
    if (services.length === 0) continue;
    const f = schema.generateFile(`${file.name}_protoguard.ts`);
    f.preamble(file);
    services.forEach((service, i) => {
      if (i > 0) f.print();
      generateService(f, file, service, modules);
    });
  }
}

function generateService(f: GeneratedFile, file: DescFile, service: DescService, modules: { main: string }): void {
  const rules = service.methods.map((method) => ({ method, rule: readRule(method) }));
  const required = rules.filter((r) => r.rule.principalRequired).map((r) => r.method.localName);
  const Service = f.importSchema(service);
  const ServiceImpl = f.import("ServiceImpl", "@connectrpc/connect", true);
  const GuardedServiceImpl = f.import("GuardedServiceImpl", modules.main, true);
  const guardImplementation = f.import("guardImplementation", modules.main);
  // From the main entry point, which loads no database driver: the generated file must
  // type-check without skipLibCheck, and protoguard/testing's types reach drizzle and PGlite.
  const ConformanceTable = f.import("ConformanceTable", modules.main, true);
  const implType = `Guarded${service.name}Impl`;
  const quoted = required.map((m) => JSON.stringify(m));
  // One name a line once the list gets long, as a formatter would.
  const long = quoted.join(", ").length > 60;
  const requiredUnion = quoted.length === 0 ? "never" : long ? `\n  | ${quoted.join("\n  | ")}\n` : quoted.join(" | ");
  const requiredArray = long ? `[\n    ${quoted.join(",\n    ")},\n  ]` : `[${quoted.join(", ")}]`;

  const methodDocs = rules.map(
    ({ method, rule }) =>
      ` * - \`${method.localName}\`: ${rule.principalRequired ? "`Principal`" : "`Principal | undefined`"} (${describeForDoc(rule)})`,
  );
  f.print("/**");
  f.print(` * The implementation of ${service.typeName} (${file.proto.name}), each method given its caller`);
  f.print(" * as a third argument, as its protoguard rule allows:");
  for (const line of methodDocs) f.print(line);
  f.print(" */");
  f.print(
    f.export("type", implType),
    " = ",
    GuardedServiceImpl,
    "<typeof ",
    Service,
    long ? "," : ", ",
    requiredUnion,
    ">;",
  );
  f.print();
  f.print("/**");
  f.print(` * The \`ServiceImpl\` of ${service.typeName} for \`router.service(${service.name}, …)\`: each`);
  f.print(" * method receives the caller the auth layer identified; a method whose rule");
  f.print(" * requires one is never run without it (UNAUTHENTICATED instead).");
  f.print(" */");
  f.print(
    f.export("function", `implementGuarded${service.name}`),
    "(impl: ",
    implType,
    "): ",
    ServiceImpl,
    "<typeof ",
    Service,
    "> {",
  );
  f.print("  return ", guardImplementation, "(", Service, ", impl, ", requiredArray, ");");
  f.print("}");
  f.print();
  f.print("/**");
  f.print(` * What the rules of ${service.typeName} demand, case by case; run it against the real`);
  f.print(" * implementation with `runConformance(t, table, { routes })` from `protoguard/testing`.");
  f.print(" */");
  f.print(f.export("const", `${service.name}Conformance`), ": ", ConformanceTable, "<typeof ", Service, "> = {");
  f.print("  service: ", Service, ",");
  f.print("  methods: [");
  for (const { method, rule } of rules) f.print("    ", literal(conformanceMethod(method, rule), "    "), ",");
  f.print("  ],");
  f.print("};");
}

function describeForDoc(rule: GeneratedRule): string {
  return rule.source === "default" ? `${describe(rule)}, the server default` : describe(rule);
}

/** A TypeScript object literal, formatted like the rest of the generated code. */
function literal(
  value: ConformanceMethod | object | string | boolean | number | readonly unknown[],
  indent: string,
): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "boolean" || typeof value === "number") return String(value);
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    const items = value.map((v) => literal(v as object, inner));
    const flat = `[${items.join(", ")}]`;
    return flat.length <= 80 && !flat.includes("\n")
      ? flat
      : `[\n${items.map((i) => `${inner}${i},`).join("\n")}\n${indent}]`;
  }
  const entries = Object.entries(value).filter(([, v]) => v !== undefined);
  const parts = entries.map(([k, v]) => `${k}: ${literal(v as object, inner)}`);
  const flat = `{ ${parts.join(", ")} }`;
  return flat.length <= 100 && !flat.includes("\n")
    ? flat
    : `{\n${parts.map((p) => `${inner}${p},`).join("\n")}\n${indent}}`;
}
