// The public API is closed: every type named in an exported signature of an
// entry point is itself exported by one of the entry points, so users can
// write the type of what they hold without a deep import.
import assert from "node:assert/strict";
import { dirname, join, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** package.json subpath → source of its entry module. */
const ENTRIES: Readonly<Record<string, string>> = {
  protoguard: "src/index.ts",
  "protoguard/store": "src/store/index.ts",
  "protoguard/auth-service": "src/lifecycle/index.ts",
  "protoguard/server": "src/server/index.ts",
  "protoguard/testing": "src/testing/index.ts",
  "protoguard/client": "src/client/index.ts",
};

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
  const ours = (decl: ts.Declaration) => {
    const file = decl.getSourceFile().fileName;
    return !file.includes("/node_modules/") && (file.includes("/src/") || file.includes("/gen/"));
  };
  const real = (symbol: ts.Symbol) => (symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol);

  const exported = new Map<ts.Symbol, string>();
  for (const [subpath, file] of Object.entries(ENTRIES)) {
    const source = program.getSourceFile(join(REPO, file));
    assert.ok(source, `${file} not found`);
    const moduleSymbol = checker.getSymbolAtLocation(source);
    assert.ok(moduleSymbol, `${file} is not a module`);
    for (const symbol of checker.getExportsOfModule(moduleSymbol)) {
      const target = real(symbol);
      if (!exported.has(target)) exported.set(target, `${subpath}#${symbol.name}`);
    }
  }

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
