/**
 * The few DOM helpers the console is written with. Text always goes in as
 * `textContent` (never HTML), so nothing a user, a group name or an audit
 * row carries can become markup or script.
 */

/** A child of {@link el}: a node, text, or nothing (skipped). */
export type Child = Node | string | undefined | null | false;

/** Attributes and properties of {@link el}: `on*` functions become listeners. */
export type Props = Record<string, string | number | boolean | EventListener | undefined>;

/**
 * Creates `<tag>` with `props` (attributes, or a listener for a function
 * named `onclick`, `onsubmit`, …) and `children`.
 */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

/** Appends the children that are not empty. */
export function append(node: Node, children: readonly Child[]): void {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

/**
 * A table with a caption (its accessible name), header cells scoped to
 * their column, and one row per entry; `empty` is shown in a row of its
 * own when there is none, so an empty list never looks like a broken page.
 */
export function table(
  id: string,
  caption: string,
  headers: readonly string[],
  rows: readonly (readonly Child[])[],
  empty: string,
): HTMLTableElement {
  const body = el("tbody");
  if (rows.length === 0) {
    body.append(el("tr", { class: "empty" }, el("td", { colspan: headers.length }, empty)));
  }
  for (const row of rows) body.append(el("tr", {}, ...row.map((cell) => el("td", {}, cell))));
  return el(
    "table",
    { id },
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, ...headers.map((header) => el("th", { scope: "col" }, header)))),
    body,
  );
}

/** A `<label>` wrapping its control's name and the control, so every control has an accessible name. */
export function labelled(text: string, control: HTMLElement): HTMLLabelElement {
  return el("label", {}, el("span", { class: "label" }, text), control);
}

/** A definition list of name/value pairs. */
export function facts(id: string, rows: readonly (readonly [string, Child])[]): HTMLDListElement {
  const list = el("dl", { id });
  for (const [name, value] of rows) list.append(el("dt", {}, name), el("dd", {}, value));
  return list;
}

/** "yes" or "no". */
export function yesNo(value: boolean): string {
  return value ? "yes" : "no";
}

/** A protobuf Timestamp as local ISO-like text, or "—" when unset. */
export function when(timestamp: { seconds: bigint; nanos: number } | undefined): string {
  if (timestamp === undefined) return "—";
  const date = new Date(Number(timestamp.seconds) * 1000 + Math.floor(timestamp.nanos / 1e6));
  return date
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d+Z$/, "Z");
}
