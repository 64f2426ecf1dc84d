/**
 * `protoguard init`: makes `import "protoguard/v1/options.proto"` resolve in
 * a project's own Buf workspace, and makes the code protoc-gen-es generates
 * from it import protoguard's option descriptors from the installed package.
 *
 * Why imports are rewritten to the package rather than generating a local
 * copy: `createAuth` reads rules with protoguard's own `method_rule` and
 * `service_rule` extensions; one copy of those descriptors (the package's)
 * means one registry, one version, and nothing generated that the user must
 * keep in sync with protoguard upgrades.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve, sep } from "node:path";
import { defineSubcommand } from "./args.js";
import { CliError, EXIT_OK } from "./errors.js";

/** protoc-gen-es option that points generated imports of protoguard's files at the package. */
const REWRITE_IMPORTS_OPTION = "rewrite_imports=./protoguard/**/*_pb.js:protoguard/gen";

/** What {@link initProject} did, for the report and for tests. */
export interface InitResult {
  /** Files written (absent before). */
  readonly written: readonly string[];
  /** Existing files left untouched, with the lines the user should add. */
  readonly advice: readonly { file: string; lines: readonly string[] }[];
  /** npm packages the project still needs to run `buf lint` / `buf generate`. */
  readonly missingTools: readonly string[];
  /**
   * Buf configuration found that the written files take over, with what to do about it: e.g.
   * a v1 `proto/buf.yaml`, which buf no longer reads once a v2 `buf.yaml` at the root lists
   * `proto` as a module.
   */
  readonly found: readonly { file: string; note: string }[];
}

/** Options of {@link initProject}. */
export interface InitOptions {
  /** The project root (where package.json is). Default: the working directory. */
  readonly dir?: string;
  /** The project's Buf module directory. Default: `proto`. */
  readonly protoDir?: string;
  /** Where protoc-gen-es writes. Default: `src/gen` (protobuf-es's convention). */
  readonly outDir?: string;
}

/**
 * Writes `buf.yaml` and `buf.gen.yaml` when absent; when present, leaves
 * them untouched and returns the exact lines to add. Creates the proto
 * directory if needed. Idempotent.
 *
 * @throws {CliError} when protoguard is not installed where the project can resolve it.
 */
export async function initProject(options: InitOptions = {}): Promise<InitResult> {
  const root = resolve(options.dir ?? process.cwd());
  const protoDir = options.protoDir ?? "proto";
  const outDir = options.outDir ?? "src/gen";
  const protoguardProto = posix(relative(root, join(packageRoot(root, "protoguard"), "proto")));

  const written: string[] = [];
  const advice: { file: string; lines: string[] }[] = [];
  const found: { file: string; note: string }[] = [];
  // A module's own buf.yaml (buf v1's layout), found before anything is written.
  const moduleConfig = posix(join(protoDir, "buf.yaml"));
  const moduleConfigText = existsSync(join(root, moduleConfig))
    ? await readFile(join(root, moduleConfig), "utf8")
    : undefined;
  await mkdir(join(root, protoDir), { recursive: true });

  const bufYaml = join(root, "buf.yaml");
  const moduleLines = [
    `  - path: ${protoDir}`,
    `  # protoguard.v1 options, from the installed package`,
    `  - path: ${protoguardProto}`,
  ];
  if (!existsSync(bufYaml)) {
    await writeFile(
      bufYaml,
      [
        "version: v2",
        "modules:",
        ...moduleLines,
        "lint:",
        "  use:",
        "    - STANDARD",
        "breaking:",
        "  use:",
        "    - FILE",
        "",
      ].join("\n"),
    );
    written.push("buf.yaml");
    if (moduleConfigText !== undefined) {
      const version = /^version:\s*(\S+)/m.exec(moduleConfigText)?.[1] ?? "unversioned";
      found.push({
        file: moduleConfig,
        note: `a buf ${version} module config; buf now reads the root buf.yaml (v2, modules ${protoDir} and protoguard's protos) instead: move its deps, lint and breaking settings there, then delete ${moduleConfig}`,
      });
    }
  } else if (!(await readFile(bufYaml, "utf8")).includes(protoguardProto)) {
    advice.push({ file: "buf.yaml", lines: ["# under modules:", `  - path: ${protoguardProto}`] });
  }

  const bufGenYaml = join(root, "buf.gen.yaml");
  if (!existsSync(bufGenYaml)) {
    await writeFile(
      bufGenYaml,
      [
        "version: v2",
        "# Generate only this project's module; protoguard's files are imported from the package.",
        "inputs:",
        `  - directory: ${protoDir}`,
        "plugins:",
        "  - local: protoc-gen-es",
        `    out: ${outDir}`,
        "    opt:",
        "      - target=ts",
        "      - import_extension=js",
        `      - ${REWRITE_IMPORTS_OPTION}`,
        "  # Typed guarded implementations and conformance tables (*_protoguard.ts).",
        "  - local: protoc-gen-protoguard",
        `    out: ${outDir}`,
        "    opt:",
        "      - target=ts",
        "      - import_extension=js",
        "clean: true",
        "",
      ].join("\n"),
    );
    written.push("buf.gen.yaml");
  } else {
    const existing = await readFile(bufGenYaml, "utf8");
    // One block for the file, whatever it lacks.
    const lines: string[] = [];
    if (!existing.includes("protoguard/gen")) lines.push(...rewriteAdvice(protoDir));
    if (!existing.includes("protoc-gen-protoguard")) {
      lines.push(
        "# under plugins:",
        "  - local: protoc-gen-protoguard",
        `    out: ${outDir}`,
        "    opt:",
        "      - target=ts",
        "      - import_extension=js",
      );
    }
    if (lines.length > 0) advice.push({ file: "buf.gen.yaml", lines });
  }

  const missingTools = ["@bufbuild/buf", "@bufbuild/protoc-gen-es"].filter((name) => !installed(root, name));
  return { written, advice, missingTools, found };
}

function rewriteAdvice(protoDir: string): string[] {
  return [
    "# under the protoc-gen-es plugin's opt:",
    `      - ${REWRITE_IMPORTS_OPTION}`,
    "# and, if protoguard's module is in the workspace, generate only yours:",
    "inputs:",
    `  - directory: ${protoDir}`,
  ];
}

export const initSubcommand = defineSubcommand({
  usage: "init [--proto DIR] [--out DIR]",
  summary: "set up buf.yaml and buf.gen.yaml so your .proto files can import protoguard/v1/options.proto",
  flags: { proto: "string", out: "string" },
  positionals: { min: 0, max: 0, names: "no arguments" },
  async run({ flags }, _env, io) {
    const result = await initProject({
      protoDir: flags.proto,
      outDir: flags.out,
    });
    // One block: what was found, then what was written, then what is left to add.
    for (const { file, note } of result.found) io.out(`found ${file}: ${note}`);
    for (const file of result.written) io.out(`wrote ${file}`);
    for (const { file, lines } of result.advice) {
      io.out(`${file} exists and was left as it is; add:`);
      for (const line of lines) io.out(`    ${line}`);
    }
    if (result.written.length === 0 && result.advice.length === 0)
      io.out("buf.yaml and buf.gen.yaml are set up already");
    if (result.missingTools.length > 0) {
      const protobuf = await installedVersion(process.cwd(), "@bufbuild/protobuf");
      const tools = result.missingTools.map((name) =>
        name === "@bufbuild/protoc-gen-es" && protobuf !== undefined ? `${name}@${protobuf}` : name,
      );
      io.out(`then install the code generator: npm i -D ${tools.join(" ")}`);
    }
    io.out(`next: annotate your services with (protoguard.v1.method_rule), then run npx buf lint && npx buf generate`);
    return EXIT_OK;
  },
});

/**
 * The directory of package `name` as Node would find it from `root`: the
 * nearest `node_modules/<name>` up the tree. Read from the file system, not
 * through `exports`, which need not list `package.json`.
 */
function findPackage(root: string, name: string): string | undefined {
  for (let dir = root; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

function packageRoot(root: string, name: string): string {
  const found = findPackage(root, name);
  if (found === undefined) throw new CliError(`${name} is not installed in ${root}: run npm i ${name} first`);
  return found;
}

function installed(root: string, name: string): boolean {
  return findPackage(root, name) !== undefined;
}

async function installedVersion(root: string, name: string): Promise<string | undefined> {
  const dir = findPackage(root, name);
  if (dir === undefined) return undefined;
  const { version } = JSON.parse(await readFile(join(dir, "package.json"), "utf8")) as { version?: unknown };
  return typeof version === "string" ? version : undefined;
}

function posix(path: string): string {
  return path.split(sep).join("/");
}
