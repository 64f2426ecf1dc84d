/**
 * README's performance table is bench/results.json's `table`, verbatim,
 * between two markers: a full `npm run bench` rewrites it, and
 * `npm run bench -- --readme` does so again from the stored results, so the
 * README never shows figures that no run produced.
 */
import { readFile, writeFile } from "node:fs/promises";

const README = new URL("../README.md", import.meta.url);
const RESULTS = new URL("./results.json", import.meta.url);
const BEGIN = "<!-- bench:results:begin (written by `npm run bench` from bench/results.json; do not edit) -->";
const END = "<!-- bench:results:end -->";

/** Replaces the text between the markers in README.md with the stored run's table. */
export async function rewriteReadme(): Promise<void> {
  const results = JSON.parse(await readFile(RESULTS, "utf8")) as { table?: string[]; date: string; command?: string };
  if (!Array.isArray(results.table)) throw new Error("bench/results.json has no table: run `npm run bench` first");
  const readme = await readFile(README, "utf8");
  const begin = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (begin === -1 || end < begin) throw new Error(`README.md lacks the markers ${BEGIN} … ${END}`);
  const block = [
    BEGIN,
    `Run of ${results.date} (\`${results.command ?? "npm run bench"}\`):`,
    "",
    "```text",
    ...results.table,
    "```",
    "",
  ].join("\n");
  await writeFile(README, `${readme.slice(0, begin)}${block}${readme.slice(end)}`);
}
