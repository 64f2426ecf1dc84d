/**
 * A static type checker for rule conditions. `@bufbuild/cel` 0.6 parses and
 * evaluates CEL but its checker types only constants and identifiers, so the
 * start-up check ("a condition that cannot work stops the server") is done
 * here, over the parsed AST: every identifier must be declared, every field
 * selected from `request` or `principal` must exist, operators must get
 * operands they have an overload for, and the whole must be a bool.
 *
 * It is deliberately no stricter than the evaluator: anything reaching
 * `dyn` (the resource, map values) is accepted and checked when it runs,
 * and numbers of different kinds may be compared, as CEL's heterogeneous
 * equality allows at run time.
 */
import { ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { unparse, type parse } from "@bufbuild/cel";
import { ProtoguardError } from "../errors.js";

/** The parsed form of an expression, as `parse` returns it. */
export type CelExpr = ReturnType<typeof parse>["expr"];

/** A CEL type, as far as the checker needs to know it. */
export type CondType =
  | { readonly k: "dyn" | "null" | "bool" | "int" | "uint" | "double" | "string" | "bytes" | "type" }
  | { readonly k: "timestamp" | "duration" }
  | { readonly k: "list"; readonly elem: CondType }
  | { readonly k: "map"; readonly key: CondType; readonly value: CondType }
  | { readonly k: "message"; readonly desc: DescMessage }
  | { readonly k: "record"; readonly name: string; readonly fields: Readonly<Record<string, CondType>> };

const t = {
  dyn: { k: "dyn" },
  null: { k: "null" },
  bool: { k: "bool" },
  int: { k: "int" },
  uint: { k: "uint" },
  double: { k: "double" },
  string: { k: "string" },
  bytes: { k: "bytes" },
  type: { k: "type" },
  timestamp: { k: "timestamp" },
  duration: { k: "duration" },
} as const satisfies Record<string, CondType>;

/** `principal` as conditions see it; the fields the issue names, in CEL's snake_case. */
export const PRINCIPAL_TYPE: CondType = {
  k: "record",
  name: "principal",
  fields: {
    id: t.int,
    username: t.string,
    kind: t.string,
    is_staff: t.bool,
    is_superuser: t.bool,
    permissions: { k: "list", elem: t.string },
    groups: { k: "list", elem: t.string },
    api_key: t.string,
  },
};

/** A problem found by {@link checkCondition}, naming the sub-expression at fault. */
class ConditionTypeError extends ProtoguardError<"CONDITION_TYPE"> {
  constructor(message: string) {
    super("CONDITION_TYPE", message);
  }
}

/** Identifiers of a condition and their types. */
export type Declarations = ReadonlyMap<string, CondType>;

/** Types `expr` under `vars` and returns its type; throws {@link ConditionTypeError}. */
export function checkCondition(expr: CelExpr, vars: Declarations): CondType {
  const type = typeOf(expr, [vars]);
  if (type.k !== "bool" && type.k !== "dyn") {
    throw new ConditionTypeError(`the condition must be a bool, this one is ${show(type)}`);
  }
  return type;
}

/** Every top-level identifier `expr` reads (not comprehension variables). */
export function identifiersOf(
  expr: CelExpr,
  into = new Set<string>(),
  bound: ReadonlySet<string> = new Set(),
): Set<string> {
  const kind = expr.exprKind;
  switch (kind.case) {
    case "identExpr":
      if (!bound.has(kind.value.name)) into.add(kind.value.name);
      break;
    case "selectExpr":
      if (kind.value.operand) identifiersOf(kind.value.operand, into, bound);
      break;
    case "callExpr":
      if (kind.value.target) identifiersOf(kind.value.target, into, bound);
      for (const arg of kind.value.args) identifiersOf(arg, into, bound);
      break;
    case "listExpr":
      for (const e of kind.value.elements) identifiersOf(e, into, bound);
      break;
    case "structExpr":
      for (const entry of kind.value.entries) {
        if (entry.keyKind.case === "mapKey") identifiersOf(entry.keyKind.value, into, bound);
        if (entry.value) identifiersOf(entry.value, into, bound);
      }
      break;
    case "comprehensionExpr": {
      const c = kind.value;
      if (c.iterRange) identifiersOf(c.iterRange, into, bound);
      if (c.accuInit) identifiersOf(c.accuInit, into, bound);
      const inner = new Set([...bound, c.iterVar, c.iterVar2, c.accuVar]);
      for (const e of [c.loopCondition, c.loopStep, c.result]) if (e) identifiersOf(e, into, inner);
      break;
    }
  }
  return into;
}

/** The CEL type of a field of a request message. */
function fieldType(field: DescField): CondType {
  switch (field.fieldKind) {
    case "scalar":
      return scalarType(field.scalar);
    case "enum":
      return t.int;
    case "message":
      return messageType(field.message);
    case "list":
      return {
        k: "list",
        elem:
          field.listKind === "scalar"
            ? scalarType(field.scalar)
            : field.listKind === "enum"
              ? t.int
              : messageType(field.message),
      };
    case "map":
      return {
        k: "map",
        key: scalarType(field.mapKey),
        value:
          field.mapKind === "scalar"
            ? scalarType(field.scalar)
            : field.mapKind === "enum"
              ? t.int
              : messageType(field.message),
      };
  }
}

/** The CEL type of a message: well-known types are CEL values, not messages. */
export function messageType(desc: DescMessage): CondType {
  switch (desc.typeName) {
    case "google.protobuf.Timestamp":
      return t.timestamp;
    case "google.protobuf.Duration":
      return t.duration;
    // Wrappers read as their value or null, Struct/Value/Any as whatever they
    // hold: known only at run time.
    case "google.protobuf.Any":
    case "google.protobuf.Struct":
    case "google.protobuf.Value":
    case "google.protobuf.ListValue":
    case "google.protobuf.BoolValue":
    case "google.protobuf.BytesValue":
    case "google.protobuf.DoubleValue":
    case "google.protobuf.FloatValue":
    case "google.protobuf.Int32Value":
    case "google.protobuf.Int64Value":
    case "google.protobuf.StringValue":
    case "google.protobuf.UInt32Value":
    case "google.protobuf.UInt64Value":
      return t.dyn;
  }
  return { k: "message", desc };
}

function scalarType(scalar: ScalarType): CondType {
  switch (scalar) {
    case ScalarType.BOOL:
      return t.bool;
    case ScalarType.STRING:
      return t.string;
    case ScalarType.BYTES:
      return t.bytes;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return t.double;
    case ScalarType.UINT32:
    case ScalarType.UINT64:
    case ScalarType.FIXED32:
    case ScalarType.FIXED64:
      return t.uint;
    default:
      return t.int;
  }
}

/** A type as CEL writes it, for messages. */
export function show(type: CondType): string {
  switch (type.k) {
    case "list":
      return `list(${show(type.elem)})`;
    case "map":
      return `map(${show(type.key)}, ${show(type.value)})`;
    case "message":
      return type.desc.typeName;
    case "record":
      return type.name;
    case "null":
      return "null_type";
    case "timestamp":
      return "google.protobuf.Timestamp";
    case "duration":
      return "google.protobuf.Duration";
    default:
      return type.k;
  }
}

const NUMERIC = new Set(["int", "uint", "double"]);
const ORDERED = new Set(["int", "uint", "double", "string", "bytes", "bool", "timestamp", "duration"]);
const TYPE_NAMES = new Set(["int", "uint", "double", "string", "bytes", "bool", "list", "map", "null_type", "type"]);
const CONVERSIONS: Readonly<Record<string, CondType>> = {
  int: t.int,
  uint: t.uint,
  double: t.double,
  string: t.string,
  bytes: t.bytes,
  bool: t.bool,
  dyn: t.dyn,
  type: t.type,
  timestamp: t.timestamp,
  duration: t.duration,
};
const STRING_TESTS = new Set(["contains", "startsWith", "endsWith", "matches"]);
const TIME_GETTERS = new Set([
  "getFullYear",
  "getMonth",
  "getDate",
  "getDayOfMonth",
  "getDayOfWeek",
  "getDayOfYear",
  "getHours",
  "getMinutes",
  "getSeconds",
  "getMilliseconds",
]);

function isDyn(type: CondType): boolean {
  return type.k === "dyn";
}

/** Whether `a == b` can be true for some values: CEL rejects the rest at check time. */
function comparable(a: CondType, b: CondType): boolean {
  if (isDyn(a) || isDyn(b)) return true;
  if (NUMERIC.has(a.k) && NUMERIC.has(b.k)) return true;
  if (a.k === "null" || b.k === "null") {
    const other = a.k === "null" ? b : a;
    return (
      other.k === "null" ||
      other.k === "message" ||
      other.k === "record" ||
      other.k === "timestamp" ||
      other.k === "duration"
    );
  }
  if (a.k !== b.k) return false;
  if (a.k === "list" && b.k === "list") return comparable(a.elem, b.elem);
  if (a.k === "map" && b.k === "map") return comparable(a.key, b.key) && comparable(a.value, b.value);
  if (a.k === "message" && b.k === "message") return a.desc.typeName === b.desc.typeName;
  return true;
}

/** The common type of two branches or list elements: the type when they agree, else dyn. */
function join(a: CondType, b: CondType): CondType {
  return a.k === b.k && show(a) === show(b) ? a : t.dyn;
}

function typeOf(expr: CelExpr, scopes: readonly Declarations[]): CondType {
  const fail = (message: string): never => {
    throw new ConditionTypeError(`in \`${unparseSafely(expr)}\`: ${message}`);
  };
  const kind = expr.exprKind;
  switch (kind.case) {
    case "constExpr": {
      const c = kind.value.constantKind;
      switch (c.case) {
        case "boolValue":
          return t.bool;
        case "int64Value":
          return t.int;
        case "uint64Value":
          return t.uint;
        case "doubleValue":
          return t.double;
        case "stringValue":
          return t.string;
        case "bytesValue":
          return t.bytes;
        case "nullValue":
          return t.null;
        default:
          return t.dyn;
      }
    }
    case "identExpr": {
      const name = kind.value.name;
      for (let i = scopes.length - 1; i >= 0; i--) {
        const found = scopes[i]!.get(name);
        if (found !== undefined) return found;
      }
      if (TYPE_NAMES.has(name)) return t.type;
      return fail(`undeclared reference to '${name}' (declared: ${[...scopes[0]!.keys()].join(", ")})`);
    }
    case "selectExpr": {
      const { operand, field, testOnly } = kind.value;
      if (operand === undefined) return fail("select without operand");
      const of = typeOf(operand, scopes);
      const selected = selectField(of, field, fail);
      return testOnly ? t.bool : selected;
    }
    case "listExpr": {
      let elem: CondType | undefined;
      for (const e of kind.value.elements) {
        const et = typeOf(e, scopes);
        elem = elem === undefined ? et : join(elem, et);
      }
      return { k: "list", elem: elem ?? t.dyn };
    }
    case "structExpr": {
      if (kind.value.messageName !== "") return fail("building messages is not supported in conditions");
      let key: CondType | undefined;
      let value: CondType | undefined;
      for (const entry of kind.value.entries) {
        if (entry.keyKind.case !== "mapKey" || entry.value === undefined) return fail("malformed map literal");
        const kt = typeOf(entry.keyKind.value, scopes);
        const vt = typeOf(entry.value, scopes);
        key = key === undefined ? kt : join(key, kt);
        value = value === undefined ? vt : join(value, vt);
      }
      return { k: "map", key: key ?? t.dyn, value: value ?? t.dyn };
    }
    case "comprehensionExpr": {
      const c = kind.value;
      if (c.iterRange === undefined || c.accuInit === undefined || c.result === undefined) {
        return fail("malformed comprehension");
      }
      const range = typeOf(c.iterRange, scopes);
      const vars = new Map<string, CondType>();
      if (range.k === "list") {
        if (c.iterVar2) {
          vars.set(c.iterVar, t.int).set(c.iterVar2, range.elem);
        } else vars.set(c.iterVar, range.elem);
      } else if (range.k === "map") {
        vars.set(c.iterVar, range.key);
        if (c.iterVar2) vars.set(c.iterVar2, range.value);
      } else if (range.k === "dyn") {
        vars.set(c.iterVar, t.dyn);
        if (c.iterVar2) vars.set(c.iterVar2, t.dyn);
      } else {
        return fail(`cannot iterate over ${show(range)}`);
      }
      const accu = typeOf(c.accuInit, scopes);
      const inner = [...scopes, vars.set(c.accuVar, accu)];
      if (c.loopCondition) typeOf(c.loopCondition, inner);
      if (c.loopStep) typeOf(c.loopStep, inner);
      return typeOf(c.result, [...scopes, new Map([[c.accuVar, accu]])]);
    }
    case "callExpr": {
      const { function: name, target, args } = kind.value;
      const argTypes = args.map((a) => typeOf(a, scopes));
      const targetType = target === undefined ? undefined : typeOf(target, scopes);
      return callType(name, targetType, argTypes, fail);
    }
    default:
      return fail("unsupported expression");
  }
}

function selectField(of: CondType, field: string, fail: (message: string) => never): CondType {
  switch (of.k) {
    case "dyn":
      return t.dyn;
    case "map":
      if (of.key.k !== "string" && of.key.k !== "dyn") return fail(`map keys are ${show(of.key)}, not field names`);
      return of.value;
    case "record": {
      const found = of.fields[field];
      if (found === undefined) {
        return fail(`${of.name} has no field '${field}' (fields: ${Object.keys(of.fields).join(", ")})`);
      }
      return found;
    }
    case "message": {
      const found = of.desc.fields.find((f) => f.name === field);
      if (found === undefined) {
        const names = of.desc.fields.map((f) => f.name);
        return fail(
          `message ${of.desc.typeName} has no field '${field}' (fields: ${names.length > 0 ? names.join(", ") : "none"})`,
        );
      }
      return fieldType(found);
    }
    default:
      return fail(`cannot select field '${field}' from ${show(of)}`);
  }
}

function callType(
  name: string,
  target: CondType | undefined,
  args: readonly CondType[],
  fail: (message: string) => never,
): CondType {
  const noOverload = (): never =>
    fail(
      `no overload of ${name.replaceAll("_", " ").trim() || name} for (${[...(target ? [target] : []), ...args].map(show).join(", ")})`,
    );
  const boolish = (x: CondType) => x.k === "bool" || isDyn(x);
  const [a, b] = args;
  switch (name) {
    case "_&&_":
    case "_||_":
      return args.every(boolish) ? t.bool : noOverload();
    case "!_":
    case "@not_strictly_false":
      return boolish(a!) ? t.bool : noOverload();
    case "_==_":
    case "_!=_":
      return comparable(a!, b!) ? t.bool : noOverload();
    case "_<_":
    case "_<=_":
    case "_>_":
    case "_>=_": {
      if (isDyn(a!) || isDyn(b!)) return t.bool;
      if (NUMERIC.has(a!.k) && NUMERIC.has(b!.k)) return t.bool;
      return a!.k === b!.k && ORDERED.has(a!.k) ? t.bool : noOverload();
    }
    case "_?_:_":
      return boolish(a!) ? join(b!, args[2]!) : noOverload();
    case "-_":
      return isDyn(a!) || a!.k === "int" || a!.k === "double" || a!.k === "duration" ? a! : noOverload();
    case "_+_":
    case "_-_":
    case "_*_":
    case "_/_":
    case "_%_":
      return arithmetic(name, a!, b!, noOverload);
    case "_[_]": {
      if (isDyn(a!)) return t.dyn;
      if (a!.k === "list") return isDyn(b!) || b!.k === "int" || b!.k === "uint" ? a.elem : noOverload();
      if (a!.k === "map") return comparable(a.key, b!) ? a.value : noOverload();
      return noOverload();
    }
    case "@in": {
      if (isDyn(b!)) return t.bool;
      if (b!.k === "list") return comparable(a!, b.elem) ? t.bool : noOverload();
      if (b!.k === "map") return comparable(a!, b.key) ? t.bool : noOverload();
      return noOverload();
    }
    case "size": {
      const of = target ?? a;
      if (of === undefined || args.length !== (target ? 0 : 1)) return noOverload();
      return isDyn(of) || ["string", "bytes", "list", "map"].includes(of.k) ? t.int : noOverload();
    }
  }
  if (STRING_TESTS.has(name)) {
    if (target === undefined || args.length !== 1) return noOverload();
    return (target.k === "string" || isDyn(target)) && (a!.k === "string" || isDyn(a!)) ? t.bool : noOverload();
  }
  if (TIME_GETTERS.has(name)) {
    if (target === undefined || args.length > 1) return noOverload();
    return isDyn(target) || target.k === "timestamp" || target.k === "duration" ? t.int : noOverload();
  }
  const conversion = CONVERSIONS[name];
  if (conversion !== undefined && target === undefined && args.length === 1) return conversion;
  return fail(`unknown function '${name}'`);
}

function arithmetic(name: string, a: CondType, b: CondType, noOverload: () => never): CondType {
  if (isDyn(a) || isDyn(b)) return t.dyn;
  if (NUMERIC.has(a.k) && a.k === b.k) return name === "_%_" && a.k === "double" ? noOverload() : a;
  if (name === "_+_") {
    if (a.k === b.k && (a.k === "string" || a.k === "bytes" || a.k === "duration")) return a;
    if (a.k === "list" && b.k === "list") return { k: "list", elem: join(a.elem, b.elem) };
    if ((a.k === "timestamp" && b.k === "duration") || (a.k === "duration" && b.k === "timestamp")) return t.timestamp;
  }
  if (name === "_-_") {
    if (a.k === "timestamp" && b.k === "timestamp") return t.duration;
    if (a.k === "timestamp" && b.k === "duration") return t.timestamp;
    if (a.k === "duration" && b.k === "duration") return t.duration;
  }
  return noOverload();
}

function unparseSafely(expr: CelExpr): string {
  try {
    return unparse(expr);
  } catch {
    return "…";
  }
}
