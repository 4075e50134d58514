// A tiny JSON Schema validator for the subset of draft 2020-12 that ./schema.ts uses: `type`
// (one name or a list), `enum`, `const`, `properties`, `required`, `additionalProperties`,
// `items`, `minimum`, `maximum`, `minLength`, and local `$ref`s into `$defs`. Annotations
// (`$schema`, `$id`, `title`, `description`) are ignored. Numbers must be finite.

/** A JSON value type name as JSON Schema spells it. */
export type JsonTypeName = 'object' | 'array' | 'string' | 'number' | 'integer' | 'boolean' | 'null';

/** The subset of JSON Schema (draft 2020-12) that `validateJson` understands. */
export interface JsonSchema {
  /** URI of the JSON Schema dialect (annotation, not checked). */
  $schema?: string;
  /** URI identifying this schema (annotation, not checked). */
  $id?: string;
  /** Local reference `#/$defs/NAME`: the value is checked against that definition instead. */
  $ref?: string;
  /** Named subschemas for `$ref` (resolved against the root schema only). */
  $defs?: Record<string, JsonSchema>;
  /** Short title (annotation, not checked). */
  title?: string;
  /** Explanation (annotation, not checked). */
  description?: string;
  /** Allowed JSON type(s); `number` also accepts integers. */
  type?: JsonTypeName | readonly JsonTypeName[];
  /** Allowed values (matched with `Array.prototype.includes`). */
  enum?: readonly unknown[];
  /** The one allowed value, compared with `===`. */
  const?: unknown;
  /** Subschemas of an object's named properties. */
  properties?: Record<string, JsonSchema>;
  /** Properties an object must have. */
  required?: readonly string[];
  /** Properties not in `properties`: `false` forbids them, a schema checks them. */
  additionalProperties?: boolean | JsonSchema;
  /** Subschema every array element must match. */
  items?: JsonSchema;
  /** Inclusive lower bound of a number. */
  minimum?: number;
  /** Inclusive upper bound of a number. */
  maximum?: number;
  /** Minimum length of a string, in UTF-16 code units. */
  minLength?: number;
}

function typeOf(value: unknown): JsonTypeName | 'non-finite number' | 'undefined' | 'other' {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  switch (typeof value) {
    case 'string':
      return 'string';
    case 'boolean':
      return 'boolean';
    case 'number':
      return Number.isFinite(value) ? (Number.isInteger(value) ? 'integer' : 'number') : 'non-finite number';
    case 'object':
      return 'object';
    case 'undefined':
      return 'undefined';
    default:
      return 'other';
  }
}

function matchesType(value: unknown, name: JsonTypeName): boolean {
  const actual = typeOf(value);
  return actual === name || (name === 'number' && actual === 'integer');
}

function show(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function child(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  const name = /^[A-Za-z_$][\w$]*$/.test(key) ? key : JSON.stringify(key);
  if (path === '') return name;
  return /^[A-Za-z_$]/.test(name) ? `${path}.${name}` : `${path}[${name}]`;
}

function resolve(root: JsonSchema, ref: string): JsonSchema {
  const m = /^#\/\$defs\/(.+)$/.exec(ref);
  const target = m ? root.$defs?.[m[1] ?? ''] : undefined;
  if (!target) throw new Error(`json-schema: unresolvable $ref ${ref}`);
  return target;
}

function walk(root: JsonSchema, schema: JsonSchema, value: unknown, path: string, errors: string[]): void {
  const where = path === '' ? '(document)' : path;
  if (schema.$ref !== undefined) {
    walk(root, resolve(root, schema.$ref), value, path, errors);
    return;
  }
  if (schema.type !== undefined) {
    const names: readonly JsonTypeName[] = typeof schema.type === 'string' ? [schema.type] : schema.type;
    if (!names.some((n) => matchesType(value, n))) {
      errors.push(`${where}: must be ${names.join(' or ')} (got ${typeOf(value)} ${show(value)})`);
      return;
    }
  }
  if (schema.const !== undefined && value !== schema.const) {
    errors.push(`${where}: must be ${show(schema.const)} (got ${show(value)})`);
    return;
  }
  if (schema.enum !== undefined && !schema.enum.includes(value)) {
    errors.push(`${where}: must be one of ${schema.enum.map(show).join(', ')} (got ${show(value)})`);
    return;
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${where}: must be >= ${schema.minimum} (got ${value})`);
    if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${where}: must be <= ${schema.maximum} (got ${value})`);
  }
  if (typeof value === 'string' && schema.minLength !== undefined && value.length < schema.minLength) {
    errors.push(`${where}: must be at least ${schema.minLength} character(s) long`);
  }
  if (Array.isArray(value) && schema.items !== undefined) {
    const items = schema.items;
    value.forEach((item, i) => walk(root, items, item, child(path, i), errors));
  }
  if (typeOf(value) === 'object') walkObject(root, schema, value as Record<string, unknown>, path, errors);
}

function walkObject(root: JsonSchema, schema: JsonSchema, obj: Record<string, unknown>, path: string, errors: string[]): void {
  const where = path === '' ? '(document)' : path;
  for (const key of schema.required ?? []) {
    if (!Object.hasOwn(obj, key)) errors.push(`${where}: missing required property '${key}'`);
  }
  const props = schema.properties ?? {};
  for (const [key, val] of Object.entries(obj)) {
    const sub = Object.hasOwn(props, key) ? props[key] : undefined;
    if (sub !== undefined) walk(root, sub, val, child(path, key), errors);
    else if (schema.additionalProperties === false) errors.push(`${where}: unknown property '${key}'`);
    else if (typeof schema.additionalProperties === 'object') walk(root, schema.additionalProperties, val, child(path, key), errors);
  }
}

/**
 * Validates `value` against `schema` (the subset described by {@link JsonSchema}).
 *
 * @param schema - the root schema; `$ref`s resolve against its `$defs`
 * @param value - the parsed JSON value
 * @returns one human-readable message per violation, naming the path (`rows[3].op: ...`);
 *   empty when the value is valid
 */
export function validateJson(schema: JsonSchema, value: unknown): string[] {
  const errors: string[] = [];
  walk(schema, schema, value, '', errors);
  return errors;
}
