// The example services against the conformance tables protoc-gen-protoguard generated from their
// .proto rules (gen/example/v1/*_protoguard.ts): one line per service, on the real implementation.
import { after, before, describe, it } from "node:test";
import { AccountServiceConformance } from "../gen/example/v1/account_protoguard.js";
import { AdminServiceConformance } from "../gen/example/v1/admin_protoguard.js";
import { OrderServiceConformance } from "../gen/example/v1/order_protoguard.js";
import { ProductServiceConformance } from "../gen/example/v1/product_protoguard.js";
import { UserServiceConformance } from "../gen/example/v1/user_protoguard.js";
import { migrateExample } from "../example/migrate.js";
import { orders } from "../example/schema.js";
import { exampleResources, exampleRoutes } from "../example/services.js";
import { createUser } from "../src/exports/store.js";
import { createTestDatabase, runConformance, type TestDatabase } from "../src/exports/testing.js";

describe("example services conform to their rules", () => {
  let database: TestDatabase;
  let routes: ReturnType<typeof exampleRoutes>;
  // The example's rules need its resource loaders: the auth layer refuses to start without them.
  let testAuth: { resources: ReturnType<typeof exampleResources> };
  before(async () => {
    database = await createTestDatabase();
    await migrateExample(database);
    routes = exampleRoutes({ database, notificationCount: 1 });
    testAuth = { resources: exampleResources({ database }) };
  });
  after(async () => {
    await database?.close();
  });

  it("UserService", (t) => runConformance(t, UserServiceConformance, { routes, database, testAuth }));
  it("ProductService", (t) => runConformance(t, ProductServiceConformance, { routes, database, testAuth }));
  it("AccountService", (t) => runConformance(t, AccountServiceConformance, { routes, database, testAuth }));
  it("AdminService", (t) => runConformance(t, AdminServiceConformance, { routes, database, testAuth }));
  it("OrderService, each caller updating an order of their own", (t) =>
    runConformance(t, OrderServiceConformance, {
      routes,
      database,
      requests: {
        async updateOrder({ user }) {
          if (user === undefined) return { orderId: 1, note: "anonymous" };
          const [order] = await database.db.insert(orders).values({ userId: user.id }).returning();
          return { orderId: order!.id, note: "conformance" };
        },
      },
      testAuth,
      // Owner-or-staff holds for the owner.
      conditions: { updateOrder: true },
    }));
  it("OrderService, each caller updating somebody else's order: the condition refuses", async (t) => {
    const owner = await createUser(database.db, { username: "order_owner" });
    const [order] = await database.db.insert(orders).values({ userId: owner.id }).returning();
    await runConformance(t, OrderServiceConformance, {
      routes,
      database,
      testAuth,
      requests: { updateOrder: { orderId: order!.id, note: "not mine" } },
      conditions: { updateOrder: false },
    });
  });
});
