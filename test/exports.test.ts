// The public API is closed: every type named in an exported signature of an
// entry point is itself exported by one of the entry points, so users can
// write the type of what they hold without a deep import. And it stays small
// enough to take in: the main entry point holds what applications import,
// nothing is exported twice, and generated names come from `protoguard/gen/…`.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Most names the main entry point may export (connect-es's has 35). */
const MAIN_ENTRY_LIMIT = 60;

/**
 * Names a browser bundle takes from `protoguard/client` so that it never loads the server-side
 * main entry point: the one deliberate second export of a name.
 */
const BROWSER_COPIES: ReadonlySet<string> = new Set(["protoguard/client#authErrorReason"]);

/** package.json subpath → source of its entry module, read from `exports` (wildcards are generated code). */
const ENTRIES: Readonly<Record<string, string>> = (() => {
  const manifest = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as {
    exports: Record<string, string | { types?: string }>;
  };
  const entries: Record<string, string> = {};
  for (const [subpath, target] of Object.entries(manifest.exports)) {
    const types = typeof target === "string" ? undefined : target.types;
    if (types === undefined || subpath.includes("*")) continue;
    const source = types.replace(/^\.\/dist\//, "").replace(/\.d\.ts$/, ".ts");
    entries[subpath === "." ? "protoguard" : `protoguard/${subpath.slice(2)}`] = source;
  }
  return entries;
})();

describe("public API", () => {
  const files = Object.values(ENTRIES).map((f) => join(REPO, f));
  const program = ts.createProgram(files, {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    skipLibCheck: true,
    noEmit: true,
    types: ["node"],
  });
  const checker = program.getTypeChecker();
  // Generated descriptors and messages are public as `protoguard/gen/protoguard/v1/*`.
  const ours = (decl: ts.Declaration) => {
    const file = decl.getSourceFile().fileName;
    return !file.includes("/node_modules/") && (file.includes("/src/") || file.includes("/gen/")) && !isGenerated(decl);
  };
  const isGenerated = (decl: ts.Declaration) => decl.getSourceFile().fileName.includes("/gen/protoguard/v1/");
  const real = (symbol: ts.Symbol) => (symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol);

  const exported = new Map<ts.Symbol, string>();
  /** Every export of every entry point, with where else it is exported. */
  const twice: string[] = [];
  const namesOf = new Map<string, string[]>();
  for (const [subpath, file] of Object.entries(ENTRIES)) {
    const source = program.getSourceFile(join(REPO, file));
    assert.ok(source, `${file} not found`);
    const moduleSymbol = checker.getSymbolAtLocation(source);
    assert.ok(moduleSymbol, `${file} is not a module`);
    // `typeof import("…/schema")` in a signature names the entry module itself.
    exported.set(moduleSymbol, subpath);
    const names: string[] = [];
    for (const symbol of checker.getExportsOfModule(moduleSymbol)) {
      const target = real(symbol);
      names.push(symbol.name);
      const first = exported.get(target);
      if (first === undefined) exported.set(target, `${subpath}#${symbol.name}`);
      else if (!BROWSER_COPIES.has(`${subpath}#${symbol.name}`))
        twice.push(`${subpath}#${symbol.name} is also ${first}`);
    }
    namesOf.set(subpath, names);
  }

  it(`the main entry point exports at most ${MAIN_ENTRY_LIMIT} names`, () => {
    const names = namesOf.get("protoguard") ?? [];
    assert.ok(names.length > 0, "protoguard exports nothing");
    assert.ok(names.length <= MAIN_ENTRY_LIMIT, `protoguard exports ${names.length} names:\n${names.join(", ")}`);
  });

  it("no name is exported by two entry points, or twice by one", () => {
    assert.deepEqual(twice, []);
  });

  it("entry points re-export no generated name: those come from protoguard/gen/protoguard/v1/*", () => {
    const generated: string[] = [];
    for (const [symbol, where] of exported) {
      const declaration = symbol.declarations?.[0];
      // auth-service publishes its own service's messages: that entry point is their home.
      if (declaration !== undefined && isGenerated(declaration) && !where.startsWith("protoguard/auth-service#")) {
        generated.push(where);
      }
    }
    assert.deepEqual(generated, []);
  });

  it("every type named in an exported declaration is exported", () => {
    const missing = new Map<string, Set<string>>();
    const visitType = (node: ts.Node, owner: string) => {
      if (ts.isTypeReferenceNode(node) || ts.isExpressionWithTypeArguments(node) || ts.isTypeQueryNode(node)) {
        const name = ts.isTypeReferenceNode(node)
          ? node.typeName
          : ts.isTypeQueryNode(node)
            ? node.exprName
            : node.expression;
        const symbol = checker.getSymbolAtLocation(name);
        if (symbol !== undefined) {
          const target = real(symbol);
          const declaration = target.declarations?.[0];
          const isTypeParameter = declaration !== undefined && ts.isTypeParameterDeclaration(declaration);
          if (declaration !== undefined && !isTypeParameter && ours(declaration) && !exported.has(target)) {
            const where = `${declaration.getSourceFile().fileName.slice(REPO.length + 1)}`;
            const key = `${target.name} (${where})`;
            if (!missing.has(key)) missing.set(key, new Set());
            missing.get(key)!.add(owner);
          }
        }
      }
      ts.forEachChild(node, (child) => visitType(child, owner));
    };
    for (const [symbol, owner] of exported) {
      for (const declaration of symbol.declarations ?? []) {
        if (!ours(declaration)) continue;
        // Signatures and shapes, not bodies: walk everything but function
        // bodies and initialisers of non-exported internals.
        const walk = (node: ts.Node) => {
          if (ts.isBlock(node)) return;
          if (ts.isTypeNode(node) || ts.isHeritageClause(node)) visitType(node, owner);
          else ts.forEachChild(node, walk);
        };
        walk(declaration);
      }
    }
    const report = [...missing].map(([type, owners]) => `${type}: used by ${[...owners].slice(0, 3).join(", ")}`);
    assert.deepEqual(report, [], `types used in exported signatures but not exported:\n${report.join("\n")}`);
  });
});
