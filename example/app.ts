/**
 * The example application as `protoguard serve` runs it: the django-cfg
 * reference page's services over their own tables, demo users on a fresh
 * embedded database, and the browser page. `npm start` serves it through
 * example/cli.ts; with the built package it would be
 * `protoguard serve --routes example/app.js`.
 */
import { fileURLToPath } from "node:url";
import { defineServeApp } from "../src/exports/server.js";
import { migrateExample } from "./migrate.js";
import { createDemoUsers, seedExample } from "./seed.js";
import type { UpdateOrderRequest } from "../gen/example/v1/order_pb.js";
import { EXAMPLE_SERVICES, exampleRoutes, loadOrder } from "./services.js";

/** The browser page (example/web), served under `/` once `npm run build:web` has built it. */
const PAGE_DIR = fileURLToPath(new URL("./web/dist", import.meta.url));

/**
 * Demo data goes only where nobody's real data can be: the embedded
 * database, or a PostgreSQL database whose operator asked for it with
 * `PROTOGUARD_EXAMPLE_SEED=1`. Demo users (with passwords printed to a
 * terminal) only ever go into the embedded one.
 */
export default defineServeApp({
  services: EXAMPLE_SERVICES,
  routes(router, runtime) {
    exampleRoutes({ database: runtime.database })(router);
  },
  // UpdateOrder's condition reads the order; `protoguard policy` lists the loader.
  resources: {
    "example.v1.OrderService/UpdateOrder": (request: UpdateOrderRequest, _call, runtime) =>
      loadOrder(runtime.database, request),
  },
  async prepare(runtime) {
    const embedded = runtime.config.databaseUrl === undefined;
    await migrateExample(runtime.database);
    if (!embedded && process.env["PROTOGUARD_EXAMPLE_SEED"] !== "1") return {};
    const demoUsers = embedded ? await createDemoUsers(runtime.database.db, runtime.passwordHasher) : [];
    const owners = demoUsers.filter((u) => u.username === "alice" || u.username === "editor");
    const orders = await seedExample(runtime.database.db, { orderOwners: owners.map((u) => u.id) });
    const lines: string[] = [];
    if (demoUsers.length > 0) {
      lines.push("Demo users (created on this first start; the passwords are not shown again):");
      const width = Math.max(...demoUsers.map((u) => u.username.length));
      for (const user of demoUsers) lines.push(`  ${user.username.padEnd(width)}  ${user.password}  ${user.role}`);
      const owned = owners
        .map((owner) => ({ owner, ids: orders.filter((o) => o.userId === owner.id).map((o) => o.id) }))
        .filter(({ ids }) => ids.length > 0)
        .map(({ owner, ids }) => `${ids.join(", ")} (${owner.username})`);
      if (owned.length > 0)
        lines.push(`Orders: ${owned.join("; ")}: UpdateOrder lets only the owner or staff change one.`);
      lines.push("");
    } else if (embedded) {
      lines.push(
        "Users exist already; create more with: npm run -s protoguard -- user create <username> --password <password>",
        "",
      );
    }
    const alice = demoUsers.find((u) => u.username === "alice");
    const curl = "npx buf curl --schema proto --protocol connect";
    const banner = (url: string) => [
      ...lines,
      "Log in:",
      `  ${curl} -d '{"username":"${alice?.username ?? "<username>"}","password":"${alice?.password ?? "<password>"}"}' ${url}/protoguard.v1.AuthService/Login`,
      "Then, with the accessToken of the answer in TOKEN:",
      `  ${curl} -H "Authorization: Bearer $TOKEN" ${url}/example.v1.AccountService/GetProfile`,
    ];
    return { banner };
  },
  staticDir: PAGE_DIR,
});
