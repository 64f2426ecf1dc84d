/**
 * The `protoguard` command of this repository (`npm run protoguard`,
 * `npm start`): the package's CLI with the example application as the
 * default for `serve` and `policy`, so the demo needs no `--routes`.
 */
import { runMain } from "../src/cli/main.js";

await runMain({ defaultApp: async () => (await import("./app.js")).default });
