#!/usr/bin/env node
// The `protoc-gen-protoguard` executable of the package (compiled to
// dist/src/plugin/bin.js): buf and protoc run it with a CodeGeneratorRequest
// on stdin.
import { runNodeJs } from "@bufbuild/protoplugin";
import { protocGenProtoguard } from "./plugin.js";

runNodeJs(protocGenProtoguard);
