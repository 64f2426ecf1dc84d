/**
 * The example services of django-cfg's JWT guide, written against
 * protoguard. The rules live in proto/example/v1, including "the order's
 * owner or staff" (a CEL condition over the order {@link exampleResources}
 * loads); the handlers only hold what a rule cannot express (what a
 * permitted viewer may see) and read the caller with the handler helpers.
 */
import { timestampNow } from "@bufbuild/protobuf/wkt";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { asc, eq } from "drizzle-orm";
import { setTimeout as sleep } from "node:timers/promises";
import { AccountService } from "../gen/example/v1/account_pb.js";
import { AdminService } from "../gen/example/v1/admin_pb.js";
import { OrderService, type UpdateOrderRequest } from "../gen/example/v1/order_pb.js";
import { ProductService } from "../gen/example/v1/product_pb.js";
import { UserService } from "../gen/example/v1/user_pb.js";
import { implementGuardedAccountService } from "../gen/example/v1/account_protoguard.js";
import { implementGuardedAdminService } from "../gen/example/v1/admin_protoguard.js";
import { getUser, methodKey, requireStaff } from "../src/exports/protoguard.js";
import { deleteUser, getUserById, StoreError } from "../src/exports/store.js";
import * as schema from "../src/store/schema.js";
import type { Principal, ResourceLoaders } from "../src/exports/protoguard.js";
import type { Database } from "../src/exports/store.js";
import { orders, products, type Order, type Product } from "./schema.js";

/** Every service {@link exampleRoutes} registers, for policy reports and start-up checks. */
export const EXAMPLE_SERVICES: readonly DescService[] = [
  UserService,
  ProductService,
  AccountService,
  AdminService,
  OrderService,
];

/** Options of {@link exampleRoutes}. */
export interface ExampleOptions {
  /** The store holding protoguard's users and the example's tables. Required. */
  database: Database;
  /** Messages one WatchNotifications stream sends before it ends. Default 5. */
  notificationCount?: number;
  /** Pause between two notifications, in milliseconds. Default 1000. */
  notificationIntervalMs?: number;
}

const MAX_PRODUCT_NAME = 200;
const MAX_EMAIL = 254;
const MAX_NOTE = 1000;

/**
 * What the example's rule conditions call `resource`: the order an
 * UpdateOrder call names, as `{ id, user_id, note }` (undefined when there
 * is none, which the rule refuses like somebody else's order). Pass it with
 * the routes: `createAuth`/`startServer`/`createTestAuth({ resources })`.
 *
 * @example
 * ```ts
 * const t = await createTestAuth({ routes: exampleRoutes({ database }), resources: exampleResources({ database }), database });
 * ```
 */
export function exampleResources(options: Pick<ExampleOptions, "database">): ResourceLoaders {
  const { database } = options;
  return {
    [methodKey(OrderService.method.updateOrder)]: (request: UpdateOrderRequest) => loadOrder(database, request),
  };
}

/** The order `request` names, in the shape UpdateOrder's condition reads (`resource.user_id`); undefined if none. */
export async function loadOrder(database: Database, request: UpdateOrderRequest) {
  const [order] = await database.db.select().from(orders).where(eq(orders.id, request.orderId)).limit(1);
  return order && { id: order.id, user_id: order.userId, note: order.note };
}

/**
 * Registers the example services on a Connect router. Its rules need the
 * loaders of {@link exampleResources}: the auth layer refuses to start
 * without them.
 *
 * @example
 * ```ts
 * const t = await createTestAuth({ routes: exampleRoutes({ database }), resources: exampleResources({ database }), database });
 * ```
 */
export function exampleRoutes(options: ExampleOptions): (router: ConnectRouter) => void {
  const { db } = options.database;
  const notificationCount = options.notificationCount ?? 5;
  const notificationIntervalMs = options.notificationIntervalMs ?? 1000;

  const productById = async (id: number): Promise<Product> => {
    const [row] = await db.select().from(products).where(eq(products.id, id)).limit(1);
    if (row === undefined) throw new ConnectError(`product ${id} not found`, Code.NotFound);
    return row;
  };

  return (router) => {
    router.service(UserService, {
      async getUser(req, ctx) {
        const viewer = getUser(ctx);
        const user = await getUserById(db, req.userId);
        if (user === undefined) throw new ConnectError(`user ${req.userId} not found`, Code.NotFound);
        // The method is public, so an address is shown only to whom it may
        // concern. This is not an access check a condition could replace: a
        // condition decides whether the call proceeds, and everyone may look
        // a user up; what a permitted caller sees is the handler's to decide.
        const mayReadEmail = viewer !== undefined && (viewer.id === user.id || viewer.isStaff);
        return {
          user: { id: user.id, username: user.username, email: mayReadEmail ? user.email : "" },
          viewer: viewer?.username ?? "",
        };
      },
    });

    router.service(ProductService, {
      async getProduct(req) {
        return productMessage(await productById(req.productId));
      },
      async updateProduct(req) {
        const name = req.name.trim();
        if (name === "" || [...name].length > MAX_PRODUCT_NAME) {
          throw new ConnectError(`name must be 1 to ${MAX_PRODUCT_NAME} characters`, Code.InvalidArgument);
        }
        const [row] = await db
          .update(products)
          .set({ name, updatedAt: new Date() })
          .where(eq(products.id, req.productId))
          .returning()
          .catch((error: unknown) => {
            if (isUniqueViolation(error)) {
              throw new ConnectError(`another product is named "${name}"`, Code.AlreadyExists);
            }
            throw error;
          });
        if (row === undefined) throw new ConnectError(`product ${req.productId} not found`, Code.NotFound);
        return productMessage(row);
      },
    });

    // The generated helper hands every method its caller, typed as its rule allows.
    const account = implementGuardedAccountService({
      getProfile(_req, _ctx, user) {
        return profile(user);
      },
      async updateProfile(req, _ctx, user) {
        const email = req.email.trim();
        if ([...email].length > MAX_EMAIL || (email !== "" && !/^[^\s@]+@[^\s@]+$/.test(email))) {
          throw new ConnectError("email must be an address like name@example.com, or empty", Code.InvalidArgument);
        }
        const [row] = await db
          .update(schema.users)
          .set({ email })
          .where(eq(schema.users.id, user.id))
          .returning({ email: schema.users.email });
        // The user was deleted between the auth check and this update.
        if (row === undefined) throw new ConnectError("user not found", Code.NotFound);
        return { ...profile(user), email: row.email };
      },
      async *watchNotifications(_req, ctx, user) {
        for (let sequence = 1; sequence <= notificationCount; sequence++) {
          if (sequence > 1 && !(await pause(notificationIntervalMs, ctx))) return;
          yield {
            sequence,
            text: `notification ${sequence} of ${notificationCount} for ${user.username}`,
            sentAt: timestampNow(),
          };
        }
      },
    });
    router.service(AccountService, account);

    const admin = implementGuardedAdminService({
      async listUsers(_req, ctx) {
        // The rule already requires staff; checking again keeps this handler
        // safe should its rule be loosened by mistake, at no I/O cost.
        requireStaff(ctx);
        const rows = await db
          .select({ id: schema.users.id, username: schema.users.username, email: schema.users.email })
          .from(schema.users)
          .orderBy(asc(schema.users.id));
        return { users: rows };
      },
      async deleteUser(req, _ctx, caller) {
        if (req.userId === caller.id) {
          throw new ConnectError("you cannot delete your own account", Code.FailedPrecondition);
        }
        const user = await getUserById(db, req.userId);
        if (user === undefined) throw new ConnectError(`user ${req.userId} not found`, Code.NotFound);
        try {
          await deleteUser(db, user.username);
        } catch (error) {
          // Deleted by someone else since the lookup: the outcome the caller wanted.
          if (error instanceof StoreError && error.code === "USER_NOT_FOUND") {
            throw new ConnectError(`user ${req.userId} not found`, Code.NotFound);
          }
          throw error;
        }
        return {};
      },
    });
    router.service(AdminService, admin);

    router.service(OrderService, {
      // Who may change which order is the rule's condition (order.proto),
      // decided before this runs.
      async updateOrder(req) {
        if ([...req.note].length > MAX_NOTE) {
          throw new ConnectError(`note must be at most ${MAX_NOTE} characters`, Code.InvalidArgument);
        }
        const [row] = await db
          .update(orders)
          .set({ note: req.note, updatedAt: new Date() })
          .where(eq(orders.id, req.orderId))
          .returning();
        if (row === undefined) throw new ConnectError(`order ${req.orderId} not found`, Code.NotFound);
        return { order: orderMessage(row) };
      },
    });
  };
}

function productMessage(row: Product) {
  return { id: row.id, name: row.name, priceCents: row.priceCents };
}

function orderMessage(row: Order) {
  return { id: row.id, userId: row.userId, note: row.note };
}

function profile(user: Principal) {
  return {
    id: user.id,
    username: user.username,
    email: user.email,
    isStaff: user.isStaff,
    isSuperuser: user.isSuperuser,
    permissions: [...user.permissions].sort(),
  };
}

/** Waits `ms`; false when the call ended first (client cancel, deadline, server close). */
async function pause(ms: number, ctx: HandlerContext): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal: ctx.signal });
    return true;
  } catch {
    return false;
  }
}

/** PostgreSQL's unique_violation, possibly wrapped by Drizzle. */
function isUniqueViolation(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; depth < 3 && typeof e === "object" && e !== null; depth++) {
    if ((e as { code?: unknown }).code === "23505") return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
