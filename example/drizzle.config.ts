import { defineConfig } from "drizzle-kit";

// The example's tables only: protoguard's own schema has its own config and
// journal (../drizzle.config.ts). Run from the repository root:
//   npx drizzle-kit generate --config example/drizzle.config.ts
export default defineConfig({
  dialect: "postgresql",
  schema: "./example/schema.ts",
  out: "./example/drizzle",
});
