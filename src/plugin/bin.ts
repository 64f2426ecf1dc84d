#!/usr/bin/env node
// The `protoc-gen-protoguard` executable of the package (compiled to
// dist/src/plugin/bin.js): buf and protoc run it with a CodeGeneratorRequest
// on stdin.
//
// @bufbuild/protoplugin is an optional peer: it comes with
// @bufbuild/protoc-gen-es, which every project generating code already has,
// and a server that never runs the plugin should not install TypeScript.
const protoplugin = await import("@bufbuild/protoplugin").catch((error: unknown) => {
  process.stderr.write(
    "protoc-gen-protoguard needs @bufbuild/protoplugin (it comes with @bufbuild/protoc-gen-es):\n" +
      "  npm install --save-dev @bufbuild/protoc-gen-es @bufbuild/protoplugin\n" +
      `(${error instanceof Error ? error.message : String(error)})\n`,
  );
  process.exit(1);
});
const { protocGenProtoguard } = await import("./plugin.js");
protoplugin.runNodeJs(protocGenProtoguard);
