/**
 * The example application with a static page, for serve-matrix.test.ts:
 * `protoguard serve --routes test/helpers/matrix-app.ts` serves the example's
 * services (UpdateOrder's condition with its resource loader) and the
 * directory named by MATRIX_STATIC_DIR under `/`. node:cluster re-runs the
 * same command in every worker, which imports this module again.
 */
import exampleApp from "../../example/app.js";
import { defineServeApp } from "../../src/exports/server.js";

const staticDir = process.env["MATRIX_STATIC_DIR"];

export default defineServeApp({
  ...exampleApp,
  routes: (router, runtime) => exampleApp.routes(router, runtime),
  ...(exampleApp.prepare !== undefined && { prepare: (runtime) => exampleApp.prepare!(runtime) }),
  ...(staticDir !== undefined && { staticDir }),
});
