/* global process, console */
// `npm run docs`: the API reference, built by TypeDoc from the JSDoc of every
// entry point the package exports (package.json `exports` whose `types` is a
// compiled barrel, mapped back to its source), into docs-api/ (git-ignored).
// Options are in typedoc.config.js; warnings are errors there.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
const manifest = JSON.parse(readFileSync("package.json", "utf8"));
const entryPoints = [];
for (const [subpath, target] of Object.entries(manifest.exports)) {
  const types = typeof target === "object" && target !== null ? target.types : undefined;
  if (typeof types !== "string" || !/^\.\/dist\/src\/.*\.d\.ts$/.test(types)) continue;
  entryPoints.push(types.replace(/^\.\/dist\//, "./").replace(/\.d\.ts$/, ".ts"));
  console.error(
    `docs: ${subpath === "." ? manifest.name : `${manifest.name}/${subpath.slice(2)}`} <- ${entryPoints.at(-1)}`,
  );
}
if (entryPoints.length === 0) throw new Error("package.json exports no typed entry point");
const typedoc = join(dirname(require.resolve("typedoc/package.json")), "bin", "typedoc");
try {
  execFileSync(
    process.execPath,
    [typedoc, "--options", "typedoc.config.js", ...entryPoints.flatMap((e) => ["--entryPoints", e])],
    {
      stdio: "inherit",
    },
  );
} catch (error) {
  // TypeDoc printed its warnings; its exit status is the answer.
  process.exit(typeof error.status === "number" ? error.status : 1);
}
