/**
 * Reading a Buf image or a FileDescriptorSet (`buf build -o FILE`, binary or
 * `.json`; `-` for standard input) into the services it declares, so
 * `protoguard policy --image` reports a team's own services without their
 * code.
 */
import { readFile } from "node:fs/promises";
import { createFileRegistry, createRegistry, fromBinary, fromJsonString, type DescService } from "@bufbuild/protobuf";
import {
  file_google_protobuf_descriptor,
  FileDescriptorSetSchema,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { file_protoguard_v1_options } from "../../gen/protoguard/v1/options_pb.js";
import { CliError } from "./errors.js";

const OPTION_REGISTRY = createRegistry(file_protoguard_v1_options);

/**
 * Files an image built with `--exclude-imports` may leave out but its files
 * still import: supplied from what protoguard itself was generated with.
 */
const KNOWN_IMPORTS = new Map(
  [file_google_protobuf_descriptor, file_protoguard_v1_options].map((file) => [file.proto.name, file.proto]),
);

/**
 * Every service declared in the image's own files, in file order. Files a Buf
 * image marks as imports (dependencies, not the module's own) are left out;
 * a plain FileDescriptorSet says nothing of the kind, so all its files count.
 *
 * @param path a file path, or `-` for standard input.
 * @param stdin read when `path` is `-`. Default: the process's standard input.
 * @throws {CliError} when the file cannot be read or is not a descriptor set.
 */
export async function readImageServices(
  path: string,
  stdin: () => Promise<Uint8Array> = readStdin,
): Promise<DescService[]> {
  let bytes: Uint8Array;
  try {
    bytes = path === "-" ? await stdin() : await readFile(path);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new CliError(`--image ${path} cannot be read: ${reason}`, { cause: error });
  }
  const json = path.endsWith(".json") || (bytes.length > 0 && bytes[0] === 0x7b); // "{"
  let files: FileDescriptorProto[];
  try {
    const set = json
      ? fromJsonString(FileDescriptorSetSchema, new TextDecoder().decode(bytes), {
          // Rules are extensions of MethodOptions and ServiceOptions: JSON
          // names them, so the reader must know them to keep them.
          registry: OPTION_REGISTRY,
          ignoreUnknownFields: true,
        })
      : fromBinary(FileDescriptorSetSchema, bytes);
    files = set.file;
  } catch (error) {
    throw new CliError(
      `--image ${path} is not a Buf image or FileDescriptorSet (make one with "npx buf build -o FILE")`,
      { cause: error },
    );
  }
  if (files.length === 0) throw new CliError(`--image ${path} contains no files`);
  // Supply what the image imports but left out, and what those import in
  // turn, dependencies first.
  let supplied: FileDescriptorProto[] = [];
  for (;;) {
    const present = new Set([...supplied, ...files].map((f) => f.name));
    const missing = [...supplied, ...files]
      .flatMap((f) => f.dependency)
      .filter((name) => !present.has(name) && KNOWN_IMPORTS.has(name));
    if (missing.length === 0) break;
    supplied = [...new Set(missing)].map((name) => KNOWN_IMPORTS.get(name)!).concat(supplied);
  }
  let registry;
  try {
    registry = createFileRegistry({ ...emptySet(), file: [...supplied, ...files] });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CliError(`--image ${path} cannot be resolved (build it without --exclude-imports): ${reason}`, {
      cause: error,
    });
  }
  const services: DescService[] = [];
  for (const file of files) {
    if (isBufImport(file)) continue;
    const desc = registry.getFile(file.name);
    if (desc !== undefined) services.push(...desc.services);
  }
  return services;
}

/** Buf's `ImageFileExtension` (field 8042 of an image file), whose field 1 is `is_import`. */
const BUF_IMAGE_EXTENSION = 8042;

function isBufImport(file: FileDescriptorProto): boolean {
  for (const unknown of file.$unknown ?? []) {
    if (unknown.no !== BUF_IMAGE_EXTENSION || unknown.wireType !== WireType.LengthDelimited) continue;
    try {
      const extension = new BinaryReader(new BinaryReader(unknown.data).bytes());
      while (extension.pos < extension.len) {
        const [no, wireType] = extension.tag();
        if (no === 1 && wireType === WireType.Varint) return extension.bool();
        extension.skip(wireType);
      }
    } catch {
      // Not Buf's extension after all: treat the file as the image's own.
    }
  }
  return false;
}

function emptySet() {
  return fromBinary(FileDescriptorSetSchema, new Uint8Array());
}

async function readStdin(): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
