/**
 * The example application's own tables. They live beside protoguard's
 * (users, permissions, ...) in the same database but in a separate
 * migration journal, the way an application adds its tables to a project
 * that uses protoguard.
 */
import { index, integer, pgTable, text, timestamp, varchar, bigint } from "drizzle-orm/pg-core";
import * as schema from "../src/store/schema.js";

/** Products: read by anyone, renamed by holders of `products.change_product`. */
export const products = pgTable("example_products", {
  id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
  // Unique so the seed can insert with ON CONFLICT DO NOTHING and stay idempotent.
  name: varchar("name", { length: 200 }).notNull().unique(),
  priceCents: bigint("price_cents", { mode: "bigint" }).notNull(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});

/** Orders: each belongs to one user, and goes when that user is deleted. */
export const orders = pgTable(
  "example_orders",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    userId: integer("user_id")
      .notNull()
      .references(() => schema.users.id, { onDelete: "cascade" }),
    note: text("note").notNull().default(""),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("example_orders_user_id_idx").on(t.userId)],
);

/** A row of `example_products` as read. */
export type Product = typeof products.$inferSelect;
/** A row of `example_orders` as read. */
export type Order = typeof orders.$inferSelect;
