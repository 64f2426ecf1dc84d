// TypeDoc options for `npm run docs` (scripts/docs.js passes the entry points, read from
// package.json `exports`). Warnings fail the build.
import { OptionDefaults } from "typedoc";

/** @type {Partial<import("typedoc").TypeDocOptions>} */
const config = {
  name: "protoguard",
  tsconfig: "tsconfig.build.json",
  entryPointStrategy: "resolve",
  out: "docs-api",
  readme: "none",
  treatWarningsAsErrors: true,
  excludePrivate: true,
  excludeInternal: true,
  // protoc-gen-es marks what it generates with @generated.
  blockTags: [...OptionDefaults.blockTags, "@generated"],
  highlightLanguages: [...OptionDefaults.highlightLanguages, "sql", "proto"],
  validation: { notExported: true, invalidLink: true, rewrittenLink: true, notDocumented: false },
};
export default config;
