/**
 * The performance table of docs/performance.md is bench/results.json's
 * `table`, verbatim, between two markers: a full `npm run bench` rewrites it,
 * and `npm run bench -- --readme` does so again from the stored results, so
 * the docs never show figures that no run produced. (The flag keeps its name
 * from when the table was in README.md.)
 */
import { readFile, writeFile } from "node:fs/promises";

const PAGE = new URL("../docs/performance.md", import.meta.url);
const RESULTS = new URL("./results.json", import.meta.url);
const BEGIN = "<!-- bench:results:begin (written by `npm run bench` from bench/results.json; do not edit) -->";
const END = "<!-- bench:results:end -->";

/** Replaces the text between the markers in docs/performance.md with the stored run's table. */
export async function rewriteBenchTable(): Promise<void> {
  const results = JSON.parse(await readFile(RESULTS, "utf8")) as { table?: string[]; date: string; command?: string };
  if (!Array.isArray(results.table)) throw new Error("bench/results.json has no table: run `npm run bench` first");
  const page = await readFile(PAGE, "utf8");
  const begin = page.indexOf(BEGIN);
  const end = page.indexOf(END);
  if (begin === -1 || end < begin) throw new Error(`docs/performance.md lacks the markers ${BEGIN} … ${END}`);
  const block = [
    BEGIN,
    `Run of ${results.date} (\`${results.command ?? "npm run bench"}\`):`,
    "",
    "```text",
    ...results.table,
    "```",
    "",
  ].join("\n");
  await writeFile(PAGE, `${page.slice(0, begin)}${block}${page.slice(end)}`);
}
