import { defineConfig } from "drizzle-kit";

// Migrations are generated from the one schema module and committed; they are
// applied by code (src/store/migrate.ts) or by `protoguard migrate`.
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/store/schema.ts",
  out: "./drizzle",
});
