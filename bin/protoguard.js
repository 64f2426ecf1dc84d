#!/usr/bin/env node
// The CLI is written in TypeScript; tsx's loader lets the package run it
// without a build step.
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
