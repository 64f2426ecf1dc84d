/**
 * Turns a rule's `condition` into something the interceptor can run: parsed,
 * type-checked against the method's request message, and planned by
 * `@bufbuild/cel` once, when the method's plan is made.
 */
import { createRegistry, type DescMessage, type DescMethod, type Message } from "@bufbuild/protobuf";
import { celEnv, CelScalar, isCelError, objectType, parse, plan, type CelEnv } from "@bufbuild/cel";
import { checkCondition, identifiersOf, messageType, PRINCIPAL_TYPE, type CondType } from "./check.js";
import { ProtoguardError } from "../errors.js";

/** What a condition is evaluated over. */
export interface ConditionBindings {
  /** The caller (see `celPrincipal`), or null for an anonymous caller of a public method. */
  readonly principal: object | null;
  /** The decoded request message; undefined for streaming requests, which conditions refuse at start-up. */
  readonly request: Message | undefined;
  /** What the method's resource loader returned; undefined without a loader. */
  readonly resource: unknown;
}

/** A condition ready to run; see `compileCondition`. */
export interface CompiledCondition {
  /** The expression as written in the rule. */
  readonly expression: string;
  /** What a refused caller is told: the rule's `condition_message`, or a generic one. */
  readonly message: string;
  /** Whether the expression reads `resource`, so a loader must be registered for the method. */
  readonly readsResource: boolean;
  /** `true`, `false`, or why it could not be evaluated (a missing key, a division by zero, …). */
  evaluate(bindings: ConditionBindings): boolean | ConditionError;
}

/** An evaluation that produced no bool; the call is refused (fail closed). */
export class ConditionError extends ProtoguardError<"CONDITION_NOT_BOOL"> {
  constructor(message: string, options?: ErrorOptions) {
    super("CONDITION_NOT_BOOL", message, options);
  }
}

/** The message of a refusal by a condition whose rule sets none. */
export const DEFAULT_CONDITION_MESSAGE = "the request does not meet the rule's condition";

/** Request message types of conditions are known only per method; environments are shared per type. */
const environments = new WeakMap<DescMessage, CelEnv>();

function environmentFor(input: DescMessage): CelEnv {
  let env = environments.get(input);
  if (env === undefined) {
    env = celEnv({
      registry: createRegistry(input),
      variables: { principal: CelScalar.DYN, request: objectType(input), resource: CelScalar.DYN },
    });
    environments.set(input, env);
  }
  return env;
}

/**
 * Parses `expression`, checks it against `method`'s request message and
 * plans it, or returns the problems found (each naming the expression).
 * A condition on a client- or bidi-streaming method is refused: its request
 * is a stream, not one message known when the call starts.
 */
export function compileCondition(
  expression: string,
  conditionMessage: string | undefined,
  method: DescMethod,
): CompiledCondition | { problems: string[] } {
  const quoted = `condition "${expression}"`;
  if (method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming") {
    return {
      problems: [
        `${quoted}: conditions are supported on unary and server-streaming methods only (the request of a ${method.methodKind.replace("_", "-")} call is a stream)`,
      ],
    };
  }
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(expression);
  } catch (error) {
    return { problems: [`${quoted} does not parse: ${error instanceof Error ? error.message : String(error)}`] };
  }
  const declarations = new Map<string, CondType>([
    ["principal", PRINCIPAL_TYPE],
    ["request", messageType(method.input)],
    ["resource", { k: "dyn" }],
  ]);
  try {
    checkCondition(parsed.expr, declarations);
  } catch (error) {
    return { problems: [`${quoted} is not valid: ${error instanceof Error ? error.message : String(error)}`] };
  }
  let run: ReturnType<typeof plan>;
  try {
    run = plan(environmentFor(method.input), parsed);
  } catch (error) {
    return { problems: [`${quoted} cannot be planned: ${error instanceof Error ? error.message : String(error)}`] };
  }
  const readsResource = identifiersOf(parsed.expr).has("resource");
  return Object.freeze({
    expression,
    message: conditionMessage || DEFAULT_CONDITION_MESSAGE,
    readsResource,
    evaluate(bindings: ConditionBindings) {
      let result: unknown;
      try {
        result = run(bindings as unknown as Parameters<typeof run>[0]);
      } catch (error) {
        return new ConditionError(`condition "${expression}" threw: ${String(error)}`, { cause: error });
      }
      if (result === true || result === false) return result;
      if (isCelError(result))
        return new ConditionError(`condition "${expression}": ${result.message}`, { cause: result });
      return new ConditionError(`condition "${expression}" evaluated to a ${typeof result}, not a bool`);
    },
  });
}
