/**
 * The code blocks of the documentation, read the way test/docs.test.ts checks them: fenced
 * blocks with their language and the markdown line they start on, the HTML-comment markers just
 * before a block (`<!-- fragment: reason -->`, `<!-- file: path -->`), `protoguard` command lines
 * of shell blocks, and the check of such a line against the CLI's own usage lines.
 */

/** One fenced block of a markdown file. */
export interface DocBlock {
  /** The markdown file, as given to {@link extractBlocks} (repository-relative in reports). */
  readonly file: string;
  /** 1-based line of the opening fence; the block's first code line is `line + 1`. */
  readonly line: number;
  /** The fence's language (`ts`, `sh`, `proto`, ...), lower-case; `""` when none. */
  readonly lang: string;
  readonly code: string;
  /** The reason of a `<!-- fragment: reason -->` marker right before the block. */
  readonly fragment?: string;
  /** The path of a `<!-- file: path -->` marker right before the block. */
  readonly target?: string;
}

/** A mistake found in the documentation, located in it. */
export interface DocProblem {
  readonly file: string;
  readonly line: number;
  /** 1-based column, when known (tsc diagnostics). */
  readonly column?: number;
  readonly message: string;
}

/** Formats problems one per line, `file:line[:column]: message`, for an assertion message. */
export function formatProblems(problems: readonly DocProblem[]): string {
  return problems
    .map((p) => `${p.file}:${p.line}${p.column === undefined ? "" : `:${p.column}`}: ${p.message}`)
    .join("\n");
}

const MARKER = /^<!--\s*(fragment|file)\s*:(.*?)-->\s*$/;

/**
 * The fenced blocks of `markdown`. A marker comment on the last non-blank line before a fence
 * applies to that block; a fragment marker without a reason is reported in `problems`.
 */
export function extractBlocks(markdown: string, file: string, problems: DocProblem[] = []): DocBlock[] {
  const lines = markdown.split("\n");
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w+-]*)/.exec(lines[i]!);
    if (open === null) continue;
    const [, indent, fence, lang] = open as unknown as [string, string, string, string];
    const start = i;
    const code: string[] = [];
    for (i++; i < lines.length; i++) {
      const line = lines[i]!;
      if (line.trim() === fence || (line.trimStart().startsWith(fence) && line.trim().replace(/[`~]/g, "") === ""))
        break;
      code.push(line.startsWith(indent) ? line.slice(indent.length) : line);
    }
    let fragment: string | undefined;
    let target: string | undefined;
    let j = start - 1;
    while (j >= 0 && lines[j]!.trim() === "") j--;
    const marker = j >= 0 ? MARKER.exec(lines[j]!.trim()) : null;
    if (marker !== null) {
      const value = marker[2]!.trim();
      if (marker[1] === "fragment") {
        if (value === "") problems.push({ file, line: j + 1, message: "a fragment marker needs a reason" });
        fragment = value === "" ? "(no reason)" : value;
      } else {
        target = value;
      }
    }
    blocks.push({
      file,
      line: start + 1,
      lang: lang.toLowerCase(),
      code: code.join("\n"),
      ...(fragment === undefined ? {} : { fragment }),
      ...(target === undefined ? {} : { target }),
    });
  }
  return blocks;
}

/** Languages of blocks that are type-checked. */
export const TS_LANGS: ReadonlySet<string> = new Set(["ts", "typescript"]);
/** Languages of blocks whose `protoguard` lines are checked. */
export const SH_LANGS: ReadonlySet<string> = new Set(["sh", "bash", "shell", "console"]);

/** Splits a shell line into words, keeping quoted text together; `#` starts a comment. */
function shellWords(text: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      const stop = end === -1 ? text.length : end;
      word = (word ?? "") + text.slice(i + 1, stop);
      i = stop;
    } else if (c === "\\" && i + 1 < text.length) {
      word = (word ?? "") + text[++i];
    } else if (c === "#" && word === undefined) {
      break;
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if ("|&;".includes(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
      let op = c;
      while (i + 1 < text.length && "|&;".includes(text[i + 1]!)) op += text[++i];
      words.push(op);
    } else {
      word = (word ?? "") + c;
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

/** One `protoguard` invocation found in a shell block. */
export interface CommandLine {
  /** Markdown line of the invocation. */
  readonly line: number;
  /** The words after `protoguard`, up to the end of that command. */
  readonly args: readonly string[];
}

/**
 * Every `protoguard …` invocation in a shell block: `protoguard`, `npx [flags] protoguard`, and
 * this repository's `npm run [-s] protoguard -- …`, after `VAR=value` assignments, `&&`, `||`,
 * `;` or `|`. Lines ending in `\` continue; redirections end the arguments.
 */
export function protoguardCommands(block: DocBlock): CommandLine[] {
  const found: CommandLine[] = [];
  const lines = block.code.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const first = i;
    let text = lines[i]!;
    while (text.endsWith("\\") && i + 1 < lines.length) text = `${text.slice(0, -1)} ${lines[++i]!}`;
    const words = shellWords(text);
    let k = 0;
    while (k < words.length) {
      let end = k;
      while (end < words.length && !/^[|&;]+$/.test(words[end]!)) end++;
      const command = words.slice(k, end);
      k = end + 1;
      let w = 0;
      while (w < command.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(command[w]!)) w++;
      let rest: string[] | undefined;
      const head = command[w];
      if (head === "protoguard" || head?.endsWith("/protoguard")) rest = command.slice(w + 1);
      else if (head === "npx") {
        let v = w + 1;
        while (v < command.length && command[v]!.startsWith("-")) v++;
        if (command[v] === "protoguard") rest = command.slice(v + 1);
      } else if (head === "npm" && command[w + 1] === "run") {
        let v = w + 2;
        while (v < command.length && command[v]!.startsWith("-")) v++;
        if (command[v] === "protoguard") rest = command.slice(command[v + 1] === "--" ? v + 2 : v + 1);
      }
      if (rest === undefined) continue;
      const redirect = rest.findIndex((word) => /^\d*[<>]/.test(word));
      found.push({ line: block.line + 1 + first, args: redirect === -1 ? rest : rest.slice(0, redirect) });
    }
  }
  return found;
}

/** A usage line of the CLI, read into the words that name it and the flags it takes. */
export interface UsageEntry {
  /** The synopsis as the CLI prints it, without `protoguard `. */
  readonly usage: string;
  /** The literal words that name the command (`["user", "create"]`). */
  readonly words: readonly string[];
  /** Flag name → its value alternatives when the usage enumerates them (`table|json`), else `undefined`. */
  readonly flags: ReadonlyMap<string, readonly string[] | undefined>;
}

/** Reads usage synopses (`user create <username> --password <pw> [--staff]`) into entries, merging repeats. */
export function usageTable(synopses: Iterable<string>): UsageEntry[] {
  const byName = new Map<string, { usage: string; words: string[]; flags: Map<string, string[] | undefined> }>();
  for (const synopsis of synopses) {
    const tokens = synopsis.trim().split(/\s+/);
    const words: string[] = [];
    for (const token of tokens) {
      if (!/^[a-z][a-z0-9-]*$/.test(token)) break;
      words.push(token);
    }
    if (words.length === 0) continue;
    const key = words.join(" ");
    const entry = byName.get(key) ?? { usage: synopsis.trim(), words, flags: new Map() };
    byName.set(key, entry);
    const flagPattern = /--([a-z0-9][a-z0-9-]*)(?:[= ]([^\s\][]+))?/g;
    for (const match of synopsis.matchAll(flagPattern)) {
      const value = match[2];
      const alternatives = value?.includes("|") ? value.split("|") : undefined;
      // An alternative in capitals (`N|auto`) is a placeholder: any value goes.
      const open = alternatives === undefined || alternatives.some((a) => /^[A-Z_]+$/.test(a));
      const name = match[1]!;
      const known = entry.flags.get(name);
      if (open) entry.flags.set(name, undefined);
      else if (!entry.flags.has(name)) entry.flags.set(name, alternatives);
      else if (known !== undefined) entry.flags.set(name, [...new Set([...known, ...alternatives])]);
    }
  }
  return [...byName.values()];
}

/**
 * Checks one invocation against the usage table: the longest entry whose naming words begin
 * the arguments is the command; every `--flag` must be one of its flags (or `--help`), and a
 * value must be one of the flag's enumerated alternatives, when the usage lists them.
 *
 * @returns what is wrong, or `undefined`.
 */
export function checkCommand(args: readonly string[], table: readonly UsageEntry[]): string | undefined {
  if (args.length === 0 || args[0] === "--help" || args[0] === "-h") return undefined;
  let entry: UsageEntry | undefined;
  for (const candidate of table) {
    if (candidate.words.every((word, i) => args[i] === word)) {
      if (entry === undefined || candidate.words.length > entry.words.length) entry = candidate;
    }
  }
  const shown = `protoguard ${args.join(" ")}`;
  if (entry === undefined)
    return `${shown}: no such command (the CLI knows ${table.map((e) => e.words.join(" ")).join(", ")})`;
  for (let i = entry.words.length; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") break;
    if (!arg.startsWith("--")) continue;
    if (arg === "--help") continue;
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    if (!entry.flags.has(name)) {
      const known = [...entry.flags.keys()].map((f) => `--${f}`).join(" ") || "none";
      return `${shown}: "${entry.words.join(" ")}" has no flag --${name} (usage: protoguard ${entry.usage}; flags: ${known})`;
    }
    const alternatives = entry.flags.get(name);
    const value = eq === -1 ? args[i + 1] : arg.slice(eq + 1);
    if (alternatives !== undefined && value !== undefined && !alternatives.includes(value)) {
      return `${shown}: --${name} ${value} is not one of ${alternatives.join("|")}`;
    }
  }
  return undefined;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
export function headingAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, "")
    .replace(/ /g, "-");
}

/** The anchors of a markdown file's headings (outside code blocks). */
export function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  let fence: string | undefined;
  for (const line of markdown.split("\n")) {
    const open = /^\s*(`{3,}|~{3,})/.exec(line);
    if (open !== null) {
      if (fence === undefined) fence = open[1];
      else if (line.trim().startsWith(fence)) fence = undefined;
      continue;
    }
    const heading = fence === undefined ? /^#{1,6}\s+(.*)$/.exec(line) : null;
    if (heading !== null) anchors.add(headingAnchor(heading[1]!));
  }
  return anchors;
}

/** Relative links of a markdown file outside code blocks: `[text](target)` with its line. */
export function relativeLinks(markdown: string): { line: number; target: string }[] {
  const links: { line: number; target: string }[] = [];
  let fence: string | undefined;
  markdown.split("\n").forEach((line, i) => {
    const open = /^\s*(`{3,}|~{3,})/.exec(line);
    if (open !== null) {
      if (fence === undefined) fence = open[1];
      else if (line.trim().startsWith(fence)) fence = undefined;
      return;
    }
    if (fence !== undefined) return;
    for (const match of line.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = match[1]!;
      if (!/^[a-z][a-z0-9+.-]*:/i.test(target)) links.push({ line: i + 1, target });
    }
  });
  return links;
}
