// The example page (example/web) in a real browser: Debian's Chromium,
// driven by playwright-core, against the assembled server (startServer with
// the routes `protoguard serve` registers). It is the only test where the
// calls go through a browser's fetch, so it is where gRPC-Web and Connect
// from @connectrpc/connect-web meet the server's HTTP/1.1 side, the static
// page and the auth layer together.
import { after, before, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { chromium, type Browser, type Page } from "playwright-core";
import { migrateExample } from "../example/migrate.js";
import { CHANGE_PRODUCT, seedExample } from "../example/seed.js";
import { buildWebPage } from "../example/web/build.js";
import { servedRoutes } from "../src/cli/serve.js";
import { appAccess } from "../src/cli/app.js";
import exampleApp from "../example/app.js";
import { createKeyring, createTokenIssuer, createTokenVerifier } from "../src/exports/protoguard.js";
import { createUser, grantUserPermissions } from "../src/exports/store.js";
import { createPasswordHasher, enableTotp, generateTotp } from "../src/exports/auth-service.js";
import { loadConfig } from "../src/runtime/config.js";
import type { Runtime } from "../src/runtime/runtime.js";
import { startServer, type RunningServer } from "../src/server/serve.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/database.js";
import { chromiumPath, describeOr, skipWithoutChromium } from "./helpers/env.js";
import { TEST_SECRET as SECRET } from "./helpers/secrets.js";

const PASSWORD = "carol's long browser password";
const OTP_PASSWORD = "dave's long browser password";
/** Looked at by hand when the page changes; never committed. */
const SCREENSHOT = "/tmp/protoguard-browser.png";

/**
 * Flags for a root user in a container without a GPU, and nothing that
 * reaches the network on its own (no component updates, no sync): the only
 * traffic should be the page's.
 */
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A request the page sent to GetProfile, as the browser sent it. */
interface ProfileRequest {
  contentType: string;
  authorization: string;
}

describeOr(
  skipWithoutChromium,
  "the example page in Chromium (gRPC-Web and Connect from the browser)",
  { timeout: 240_000 },
  () => {
    let database: TestDatabase;
    let server: RunningServer;
    let browser: Browser;
    let page: Page;
    let totpSecret: string;
    const pageErrors: string[] = [];
    const profileRequests: ProfileRequest[] = [];

    before(
      async () => {
        // Build first: the test must drive the page of the current source,
        // not whatever an earlier build left in dist/.
        const built = await buildWebPage();
        database = await createTestDatabase();
        await migrateExample(database);
        await seedExample(database.db);
        const keyring = await createKeyring([{ alg: "HS256", secret: SECRET }]);
        const passwordHasher = createPasswordHasher({ scrypt: { logN: 10 } });
        const runtime: Runtime = {
          config: loadConfig({}),
          database,
          keyring,
          issuer: createTokenIssuer({ keyring }),
          verifier: createTokenVerifier({ keyring }),
          passwordHasher,
          // The test database is closed by the test, after the server.
          close: async () => {},
        };
        await createUser(database.db, {
          username: "carol",
          email: "carol@example.com",
          passwordHash: await passwordHasher.hash(PASSWORD),
        });
        await grantUserPermissions(database.db, "carol", [CHANGE_PRODUCT]);
        await createUser(database.db, { username: "dave", passwordHash: await passwordHasher.hash(OTP_PASSWORD) });
        totpSecret = (await enableTotp(database, "dave")).secret;

        server = await startServer({
          runtime,
          routes: servedRoutes(runtime, exampleApp),
          ...appAccess(exampleApp, runtime),
          port: 0,
          logger: pino({ level: "silent" }),
          staticDir: built.outDir,
          graceMs: 1000,
        });
        browser = await chromium.launch({ executablePath: chromiumPath!, args: CHROMIUM_ARGS, timeout: 60_000 });
        page = await browser.newPage({ viewport: { width: 1000, height: 760 } });
        page.setDefaultTimeout(20_000);
        page.on("pageerror", (error) => pageErrors.push(error.message));
        page.on("request", (request) => {
          if (!request.url().endsWith("/example.v1.AccountService/GetProfile")) return;
          void request.allHeaders().then((headers) =>
            profileRequests.push({
              contentType: headers["content-type"] ?? "",
              authorization: headers["authorization"] ?? "",
            }),
          );
        });
        const response = await page.goto(`${server.url}/`);
        assert.equal(response?.status(), 200);
        assert.equal(await page.title(), "protoguard example");
      },
      { timeout: 180_000 },
    );

    after(async () => {
      await browser?.close();
      await server?.close();
      await database?.close();
    });

    /** Fills the form and submits it; the page clears the password fields itself. */
    async function logIn(username: string, password: string, otp = ""): Promise<void> {
      await page.fill("#username", username);
      await page.fill("#password", password);
      await page.fill("#otp", otp);
      await page.click("#login");
      // The button is disabled while the call runs and enabled when it ended, either way.
      await page.waitForFunction(() => {
        const button = document.querySelector<HTMLButtonElement>("#login");
        const password = document.querySelector<HTMLInputElement>("#password");
        return button !== null && !button.disabled && password?.value === "";
      });
    }

    it("shows the code and message of a refused login, and allows no protected call", async () => {
      await logIn("carol", "not the password");
      await page.waitForSelector("#error:not([hidden])");
      assert.equal(await page.textContent("#error"), "unauthenticated: invalid credentials");
      assert.equal(await page.textContent("#session"), "Not signed in.");
      assert.equal(await page.isDisabled("#get-profile"), true);

      await logIn("nobody-by-this-name", PASSWORD);
      assert.equal(await page.textContent("#error"), "unauthenticated: invalid credentials");
    });

    it("logs in, then shows the caller's profile over gRPC-Web and over Connect", async () => {
      await logIn("carol", PASSWORD);
      assert.equal(await page.isHidden("#error"), true);
      assert.equal(await page.textContent("#session"), "Signed in as carol.");
      profileRequests.length = 0;
      await page.click("#get-profile");
      await page.waitForSelector('#grpcweb-result:not([data-state="idle"]):not([data-state="pending"])');
      await page.waitForSelector('#connect-result:not([data-state="idle"]):not([data-state="pending"])');

      for (const id of ["grpcweb-result", "connect-result"]) {
        const field = (name: string) => page.textContent(`#${id} dd[data-field="${name}"]`);
        assert.equal(await page.getAttribute(`#${id}`, "data-state"), "ok", (await page.textContent(`#${id}`)) ?? "");
        assert.equal(await field("username"), "carol");
        assert.equal(await field("email"), "carol@example.com");
        assert.equal(await field("permissions"), CHANGE_PRODUCT);
        assert.equal(await field("staff"), "no");
      }
      // The two results came over two protocols, each with the token: a page
      // that used one transport twice, or forgot the header, fails here.
      // The request listener reads headers asynchronously: give it a moment.
      for (let i = 0; i < 50 && profileRequests.length < 2; i++) await sleep(20);
      const contentTypes = profileRequests.map((r) => r.contentType).sort();
      assert.deepEqual(contentTypes, ["application/grpc-web+proto", "application/json"]);
      for (const request of profileRequests) assert.match(request.authorization, /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);

      await page.screenshot({ path: SCREENSHOT, fullPage: true });
    });

    it("needs the one-time code of a user with TOTP enabled, and accepts the current one", async () => {
      await logIn("dave", OTP_PASSWORD);
      assert.match((await page.textContent("#error")) ?? "", /^unauthenticated: /);
      // The earlier session ended with the failed login: no call with carol's token.
      assert.equal(await page.isDisabled("#get-profile"), true);

      await logIn("dave", OTP_PASSWORD, generateTotp(totpSecret));
      assert.equal(await page.isHidden("#error"), true, (await page.textContent("#error")) ?? "");
      assert.equal(await page.textContent("#session"), "Signed in as dave.");
      await page.click("#get-profile");
      await page.waitForSelector('#connect-result[data-state="ok"] dd[data-field="username"]:text-is("dave")');
      await page.waitForSelector('#grpcweb-result[data-state="ok"] dd[data-field="username"]:text-is("dave")');
      assert.equal(await page.textContent('#connect-result dd[data-field="permissions"]'), "none");
      assert.deepEqual(pageErrors, []);
    });
  },
);
