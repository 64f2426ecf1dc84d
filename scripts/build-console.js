/* global process, console */
// Bundles the admin console (src/console/) into one directory the server
// serves at /admin/: esbuild puts main.ts with @connectrpc/connect-web, the
// session of protoguard/client and the generated AdminService and
// AuthService descriptors into one ES module, console.js; index.html and
// console.css are copied beside it. `npm run build` writes dist/console/,
// which the package ships; the browser test builds into a directory of its
// own, so it always drives the console of the current source.
import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

/** The console's source directory. */
export const CONSOLE_SOURCE_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "console");

/** Where `npm run build` writes the console: the package's `dist/console/`. */
export const CONSOLE_DIST_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "console");

/**
 * Bundles the console into `outDir` (created when missing).
 *
 * @param {{ outDir?: string, minify?: boolean }} [options]
 * @returns {Promise<{ outDir: string, files: string[] }>} the files written, relative to `outDir`.
 */
export async function buildConsole(options = {}) {
  const outDir = resolve(options.outDir ?? CONSOLE_DIST_DIR);
  await mkdir(outDir, { recursive: true });
  const result = await build({
    entryPoints: [join(CONSOLE_SOURCE_DIR, "main.ts")],
    outfile: join(outDir, "console.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    // Every browser with fetch streams and ES modules reads ES2022.
    target: "es2022",
    minify: options.minify ?? true,
    // No source map: the package ships the console's source (src/console/) itself.
    sourcemap: false,
    legalComments: "linked",
    logLevel: "warning",
    metafile: true,
  });
  await copyFile(join(CONSOLE_SOURCE_DIR, "index.html"), join(outDir, "index.html"));
  await copyFile(join(CONSOLE_SOURCE_DIR, "console.css"), join(outDir, "console.css"));
  const bundled = Object.keys(result.metafile.outputs).map((path) => relative(outDir, resolve(path)));
  return { outDir, files: ["console.css", "index.html", ...bundled].sort() };
}

// `node scripts/build-console.js` (npm run build:console): build dist/console/ and say where.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const { outDir, files } = await buildConsole();
  console.log(`built the admin console into ${outDir}: ${files.join(", ")}`);
}
