/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) over a file
 * registry, so that buf curl, grpcurl, Postman and friends can list and call
 * services without local copies of the .proto files.
 */
import { create, createFileRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescFile, FileRegistry, MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { ConnectRouter } from "@connectrpc/connect";
import {
  ServerReflection,
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
} from "../../../gen/grpc/reflection/v1/reflection_pb.js";
import type {
  ServerReflectionRequest,
  ServerReflectionResponse,
} from "../../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionAlpha,
  ServerReflectionRequestSchema as ServerReflectionRequestSchemaAlpha,
  ServerReflectionResponseSchema as ServerReflectionResponseSchemaAlpha,
} from "../../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { ServerReflectionRequest as ServerReflectionRequestAlpha } from "../../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_grpc_reflection_v1_reflection } from "../../../gen/grpc/reflection/v1/reflection_pb.js";
import { file_grpc_reflection_v1alpha_reflection } from "../../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** Options of {@link registerReflection}. */
export interface ReflectionOptions {
  /**
   * Every file a client may ask for, with its imports; build it with
   * {@link fileRegistryOf} from generated `file_*` descriptors. The files
   * of the listed services must be in it.
   */
  registry: FileRegistry;
  /**
   * Full names of the services to list, e.g. "guardtest.v1.GuardedService".
   * Include "grpc.reflection.v1.ServerReflection" (and have its file in the
   * registry) only if clients should see reflection itself listed.
   */
  services: string[];
}

/**
 * A file registry holding `files` and everything they import, reusing the
 * descriptors of generated code (`file_foo_v1_bar` exports). Listing a file
 * twice, or a file and one of its imports, is fine.
 */
export function fileRegistryOf(...files: DescFile[]): FileRegistry {
  const byName = new Map<string, DescFile>();
  const visit = (file: DescFile): void => {
    if (byName.has(file.proto.name)) return;
    byName.set(file.proto.name, file);
    file.dependencies.forEach(visit);
  };
  files.forEach(visit);
  return createFileRegistry(...files.map((file) => createFileRegistry(file.proto, (name) => byName.get(name))));
}

/** The files of the reflection services themselves, for {@link fileRegistryOf}. */
export const reflectionFiles: readonly DescFile[] = [
  file_grpc_reflection_v1_reflection,
  file_grpc_reflection_v1alpha_reflection,
];

/**
 * Serves grpc.reflection.v1.ServerReflection and its deprecated twin
 * grpc.reflection.v1alpha.ServerReflection on `router` (older grpcurl and
 * grpc-js tooling still ask for v1alpha first).
 *
 * Answers list_services with `options.services`; file_by_filename,
 * file_containing_symbol and file_containing_extension with the file and all
 * of its transitive imports, every time (clients cache; sending a file
 * twice is always safe, skipping one is only safe if the client kept it);
 * all_extension_numbers_of_type from the registry's extensions. Anything
 * not in the registry gets an error_response with NOT_FOUND, and the stream
 * stays open.
 *
 * @throws Error when a listed service is not in the registry, because a
 *   client would list it and then fail to describe it
 */
export function registerReflection(router: ConnectRouter, options: ReflectionOptions): void {
  const { registry } = options;
  const services = [...new Set(options.services)];
  for (const name of services) {
    if (!registry.getService(name)) {
      throw new Error(`reflection: service "${name}" is listed but its file is not in the registry`);
    }
  }
  const answer = (request: ServerReflectionRequest): ServerReflectionResponse =>
    create(ServerReflectionResponseSchema, {
      validHost: request.host,
      originalRequest: request,
      messageResponse: respond(registry, services, request),
    });

  router.service(ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) yield answer(request);
    },
  });
  // The v1alpha messages are wire-identical to v1: convert through bytes
  // rather than keep a second implementation.
  router.service(ServerReflectionAlpha, {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) {
        const response = answer(toV1(request));
        yield fromBinary(ServerReflectionResponseSchemaAlpha, toBinary(ServerReflectionResponseSchema, response));
      }
    },
  });
}

function toV1(request: ServerReflectionRequestAlpha): ServerReflectionRequest {
  return fromBinary(ServerReflectionRequestSchema, toBinary(ServerReflectionRequestSchemaAlpha, request));
}

type MessageResponse = NonNullable<MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"]>;

function respond(registry: FileRegistry, services: string[], request: ServerReflectionRequest): MessageResponse {
  const { messageRequest } = request;
  switch (messageRequest.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: { service: services.map((name) => ({ name })) },
      };
    case "fileByFilename": {
      const file = registry.getFile(messageRequest.value);
      return file ? files(file) : notFound(`file "${messageRequest.value}" not found`);
    }
    case "fileContainingSymbol": {
      const file = fileContainingSymbol(registry, messageRequest.value);
      return file ? files(file) : notFound(`symbol "${messageRequest.value}" not found`);
    }
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = messageRequest.value;
      const extendee = registry.getMessage(containingType);
      const extension = extendee && registry.getExtensionFor(extendee, extensionNumber);
      return extension
        ? files(extension.file)
        : notFound(`extension ${extensionNumber} of "${containingType}" not found`);
    }
    case "allExtensionNumbersOfType": {
      const typeName = messageRequest.value;
      if (!registry.getMessage(typeName)) return notFound(`type "${typeName}" not found`);
      const numbers: number[] = [];
      for (const desc of registry) {
        if (desc.kind === "extension" && desc.extendee.typeName === typeName) numbers.push(desc.number);
      }
      return {
        case: "allExtensionNumbersResponse",
        value: { baseTypeName: typeName, extensionNumber: numbers.sort((a, b) => a - b) },
      };
    }
    default:
      return {
        case: "errorResponse",
        value: { errorCode: Code.InvalidArgument, errorMessage: "no message_request set" },
      };
  }
}

/**
 * Resolves any symbol a client may ask about: types and services by their
 * full name, and members (methods, fields, oneofs, enum values) through
 * their parent, since the registry indexes only top-level-addressable types.
 */
function fileContainingSymbol(registry: FileRegistry, symbol: string): DescFile | undefined {
  const desc = registry.get(symbol);
  if (desc) return desc.file;
  const dot = symbol.lastIndexOf(".");
  if (dot < 0) return undefined;
  const parentName = symbol.slice(0, dot);
  const member = symbol.slice(dot + 1);
  const parent = registry.get(parentName);
  if (parent?.kind === "service" && parent.methods.some((m) => m.name === member)) return parent.file;
  if (
    parent?.kind === "message" &&
    (parent.fields.some((f) => f.name === member) || parent.oneofs.some((o) => o.name === member))
  ) {
    return parent.file;
  }
  // Enum values are scoped to the enum's parent (package or message), not to the enum.
  for (const candidate of registry) {
    if (
      candidate.kind === "enum" &&
      candidate.typeName.slice(0, candidate.typeName.lastIndexOf(".")) === parentName &&
      candidate.values.some((v) => v.name === member)
    ) {
      return candidate.file;
    }
  }
  return undefined;
}

/** The file first, then its transitive imports, each once. */
function files(file: DescFile): MessageResponse {
  const seen = new Set<string>();
  const out: Uint8Array[] = [];
  const visit = (f: DescFile): void => {
    if (seen.has(f.proto.name)) return;
    seen.add(f.proto.name);
    out.push(toBinary(FileDescriptorProtoSchema, f.proto));
    f.dependencies.forEach(visit);
  };
  visit(file);
  return { case: "fileDescriptorResponse", value: { fileDescriptorProto: out } };
}

function notFound(message: string): MessageResponse {
  return { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: message } };
}
