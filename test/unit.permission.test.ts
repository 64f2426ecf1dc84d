/** Unit tests for src/permission.ts: Django's `app_label.codename` strings. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isPermissionString, parsePermission } from "../src/permission.js";

describe("permission strings", () => {
  it("accepts app_label.codename made of identifiers", () => {
    for (const value of ["shop.view_product", "_a._b", "A1.b2", `${"a".repeat(100)}.${"b".repeat(100)}`]) {
      assert.equal(isPermissionString(value), true, value);
    }
  });

  it("refuses typos that would never match", () => {
    for (const value of [
      "",
      "shop",
      "shop.",
      ".view",
      "a.b.c",
      "shop .view",
      "1shop.view",
      "shop.1view",
      "shop-x.view",
      `${"a".repeat(101)}.b`,
    ]) {
      assert.equal(isPermissionString(value), false, value);
    }
  });

  it("parsePermission splits at the dot and throws RangeError otherwise", () => {
    assert.deepEqual(parsePermission("shop.view_product"), { appLabel: "shop", codename: "view_product" });
    assert.throws(() => parsePermission("a.b.c"), RangeError);
  });
});
