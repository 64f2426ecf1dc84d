/**
 * `protoguard who-can METHOD`: the rule in force for one method (read from the same descriptors
 * as `protoguard policy`: a Buf image, or what `serve` would register), and the users, groups
 * and service accounts of the configured database whose grants satisfy it.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { createAuthPolicy, PolicyError } from "../policy/policy.js";
import { SERVER_SERVICES } from "../server/services/server-services.js";
import { whoCan, type WhoCanResult } from "../store/who-can.js";
import { parseArgs, expectPositionals } from "./args.js";
import { CliError, EXIT_OK, UsageError } from "./errors.js";
import { readImageServices } from "./image.js";
import { PROGRAM, withRuntime, type Command } from "./io.js";
import { resolveApp, servedServices } from "./serve.js";

const FLAGS = { image: "string", routes: "string", json: "boolean" } as const;

const USAGE = [
  `usage: ${PROGRAM} who-can <method> [--image FILE | --routes MODULE] [--json]`,
  "  Prints the rule in force for <method> (/package.Service/Method or package.Service/Method)",
  "  and who satisfies it in the database the environment configures: active users, groups",
  "  whose permissions cover the rule's, and active service accounts. A condition is named",
  '  as "and only if <CEL>": it is checked per call, so who is listed may call only when it holds.',
  "  --image   read the method from a Buf image (npx buf build -o FILE) instead of the served app",
  "  --routes  a module exporting a ServeApp: the method as serve --routes would serve it",
  "  --json    one JSON object: procedure, rule, public, users, groups, service_accounts,",
  "            member_requirements, conditions",
];

/** `/package.Service/Method` for either accepted spelling, or undefined when it is neither. */
function procedureOf(text: string): string | undefined {
  const match = /^\/?([A-Za-z_][\w.]*)\/([A-Za-z_]\w*)$/.exec(text.trim());
  return match === null ? undefined : `/${match[1]}/${match[2]}`;
}

function findMethod(services: readonly DescService[], procedure: string): DescMethod | undefined {
  return services.flatMap((s) => s.methods).find((m) => `/${m.parent.typeName}/${m.name}` === procedure);
}

/** The answer as lines of text. */
export function formatWhoCan(procedure: string, result: WhoCanResult, server = false): string[] {
  const names = (values: readonly string[]) => (values.length === 0 ? "(none)" : values.join(", "));
  const lines = [`${procedure}`, `rule: ${result.rule}${server ? " (served by the server itself)" : ""}`];
  if (result.public) {
    lines.push("anyone may call, signed in or not");
  } else {
    lines.push(`users:            ${names(result.users)}`);
    lines.push(
      `groups:           ${names(result.groups)}${
        result.memberRequirements.length === 0
          ? ""
          : ` (members must also be ${result.memberRequirements.join(" and ")})`
      }`,
    );
    lines.push(`service accounts: ${names(result.serviceAccounts)}`);
  }
  lines.push(...result.conditions);
  return lines;
}

/**
 * `protoguard who-can METHOD`: exit 0 with the answer; 1 for a method that is not served (or
 * whose rule is malformed); 2 for a bad command line.
 */
export const whoCanCommand: Command = async (args, env, io, options) => {
  try {
    const parsed = parseArgs(args, FLAGS);
    if (parsed.help) {
      for (const line of USAGE) io.out(line);
      return EXIT_OK;
    }
    expectPositionals(parsed.positionals, 1, 1, "<method>");
    const { image, routes } = parsed.flags;
    if (image !== undefined && routes !== undefined) throw new UsageError("--image and --routes cannot be combined");
    const procedure = procedureOf(parsed.positionals[0]!);
    if (procedure === undefined) {
      throw new UsageError(`invalid method ${JSON.stringify(parsed.positionals[0])}: expected /package.Service/Method`);
    }
    const services =
      image !== undefined
        ? await readImageServices(image)
        : servedServices(await resolveApp(routes, options?.defaultApp));
    const byServer = findMethod(SERVER_SERVICES, procedure) !== undefined && image === undefined;
    const method = findMethod(services, procedure);
    if (method === undefined && !byServer) {
      throw new CliError(
        `no method ${procedure} among the ${image !== undefined ? "services of the image" : "served services"} (see "${PROGRAM} policy")`,
      );
    }
    let rule;
    try {
      rule = method === undefined ? ({ kind: "public" } as const) : createAuthPolicy().planFor(method).rule;
    } catch (error) {
      if (error instanceof PolicyError) {
        throw new CliError(`${procedure} has a malformed rule: ${error.problems.join("; ")}`, { cause: error });
      }
      throw error;
    }
    const result = await withRuntime(env, io, (runtime) => whoCan(runtime.database.db, rule));
    if (parsed.flags.json === true) {
      io.out(
        JSON.stringify(
          {
            procedure,
            rule: result.rule,
            public: result.public,
            users: result.users,
            groups: result.groups,
            service_accounts: result.serviceAccounts,
            member_requirements: result.memberRequirements,
            conditions: result.conditions,
          },
          null,
          2,
        ),
      );
    } else {
      for (const line of formatWhoCan(procedure, result, method === undefined)) io.out(line);
    }
    return EXIT_OK;
  } catch (error) {
    if (error instanceof UsageError) error.command ??= "who-can";
    throw error;
  }
};
