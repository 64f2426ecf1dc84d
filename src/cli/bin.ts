#!/usr/bin/env node
// The `protoguard` executable of the package (compiled to dist/src/cli/bin.js).
import { runMain } from "./main.js";

await runMain();
