/**
 * The package as users get it, for tests that install it into an app: packed from a private copy
 * of the repository's build inputs, so its `prepack` build writes its own `dist/` and never races
 * another test file packing (or reading) the repository's own `dist/` at the same time.
 */
import { execFile } from "node:child_process";
import { cp, mkdir, readFile, symlink } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** What `npm pack` (with its `prepack` build) reads. */
const BUILD_INPUTS = [
  "package.json",
  "tsconfig.json",
  "tsconfig.build.json",
  "LICENSE",
  "README.md",
  "scripts",
  "src",
  "gen",
  "proto",
  "drizzle",
];

/**
 * Packs the package from a copy of the repository in `work/repo` (node_modules linked, not
 * copied) and returns the tarball's path.
 */
export async function packPackage(work: string): Promise<string> {
  const copy = join(work, "repo");
  await mkdir(copy, { recursive: true });
  for (const input of BUILD_INPUTS) await cp(join(REPO, input), join(copy, input), { recursive: true });
  await symlink(join(REPO, "node_modules"), join(copy, "node_modules"), "dir");
  const { NODE_TEST_CONTEXT: _context, ...env } = process.env;
  const stdout = await new Promise<string>((done, fail) => {
    execFile(
      "npm",
      ["pack", "--silent", "--pack-destination", work],
      { cwd: copy, env, maxBuffer: 64 * 1024 * 1024, timeout: 600_000 },
      (error, out, err) =>
        error === null ? done(out) : fail(new Error(`npm pack failed: ${error.message}\n${out}\n${err}`)),
    );
  });
  return join(work, stdout.trim().split("\n").pop()!);
}

/** `name@version` of a package as this repository has it installed, so npm finds it in its cache. */
export async function installedSpec(name: string): Promise<string> {
  const manifest = JSON.parse(await readFile(join(REPO, "node_modules", name, "package.json"), "utf8")) as {
    version: string;
  };
  return `${name}@${manifest.version}`;
}
