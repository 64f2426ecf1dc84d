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
  // Source links need a hosted git remote; a clone (CI's, a user's) may have none or a path.
  disableSources: true,
  // protoc-gen-es marks what it generates with @generated.
  blockTags: [...OptionDefaults.blockTags, "@generated"],
  highlightLanguages: [...OptionDefaults.highlightLanguages, "sql", "proto"],
  validation: { notExported: true, invalidLink: true, rewrittenLink: true, notDocumented: false },
  // Generated messages are published as protoguard/gen/protoguard/v1/*, documented by their .proto.
  intentionallyNotExported: ["Rule", "RateLimit", "AdminService"],
};
export default config;
