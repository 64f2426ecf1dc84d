/** The console's source directory (src/console/). */
export declare const CONSOLE_SOURCE_DIR: string;
/** Where `npm run build` writes the console: the package's `dist/console/`. */
export declare const CONSOLE_DIST_DIR: string;
/** Bundles the admin console into `outDir` (default {@link CONSOLE_DIST_DIR}). */
export declare function buildConsole(options?: { outDir?: string; minify?: boolean }): Promise<{
  outDir: string;
  files: string[];
}>;
