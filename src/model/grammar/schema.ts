// JSON Schema → the grammar's value nodes. Owns which schema features constrained decoding
// supports: object (properties, required, additionalProperties), string, number, integer,
// boolean, null, array (items, minItems, maxItems), enum, const, anyOf/oneOf, allOf of one
// schema, type arrays and `nullable`, $ref into $defs/definitions (recursion included).
// minimum/maximum only where the generated numbers respect them anyway (zod's ±2^53 integer
// bounds, no exponent then) or as a sign (minimum 0). Anything else that constrains values
// (pattern, format, minLength, multipleOf, …) is rejected with a
// `SchemaError` naming the keyword, so the proxy answers 400 instead of producing output that
// might not validate. Annotations (title, description, default, examples, …) are ignored.

/** A value the grammar generates. Nodes form a graph (recursive schemas point back). */
export type ValueNode =
  | { kind: "string"; id: number }
  | { kind: "number"; id: number; integer: boolean; negative: boolean; exponent: boolean }
  | { kind: "literal"; id: number; values: Uint8Array[] }
  | { kind: "object"; id: number; props: ObjectProp[]; free: ValueNode | null }
  | { kind: "array"; id: number; items: ValueNode; minItems: number; maxItems: number }
  | { kind: "union"; id: number; options: ValueNode[] }
  | { kind: "ref"; id: number; target: ValueNode | null };

export interface ObjectProp {
  /** The key as it is written, quotes included (`"name"`). */
  key: Uint8Array;
  name: string;
  node: ValueNode;
  required: boolean;
}

/** A schema feature constrained decoding cannot enforce (or a malformed schema). */
export class SchemaError extends Error {
  constructor(
    message: string,
    /** JSON pointer of the offending schema, e.g. `#/properties/age`. */
    readonly path: string,
  ) {
    super(`${message} (at ${path})`);
    this.name = "SchemaError";
  }
}

const encoder = new TextEncoder();
const IGNORED = new Set([
  "title",
  "description",
  "default",
  "examples",
  "$schema",
  "$id",
  "$comment",
  "deprecated",
  "readOnly",
  "writeOnly",
  "strict",
  "$defs",
  "definitions",
]);
const HANDLED = new Set([
  "type",
  "properties",
  "required",
  "additionalProperties",
  "items",
  "minItems",
  "maxItems",
  "enum",
  "const",
  "anyOf",
  "oneOf",
  "allOf",
  "$ref",
  "nullable",
  "minimum",
  "maximum",
]);
/** Generated numbers have at most 15 integer digits: |x| < 1e15 needs no further check. */
const GENERATED_BOUND = 1e15;
const TYPES = new Set(["string", "number", "integer", "boolean", "null", "object", "array"]);

type Json = Record<string, unknown>;

/** Compiles a JSON schema into value nodes; `{}` or `true` is any JSON value. */
export class SchemaCompiler {
  private nextId = 0;
  private readonly refs = new Map<string, ValueNode>();
  private readonly root: unknown;

  constructor(root: unknown) {
    this.root = root;
  }

  /** The node for the whole schema. */
  compileRoot(): ValueNode {
    return this.compile(this.root, "#");
  }

  /** Any JSON value; `object` restricts it to an object (response_format json_object). */
  anyValue(objectOnly = false): ValueNode {
    const any: ValueNode = { kind: "union", id: this.id(), options: [] };
    const obj: ValueNode = { kind: "object", id: this.id(), props: [], free: any };
    any.options.push(
      { kind: "string", id: this.id() },
      { kind: "number", id: this.id(), integer: false, negative: true, exponent: true },
      obj,
      { kind: "array", id: this.id(), items: any, minItems: 0, maxItems: Number.POSITIVE_INFINITY },
      this.literal([true, false, null]),
    );
    return objectOnly ? obj : any;
  }

  /** A node that is exactly one of `values` (serialised as JSON). */
  literal(values: unknown[]): ValueNode {
    return { kind: "literal", id: this.id(), values: values.map((v) => encoder.encode(JSON.stringify(v))) };
  }

  private id(): number {
    return this.nextId++;
  }

  compile(schema: unknown, path: string): ValueNode {
    if (schema === true) return this.anyValue();
    if (schema === false) throw new SchemaError("a `false` schema allows no value", path);
    if (typeof schema !== "object" || schema === null || Array.isArray(schema)) {
      throw new SchemaError("a schema must be an object or a boolean", path);
    }
    const s = schema as Json;
    for (const key of Object.keys(s)) {
      if (!IGNORED.has(key) && !HANDLED.has(key)) {
        throw new SchemaError(`JSON schema keyword \`${key}\` is not supported by constrained decoding`, path);
      }
    }
    if (s.$ref !== undefined) {
      if (Object.keys(s).some((k) => HANDLED.has(k) && k !== "$ref")) {
        throw new SchemaError("`$ref` next to other constraints is not supported", path);
      }
      return this.ref(s.$ref, path);
    }
    let node = this.compileTyped(s, path);
    if (s.nullable === true) node = { kind: "union", id: this.id(), options: [node, this.literal([null])] };
    return node;
  }

  private compileTyped(s: Json, path: string): ValueNode {
    if (s.const !== undefined) return this.literal([s.const]);
    if (s.enum !== undefined) {
      if (!Array.isArray(s.enum) || s.enum.length === 0)
        throw new SchemaError("`enum` must be a non-empty array", path);
      return this.literal(s.enum);
    }
    for (const key of ["anyOf", "oneOf"] as const) {
      if (s[key] === undefined) continue;
      const list = s[key];
      if (!Array.isArray(list) || list.length === 0)
        throw new SchemaError(`\`${key}\` must be a non-empty array`, path);
      if (s.type !== undefined) throw new SchemaError(`\`${key}\` next to \`type\` is not supported`, path);
      return { kind: "union", id: this.id(), options: list.map((sub, i) => this.compile(sub, `${path}/${key}/${i}`)) };
    }
    if (s.allOf !== undefined) {
      if (!Array.isArray(s.allOf) || s.allOf.length !== 1 || s.type !== undefined) {
        throw new SchemaError("`allOf` is supported only with a single schema", path);
      }
      return this.compile(s.allOf[0], `${path}/allOf/0`);
    }
    const types = s.type === undefined ? null : Array.isArray(s.type) ? s.type : [s.type];
    if (types === null) {
      if (s.properties !== undefined || s.additionalProperties !== undefined || s.required !== undefined) {
        return this.object(s, path);
      }
      if (s.items !== undefined) return this.array(s, path);
      return this.anyValue();
    }
    if (types.length === 0) throw new SchemaError("`type` must not be empty", path);
    const options = types.map((t) => {
      if (typeof t !== "string" || !TYPES.has(t)) throw new SchemaError(`unknown type ${JSON.stringify(t)}`, path);
      return this.ofType(t, s, path);
    });
    return options.length === 1 ? options[0] : { kind: "union", id: this.id(), options };
  }

  private ofType(type: string, s: Json, path: string): ValueNode {
    switch (type) {
      case "string":
        return { kind: "string", id: this.id() };
      case "number":
      case "integer":
        return this.number(type === "integer", s, path);
      case "boolean":
        return this.literal([true, false]);
      case "null":
        return this.literal([null]);
      case "object":
        return this.object(s, path);
      default:
        return this.array(s, path);
    }
  }

  private number(integer: boolean, s: Json, path: string): ValueNode {
    const min = s.minimum ?? Number.NEGATIVE_INFINITY;
    const max = s.maximum ?? Number.POSITIVE_INFINITY;
    if (typeof min !== "number" || typeof max !== "number") {
      throw new SchemaError("`minimum` and `maximum` must be numbers", path);
    }
    if (max < GENERATED_BOUND) {
      throw new SchemaError("JSON schema keyword `maximum` below 1e15 is not supported by constrained decoding", path);
    }
    if (min !== 0 && min > -GENERATED_BOUND) {
      throw new SchemaError(
        "JSON schema keyword `minimum` is supported only as 0 or at most -1e15 by constrained decoding",
        path,
      );
    }
    // Finite bounds rule out exponents (1e999); minimum 0 rules out the minus sign.
    const bounded = Number.isFinite(min) || Number.isFinite(max);
    return { kind: "number", id: this.id(), integer, negative: min < 0, exponent: !integer && !bounded };
  }

  private object(s: Json, path: string): ValueNode {
    const properties = (s.properties ?? {}) as Json;
    if (typeof properties !== "object" || properties === null || Array.isArray(properties)) {
      throw new SchemaError("`properties` must be an object", path);
    }
    const required = s.required ?? [];
    if (!Array.isArray(required) || required.some((r) => typeof r !== "string")) {
      throw new SchemaError("`required` must be an array of property names", path);
    }
    for (const r of required as string[]) {
      if (!(r in properties)) {
        throw new SchemaError(`required property ${JSON.stringify(r)} is not in \`properties\``, path);
      }
    }
    const node: ValueNode = { kind: "object", id: this.id(), props: [], free: null };
    // Properties are generated in schema order (as OpenAI's strict mode does); optional ones may
    // be left out. With properties listed, further keys are never generated (valid whatever
    // additionalProperties says); a schema without properties gets free keys unless it forbids them.
    for (const [name, sub] of Object.entries(properties)) {
      node.props.push({
        key: encoder.encode(JSON.stringify(name)),
        name,
        node: this.compile(sub, `${path}/properties/${escapePointer(name)}`),
        required: (required as string[]).includes(name),
      });
    }
    const additional = s.additionalProperties;
    if (node.props.length === 0 && additional !== false) {
      node.free =
        additional === undefined || additional === true
          ? this.anyValue()
          : this.compile(additional, `${path}/additionalProperties`);
    } else if (additional !== undefined && typeof additional !== "boolean") {
      // Schema-valued additionalProperties next to properties: generating only the listed
      // properties is valid, so it needs no enforcement, but its own schema must be sound.
      this.compile(additional, `${path}/additionalProperties`);
    }
    return node;
  }

  private array(s: Json, path: string): ValueNode {
    const items = s.items === undefined ? this.anyValue() : this.compile(s.items, `${path}/items`);
    const minItems = s.minItems ?? 0;
    const maxItems = s.maxItems ?? Number.POSITIVE_INFINITY;
    if (typeof minItems !== "number" || !Number.isInteger(minItems) || minItems < 0) {
      throw new SchemaError("`minItems` must be a non-negative integer", path);
    }
    if (typeof maxItems !== "number" || maxItems < minItems) {
      throw new SchemaError("`maxItems` must be a number ≥ minItems", path);
    }
    return { kind: "array", id: this.id(), items, minItems, maxItems };
  }

  private ref(ref: unknown, path: string): ValueNode {
    if (typeof ref !== "string" || !ref.startsWith("#")) {
      throw new SchemaError(`only local \`$ref\`s ("#/...") are supported, got ${JSON.stringify(ref)}`, path);
    }
    const known = this.refs.get(ref);
    if (known) return known;
    // Registered before compiling the target, so recursive references close the loop.
    const node: ValueNode = { kind: "ref", id: this.id(), target: null };
    this.refs.set(ref, node);
    node.target = this.compile(resolvePointer(this.root, ref, path), ref);
    return node;
  }
}

function escapePointer(name: string): string {
  return name.replace(/~/g, "~0").replace(/\//g, "~1");
}

function resolvePointer(root: unknown, ref: string, path: string): unknown {
  const parts = ref === "#" ? [] : ref.slice(2).split("/");
  if (ref !== "#" && !ref.startsWith("#/")) throw new SchemaError(`unsupported \`$ref\` ${JSON.stringify(ref)}`, path);
  let at: unknown = root;
  for (const raw of parts) {
    const part = decodeURIComponent(raw).replace(/~1/g, "/").replace(/~0/g, "~");
    if (typeof at !== "object" || at === null || !(part in (at as Json))) {
      throw new SchemaError(`\`$ref\` ${JSON.stringify(ref)} points nowhere`, path);
    }
    at = (at as Json)[part];
  }
  return at;
}

/**
 * Fewest bytes each node's values can take (the budget that still lets a generation close its
 * JSON before max_tokens). Recursive schemas are solved by iterating to a fixpoint.
 */
export function minimalLengths(root: ValueNode): Map<number, number> {
  const nodes: ValueNode[] = [];
  const seen = new Set<number>();
  const visit = (n: ValueNode) => {
    if (seen.has(n.id)) return;
    seen.add(n.id);
    nodes.push(n);
    if (n.kind === "object") {
      for (const p of n.props) visit(p.node);
      if (n.free) visit(n.free);
    } else if (n.kind === "array") visit(n.items);
    else if (n.kind === "union") for (const o of n.options) visit(o);
    else if (n.kind === "ref" && n.target) visit(n.target);
  };
  visit(root);
  const min = new Map<number, number>(nodes.map((n) => [n.id, Number.POSITIVE_INFINITY]));
  const get = (n: ValueNode) => min.get(n.id) ?? Number.POSITIVE_INFINITY;
  for (let changed = true; changed; ) {
    changed = false;
    for (const n of nodes) {
      let v: number;
      switch (n.kind) {
        case "string":
          v = 2;
          break;
        case "number":
          v = 1;
          break;
        case "literal":
          v = Math.min(...n.values.map((b) => b.length));
          break;
        case "object": {
          const req = n.props.filter((p) => p.required);
          v = 2 + req.reduce((a, p) => a + p.key.length + 1 + get(p.node), 0) + Math.max(0, req.length - 1);
          break;
        }
        case "array":
          v = n.minItems === 0 ? 2 : 2 + n.minItems * get(n.items) + (n.minItems - 1);
          break;
        case "union":
          v = Math.min(...n.options.map(get));
          break;
        default:
          v = n.target ? get(n.target) : Number.POSITIVE_INFINITY;
      }
      if (v < get(n)) {
        min.set(n.id, v);
        changed = true;
      }
    }
  }
  for (const n of nodes) {
    if (!Number.isFinite(get(n))) {
      throw new SchemaError("the schema admits no finite value (a required property or item recurses forever)", "#");
    }
  }
  return min;
}
