/* global process */
// `npm run build` (and `prepack`): compiles src/ and the descriptors it
// imports to dist/ (ESM + .d.ts + maps), copies the migrations that
// migrateDatabase reads relative to its own module, and bundles the admin
// console into dist/console/ (served at /admin/ when it is turned on).
import { execFileSync } from "node:child_process";
import { chmodSync, cpSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { buildConsole } from "./build-console.js";

const require = createRequire(import.meta.url);
rmSync("dist", { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", "tsconfig.build.json"], {
  stdio: "inherit",
});
cpSync("drizzle", "dist/drizzle", { recursive: true });
chmodSync("dist/src/cli/bin.js", 0o755);
chmodSync("dist/src/plugin/bin.js", 0o755);
await buildConsole();
