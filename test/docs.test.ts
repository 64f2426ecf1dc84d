// Every code block of README.md and docs/*.md (not docs/_incoming/) is checked against the
// package as a user installs it:
// - each ```ts block is its own module in one app that has the packed tarball installed, and
//   all of them are type-checked in one tsc run under the settings the README recommends
//   (strict, NodeNext, exactOptionalPropertyTypes, noUncheckedIndexedAccess); a block marked
//   `<!-- fragment: reason -->` is skipped, and only a handful may be;
// - blocks import the example services' generated code as `./gen/example/v1/*.js`, generated in
//   the app by the installed `protoguard init` + `buf generate` from proto/example/v1 and from
//   any ```proto block marked `<!-- file: proto/… -->`; a ```ts block marked
//   `<!-- file: src/NAME.ts -->` is written there, so other blocks can import `./NAME.js`;
// - each `protoguard …` line of a ```sh block names a command and flags of the installed CLI's
//   own usage lines (`protoguard --help` and `protoguard <command> --help`).
// Failures name the markdown file and line, with tsc's diagnostics mapped back to it.
// CONTRIBUTING.md ("Documentation") describes the conventions.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  SH_LANGS,
  TS_LANGS,
  checkCommand,
  extractBlocks,
  formatProblems,
  headingAnchors,
  protoguardCommands,
  relativeLinks,
  usageTable,
  type DocBlock,
  type DocProblem,
  type UsageEntry,
} from "./helpers/doc-blocks.js";
import { installedSpec, packPackage } from "./helpers/package.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** At most this many blocks may be fragments. */
const MAX_FRAGMENTS = 6;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: readonly string[], cwd: string): Promise<Ran> {
  const { NODE_TEST_CONTEXT: _context, DATABASE_URL: _database, ...env } = process.env;
  return new Promise((done) => {
    execFile(command, args, { cwd, env, maxBuffer: 64 * 1024 * 1024, timeout: 600_000 }, (error, stdout, stderr) => {
      done({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr });
    });
  });
}

async function ok(command: string, args: readonly string[], cwd: string): Promise<string> {
  const ran = await run(command, args, cwd);
  assert.equal(ran.code, 0, `${command} ${args.join(" ")} failed:\n${ran.stdout}\n${ran.stderr}`);
  return ran.stdout;
}

/** README.md and docs/*.md, repository-relative. */
async function docFiles(): Promise<string[]> {
  const pages = (await readdir(join(REPO, "docs"))).filter((f) => f.endsWith(".md")).sort();
  return ["README.md", ...pages.map((p) => `docs/${p}`)];
}

/** A module file name for a block: where it came from, readable in tsc's output. */
function moduleName(block: DocBlock): string {
  return `src/${block.file.replace(/[^A-Za-z0-9]+/g, "_")}_L${block.line}.ts`;
}

const TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    lib: ["ES2023", "DOM"],
    types: ["node"],
    strict: true,
    exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true,
    verbatimModuleSyntax: true,
    skipLibCheck: true,
    noEmit: true,
  },
  include: ["src"],
};

/** The synthetic page of the self-test: what the checker must refuse, and what it must accept. */
const SELF_TEST_PAGE = [
  "# self-test", // 1
  "", // 2
  "```ts", // 3
  'import { createAuth } from "protoguard";', // 4
  "const n: number = createAuth;", // 5: TS2322
  "console.log(n);", // 6
  "```", // 7
  "", // 8
  "```ts", // 9
  'import { methodKey } from "protoguard";', // 10
  'import { OrderService } from "./gen/example/v1/order_pb.js";', // 11
  "console.log(methodKey(OrderService.method.updateOrder));", // 12
  "```", // 13
  "", // 14
  "```sh", // 15
  "npx protoguard user create alice --password x --staff", // 16: fine
  "npx protoguard user create alice --pasword x", // 17: no such flag
  "PROTOGUARD_WORKERS=2 protoguard serve --workers 2 && protoguard usr list", // 18: no such command
  "protoguard policy --format yaml", // 19: no such value
  "```", // 20
  "", // 21
  "<!-- fragment: -->", // 22: no reason
  "```ts", // 23
  "```", // 24
].join("\n");

/** tsc diagnostics (`--pretty false`), grouped by file: `[line, column, text]`. */
function parseDiagnostics(output: string): Map<string, [number, number, string][]> {
  const byFile = new Map<string, [number, number, string][]>();
  let last: [number, number, string] | undefined;
  for (const raw of output.split("\n")) {
    const match = /^(.+?)\((\d+),(\d+)\): (error|warning) (TS\d+: .*)$/.exec(raw);
    if (match !== null) {
      last = [Number(match[2]), Number(match[3]), match[5]!];
      const list = byFile.get(match[1]!) ?? [];
      list.push(last);
      byFile.set(match[1]!, list);
    } else if (last !== undefined && raw.startsWith("  ")) {
      last[2] += `\n      ${raw.trim()}`;
    } else if (raw.trim() !== "") {
      byFile.set("(tsc)", [...(byFile.get("(tsc)") ?? []), [0, 0, raw]]);
    }
  }
  return byFile;
}

describe("documentation code blocks", { timeout: 900_000 }, () => {
  let work: string;
  let app: string;
  const problems: DocProblem[] = [];
  const blocks: DocBlock[] = [];
  const selfTestProblems: DocProblem[] = [];
  const selfTest = extractBlocks(SELF_TEST_PAGE, "self-test.md", selfTestProblems);
  /** Markdown problems per block module, from the one tsc run. */
  let tscProblems: DocProblem[] = [];
  let selfTscProblems: DocProblem[] = [];
  let table: UsageEntry[] = [];

  before(async () => {
    for (const file of await docFiles()) {
      blocks.push(...extractBlocks(await readFile(join(REPO, file), "utf8"), file, problems));
    }
    work = await mkdtemp(join(tmpdir(), "protoguard-docs-"));
    app = join(work, "app");
    await mkdir(join(app, "src"), { recursive: true });
    // Packed once for this file (from a copy: prepack builds its own dist/), installed into one app.
    const tarball = await packPackage(work);
    await writeFile(
      join(app, "package.json"),
      JSON.stringify({ name: "docs-app", version: "1.0.0", private: true, type: "module" }, null, 2),
    );
    const npmFlags = ["--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"];
    const peers = await Promise.all(
      ["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-node", "@connectrpc/connect-web"].map(
        installedSpec,
      ),
    );
    const tools = await Promise.all(
      ["@bufbuild/buf", "@bufbuild/protoc-gen-es", "typescript", "@types/node"].map(installedSpec),
    );
    await ok("npm", ["install", ...npmFlags, tarball, ...peers], app);
    await ok("npm", ["install", "-D", ...npmFlags, ...tools], app);

    // The example's protos and the docs' own, generated as a user's app generates them.
    await cp(join(REPO, "proto", "example"), join(app, "proto", "example"), { recursive: true });
    for (const block of blocks) {
      if (block.lang === "proto" && block.target !== undefined) {
        await mkdir(dirname(join(app, block.target)), { recursive: true });
        await writeFile(join(app, block.target), `${block.code}\n`);
      }
    }
    await ok("npx", ["--no-install", "protoguard", "init"], app);
    await ok("npx", ["--no-install", "buf", "generate"], app);

    // Every ts block its own module; the self-test's beside them, in the same tsc run.
    const modules = new Map<string, DocBlock>();
    for (const block of [...blocks, ...selfTest]) {
      if (!TS_LANGS.has(block.lang) || block.fragment !== undefined) continue;
      const name = block.target ?? moduleName(block);
      assert.ok(!modules.has(name), `${block.file}:${block.line}: a second block for ${name}`);
      modules.set(name, block);
      await mkdir(dirname(join(app, name)), { recursive: true });
      await writeFile(join(app, name), `${block.code}\n`);
    }
    await writeFile(join(app, "tsconfig.json"), JSON.stringify(TSCONFIG, null, 2));
    const tsc = await run("npx", ["--no-install", "tsc", "-p", ".", "--pretty", "false"], app);
    const diagnostics = parseDiagnostics(tsc.stdout + tsc.stderr);
    for (const [file, list] of diagnostics) {
      const block = modules.get(file);
      const into = block?.file === "self-test.md" ? selfTscProblems : tscProblems;
      for (const [line, column, text] of list) {
        into.push(
          block === undefined
            ? { file: `(app) ${file}`, line, message: text }
            : {
                file: block.file,
                line: block.line + line,
                column,
                message: `error ${text} (in the block at line ${block.line}, compiled as ${file})`,
              },
        );
      }
    }
    if (tsc.code !== 0 && diagnostics.size === 0) {
      tscProblems = [{ file: "(tsc)", line: 0, message: `exited ${tsc.code}: ${tsc.stdout}${tsc.stderr}` }];
    }
    selfTscProblems = selfTscProblems.sort((a, b) => a.line - b.line);

    // The CLI's own usage lines, as the installed CLI prints them.
    const cli = (...args: string[]) => ok("npx", ["--no-install", "protoguard", ...args], app);
    const top = await cli("--help");
    const synopses = top
      .split("\n")
      .filter((l) => /^ {2}\S/.test(l))
      .map((l) => l.trim());
    const names = [...new Set(synopses.map((s) => s.split(" ")[0]!))].filter((n) => n !== "help");
    for (const name of names) {
      for (const line of (await cli(name, "--help")).split("\n")) {
        const match = /^(?:usage: | {2})protoguard (.+)$/.exec(line);
        if (match !== null && !match[1]!.includes("<subcommand>")) synopses.push(match[1]!);
      }
    }
    table = usageTable(synopses);
  });

  after(async () => {
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it("self-test: a block that does not compile is reported at its markdown line, a good one is not", () => {
    assert.equal(selfTscProblems.length, 1, formatProblems(selfTscProblems));
    assert.equal(selfTscProblems[0]!.line, 5);
    assert.match(selfTscProblems[0]!.message, /TS2322/);
    assert.equal(selfTscProblems[0]!.column, 7);
    assert.match(selfTscProblems[0]!.message, /block at line 3/);
  });

  it("self-test: a fragment needs a reason; unknown commands, flags and values are reported", () => {
    assert.deepEqual(
      selfTestProblems.map((p) => p.line),
      [22],
    );
    const sh = selfTest.find((b) => b.lang === "sh")!;
    const found = protoguardCommands(sh).map((c) => [c.line, checkCommand(c.args, table)] as const);
    assert.deepEqual(
      found.map(([line, problem]) => [line, problem === undefined]),
      [
        [16, true],
        [17, false],
        [18, true],
        [18, false],
        [19, false],
      ],
    );
    assert.match(found[1]![1]!, /no flag --pasword/);
    assert.match(found[3]![1]!, /no such command/);
    assert.match(found[4]![1]!, /--format yaml is not one of/);
  });

  it("finds the blocks: README and every docs page have code to check", () => {
    assert.ok(blocks.some((b) => b.file === "README.md" && TS_LANGS.has(b.lang)));
    assert.ok(table.some((e) => e.words.join(" ") === "user create"));
    assert.ok(table.find((e) => e.words.join(" ") === "serve")?.flags.has("workers"));
  });

  it("markers are well formed and fragments are few", () => {
    const fragments = blocks.filter((b) => b.fragment !== undefined);
    assert.deepEqual(problems, [], formatProblems(problems));
    assert.ok(
      fragments.length <= MAX_FRAGMENTS,
      `${fragments.length} fragments (at most ${MAX_FRAGMENTS}):\n${fragments.map((b) => `${b.file}:${b.line} ${b.fragment}`).join("\n")}`,
    );
    for (const block of blocks) {
      if (block.target !== undefined) {
        assert.ok(
          (block.lang === "proto" && block.target.startsWith("proto/")) ||
            (TS_LANGS.has(block.lang) && block.target.startsWith("src/")),
          `${block.file}:${block.line}: file marker ${block.target} on a ${block.lang} block`,
        );
      }
    }
  });

  it("every ts block type-checks against the installed package (strict, NodeNext, exactOptionalPropertyTypes, noUncheckedIndexedAccess)", () => {
    assert.equal(tscProblems.length, 0, `${tscProblems.length} type errors:\n${formatProblems(tscProblems)}`);
  });

  it("every protoguard command in a sh block names a command and flags the CLI has", () => {
    const wrong: DocProblem[] = [];
    for (const block of blocks) {
      if (!SH_LANGS.has(block.lang)) continue;
      for (const command of protoguardCommands(block)) {
        const problem = checkCommand(command.args, table);
        if (problem !== undefined) wrong.push({ file: block.file, line: command.line, message: problem });
      }
    }
    assert.equal(wrong.length, 0, `${wrong.length} wrong command lines:\n${formatProblems(wrong)}`);
  });
});

/** Every directory under `dir` (repository-relative), at most `depth` levels below it; any depth when undefined. */
async function directories(dir: string, depth?: number): Promise<string[]> {
  const found: string[] = [dir];
  if (depth === 0) return found;
  for (const entry of await readdir(join(REPO, dir), { withFileTypes: true })) {
    if (entry.isDirectory())
      found.push(...(await directories(`${dir}/${entry.name}`, depth === undefined ? undefined : depth - 1)));
  }
  return found;
}

/** Every `.ts` file under `dir`, repository-relative. */
async function tsFiles(dir: string): Promise<string[]> {
  const entries = await readdir(join(REPO, dir), { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith(".ts")).map((e) => join(e.parentPath, e.name));
}

describe("reference pages that follow the tree", () => {
  it("every relative link of README, CONTRIBUTING and docs/ reaches a file, and its #anchor a heading", async () => {
    const broken: DocProblem[] = [];
    for (const file of ["CONTRIBUTING.md", ...(await docFiles())]) {
      const text = await readFile(join(REPO, file), "utf8");
      for (const { line, target } of relativeLinks(text)) {
        const [path, anchor] = target.split("#") as [string, string | undefined];
        const resolved = path === "" ? join(REPO, file) : resolve(dirname(join(REPO, file)), path);
        let linked: string;
        try {
          linked = await readFile(resolved, "utf8");
        } catch {
          broken.push({ file, line, message: `${target}: no such file` });
          continue;
        }
        if (anchor !== undefined && resolved.endsWith(".md") && !headingAnchors(linked).has(anchor)) {
          broken.push({ file, line, message: `${target}: no heading #${anchor}` });
        }
      }
    }
    assert.equal(broken.length, 0, formatProblems(broken));
  });

  it("docs/configuration.md names every variable loadConfig reads", async () => {
    const sources = await Promise.all((await tsFiles("src")).map(async (f) => [f, await readFile(f, "utf8")] as const));
    const config = sources.filter(([, text]) => /export function loadConfig\(/.test(text));
    assert.equal(config.length, 1, "one module defines loadConfig");
    const names = new Set(
      [...config[0]![1].matchAll(/"((?:PROTOGUARD_[A-Z0-9_]+)|DATABASE_URL|PORT)"/g)].map((m) => m[1]!),
    );
    assert.ok(names.size > 30, `only ${names.size} variables found in ${config[0]![0]}`);
    const page = await readFile(join(REPO, "docs", "configuration.md"), "utf8");
    const missing = [...names].filter((name) => !page.includes(`\`${name}\``));
    assert.deepEqual(missing, [], `docs/configuration.md does not name ${missing.join(", ")}`);
  });

  it("CONTRIBUTING.md's layout names every folder", async () => {
    const layout = await readFile(join(REPO, "CONTRIBUTING.md"), "utf8");
    const folders = [
      ...(await directories("src")),
      ...(
        await Promise.all(
          ["test", "bench", "example", "proto", "gen", "scripts", "drizzle"].map((d) => directories(d, 1)),
        )
      ).flat(),
    ];
    const missing = folders.filter((folder) => !layout.includes(`${folder}/`));
    assert.deepEqual(missing, [], `CONTRIBUTING.md does not name ${missing.join(", ")}`);
  });
});
