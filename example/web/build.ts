/**
 * Builds the example's browser page into example/web/dist: esbuild bundles
 * main.ts with @connectrpc/connect-web and the generated clients from gen/
 * into one ES module, and index.html is copied beside it. `protoguard serve`
 * serves that directory under `/` when it exists.
 *
 * dist/ is a build output and kept out of git; build it with
 * `npm run build:web`, or call {@link buildWebPage} (the browser test does,
 * so it always drives the page of the current source).
 */
import { copyFile, mkdir } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

/** The page's source directory (this file's). */
export const WEB_SOURCE_DIR = fileURLToPath(new URL(".", import.meta.url));

/** Where the page is built by default, and where `protoguard serve` looks for it. */
export const WEB_DIST_DIR = join(WEB_SOURCE_DIR, "dist");

/** Options of {@link buildWebPage}. */
export interface BuildWebPageOptions {
  /** Output directory, created when missing. Default {@link WEB_DIST_DIR}. */
  outDir?: string;
  /** Minify the bundle (a source map is written either way). Default true. */
  minify?: boolean;
}

/** What {@link buildWebPage} wrote. */
export interface BuiltWebPage {
  /** The absolute output directory: pass it as `staticDir` to `startServer`. */
  readonly outDir: string;
  /** Files written, relative to `outDir`. */
  readonly files: readonly string[];
}

/**
 * Bundles the page. Files of an earlier build are overwritten, never
 * deleted, so a server already serving `outDir` keeps working meanwhile.
 *
 * @throws the esbuild failure (with its messages) when the source does not
 *   bundle, e.g. after an import path moved.
 */
export async function buildWebPage(options: BuildWebPageOptions = {}): Promise<BuiltWebPage> {
  const outDir = resolve(options.outDir ?? WEB_DIST_DIR);
  await mkdir(outDir, { recursive: true });
  const result = await build({
    entryPoints: [join(WEB_SOURCE_DIR, "main.ts")],
    outfile: join(outDir, "main.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    // Every browser that ships fetch streams and ES modules reads ES2022.
    target: "es2022",
    minify: options.minify ?? true,
    sourcemap: "linked",
    legalComments: "linked",
    logLevel: "warning",
    metafile: true,
  });
  await copyFile(join(WEB_SOURCE_DIR, "index.html"), join(outDir, "index.html"));
  const bundled = Object.keys(result.metafile.outputs).map((path) => relative(outDir, resolve(path)));
  return { outDir, files: ["index.html", ...bundled.sort()] };
}

// `tsx example/web/build.ts` (npm run build:web): build and say where.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const { outDir } = await buildWebPage();
  console.log(`built the example page into ${outDir}`);
}
