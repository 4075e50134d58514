// The JSON Schema of a ProfileResults document (./types.ts), and its validator. The document has
// unions (the recursive Distribution, the two `source` variants, nullable objects) that the
// benchmark's validator (../bench/json-schema.ts) has no keyword for, so this file adds `oneOf`
// on top of it: each node's own checks go to validateJson, the walk into children and the choice
// of a `oneOf` branch happen here.
import { appendAll } from '../arrays.js';
import { validateJson, type JsonSchema } from '../bench/json-schema.js';
import { SCHEMES } from '../schemes.js';
import { PROFILE_SCHEMA_ID, PROFILE_SCHEMA_VERSION } from './types.js';

/** {@link JsonSchema} plus `oneOf` (exactly one branch must match), recursively. */
export interface ProfileJsonSchema extends Omit<JsonSchema, '$defs' | 'properties' | 'additionalProperties' | 'items'> {
  $defs?: Record<string, ProfileJsonSchema>;
  properties?: Record<string, ProfileJsonSchema>;
  additionalProperties?: boolean;
  items?: ProfileJsonSchema;
  oneOf?: readonly ProfileJsonSchema[];
}

type S = ProfileJsonSchema;

const NUM: S = { type: 'number' };
const NON_NEG: S = { type: 'number', minimum: 0 };
const FRACTION: S = { type: 'number', minimum: 0, maximum: 1 };
const COUNT: S = { type: 'integer', minimum: 0 };
const STRING: S = { type: 'string' };
const ref = (name: string): S => ({ $ref: `#/$defs/${name}` });
const nullable = (name: string): S => ({ oneOf: [ref(name), { type: 'null' }] });

function closed(properties: Record<string, S>, optional: readonly string[] = []): S {
  return { type: 'object', properties, required: Object.keys(properties).filter((k) => !optional.includes(k)), additionalProperties: false };
}

const distribution: S = {
  description: 'A distribution of non-negative integers, by kind; a mixture nests distributions.',
  oneOf: [
    closed({ kind: { const: 'fixed' }, value: COUNT }),
    closed({ kind: { const: 'uniform' }, min: COUNT, max: COUNT }),
    closed({ kind: { const: 'geometric' }, p: FRACTION, min: COUNT }, ['min']),
    closed({ kind: { const: 'zipf' }, s: NON_NEG, max: { type: 'integer', minimum: 1 } }),
    closed({ kind: { const: 'lognormal' }, mu: NUM, sigma: NON_NEG, max: { type: 'integer', minimum: 1 } }, ['max']),
    closed({ kind: { const: 'mixture' }, parts: { type: 'array', items: closed({ weight: NON_NEG, dist: ref('distribution') }) } }),
  ],
};

const pins = {
  seed: { type: 'integer' },
  pinnedFraction: FRACTION,
  pinsPerPinned: ref('distribution'),
  writeFraction: FRACTION,
} satisfies Record<string, S>;

const population = closed({
  pages: { type: 'integer', minimum: 1 },
  seed: pins.seed,
  orders: { type: 'array', items: closed({ order: { type: 'integer', minimum: 0, maximum: 30 }, weight: NON_NEG }) },
  refs: ref('distribution'),
  freeFraction: FRACTION,
  pinnedFraction: pins.pinnedFraction,
  pinsPerPinned: pins.pinsPerPinned,
  writeFraction: pins.writeFraction,
});

const source: S = {
  oneOf: [
    closed({ kind: { const: 'synthetic' }, preset: { type: ['string', 'null'] }, population: ref('population') }),
    closed({ kind: { const: 'snapshot' }, file: { type: 'string', minLength: 1 }, pages: { type: 'integer', minimum: 1 }, pins: closed(pins) }),
  ],
};

const rate = closed({ count: COUNT, total: COUNT, rate: FRACTION, low: FRACTION, high: FRACTION });

const countsProps = {
  pages: COUNT,
  falsePositives: ref('rate'),
  falseNegatives: ref('rate'),
  hiddenReadPins: nullable('rate'),
} satisfies Record<string, S>;

const bucket = closed({ label: { type: 'string', minLength: 1 }, key: COUNT, ...countsProps });

const scheme = closed({
  scheme: { enum: SCHEMES },
  bias: { type: 'integer', minimum: 1 },
  overall: closed(countsProps),
  byOrder: { type: 'array', items: ref('bucket') },
  byRefs: { type: 'array', items: ref('bucket') },
  overflowRefusals: COUNT,
  pinsTaken: COUNT,
  expected: { oneOf: [closed({ rate: FRACTION, agrees: { type: 'boolean' } }), { type: 'null' }] },
  downstream: closed({
    needlessEarlyCowPages: COUNT,
    unmovablePages: COUNT,
    uncollapsiblePages: COUNT,
    unreclaimablePages: COUNT,
    pageoutSkippedPages: COUNT,
    samplePages: COUNT,
    scale: NON_NEG,
  }, ['uncollapsiblePages', 'pageoutSkippedPages']),
  pinBudget: COUNT,
});

const machine = closed({
  cpu: STRING,
  cores: { type: 'integer', minimum: 1 },
  kernel: STRING,
  os: STRING,
  node: STRING,
  build: STRING,
  pinlab: STRING,
});

/**
 * JSON Schema (draft 2020-12) of a {@link ProfileResults} document, exactly the types of
 * ./types.ts: every non-optional field required, no unknown fields, `oneOf` for the unions (the
 * recursive `distribution`, the `synthetic` and `snapshot` sources, `null` where the type allows
 * it), enums and consts for the string literals. Numbers are finite (JSON has no NaN); counts are
 * integers >= 0; rates and fractions lie in 0..1.
 */
export const PROFILE_RESULTS_SCHEMA: ProfileJsonSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: `urn:pinlab:${PROFILE_SCHEMA_ID}:${PROFILE_SCHEMA_VERSION}`,
  title: 'pinlab profile results',
  description: 'What `pinlab profile --json` prints and `--out DIR` writes as results.json.',
  ...closed({
    schema: { const: PROFILE_SCHEMA_ID },
    version: { const: PROFILE_SCHEMA_VERSION },
    createdAt: { type: 'string', minLength: 1 },
    machine: ref('machine'),
    source: ref('source'),
    schemes: { type: 'array', items: ref('scheme') },
    scanPagesPerSecond: NON_NEG,
    threads: { type: 'integer', minimum: 1 },
    durationMs: NON_NEG,
    disagreements: { type: 'array', items: STRING },
  }),
  $defs: { distribution, population, source, rate, bucket, scheme, machine },
};

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

function child(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  const name = /^[A-Za-z_$][\w$]*$/.test(key) ? key : JSON.stringify(key);
  if (path === '') return name;
  return /^[A-Za-z_$]/.test(name) ? `${path}.${name}` : `${path}[${name}]`;
}

function deref(root: S, schema: S): S {
  let s = schema;
  for (let i = 0; s.$ref !== undefined && i < 32; i++) {
    const m = /^#\/\$defs\/(.+)$/.exec(s.$ref);
    const target = m ? root.$defs?.[m[1] ?? ''] : undefined;
    if (!target) throw new Error(`profile schema: unresolvable $ref ${s.$ref}`);
    s = target;
  }
  return s;
}

/** The node's own checks (type, const, enum, bounds, required, unknown keys), for validateJson. */
function shallow(s: S): JsonSchema {
  const { $defs: _d, $ref: _r, oneOf: _o, items: _i, properties, ...own } = s;
  return properties === undefined ? own : { ...own, properties: Object.fromEntries(Object.keys(properties).map((k) => [k, {}])) };
}

/** Whether a branch could be meant for the value: its type admits it and its consts match. */
function admits(root: S, branch: S, value: unknown): boolean {
  const b = deref(root, branch);
  if (b.type !== undefined && validateJson({ type: b.type }, value).length > 0) return false;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return true;
  for (const [key, sub] of Object.entries(b.properties ?? {})) {
    if (sub.const !== undefined && (value as Record<string, unknown>)[key] !== sub.const) return false;
  }
  return true;
}

function walkOneOf(root: S, branches: readonly S[], value: unknown, path: string, errors: string[]): void {
  const where = path === '' ? '(document)' : path;
  const fitting = branches.filter((b) => admits(root, b, value));
  if (fitting.length === 1) {
    walk(root, fitting[0] ?? {}, value, path, errors);
    return;
  }
  if (fitting.length > 1) {
    const passing = fitting.filter((b) => check(root, b, value).length === 0).length;
    if (passing !== 1) errors.push(`${where}: must match exactly one variant (matches ${passing} of ${fitting.length})`);
    return;
  }
  const kinds = branches.map((b) => deref(root, b).properties?.['kind']?.const).filter((k) => k !== undefined);
  const kind = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)['kind'] : undefined;
  if (kinds.length === branches.length && typeof value === 'object' && value !== null && !Array.isArray(value)) {
    errors.push(`${child(path, 'kind')}: must be one of ${kinds.map((k) => JSON.stringify(k)).join(', ')} (got ${JSON.stringify(kind) ?? 'undefined'})`);
    return;
  }
  const types = branches.map((b) => {
    const d = deref(root, b);
    return d.properties?.['kind']?.const !== undefined ? `${String(d.properties['kind'].const)} object` : [d.type ?? 'any'].flat().join(' or ');
  });
  errors.push(`${where}: must be ${[...new Set(types)].join(' or ')} (got ${typeName(value)})`);
}

function walk(root: S, schema: S, value: unknown, path: string, errors: string[]): void {
  const s = deref(root, schema);
  if (s.oneOf !== undefined) {
    walkOneOf(root, s.oneOf, value, path, errors);
    return;
  }
  const own = validateJson(shallow(s), value);
  const where = path === '' ? '(document)' : path;
  appendAll(errors, own.map((e) => (e.startsWith('(document)') ? where + e.slice('(document)'.length) : e)));
  if (own.length > 0 && s.type !== undefined && validateJson({ type: s.type }, value).length > 0) return;
  if (Array.isArray(value) && s.items !== undefined) {
    const items = s.items;
    value.forEach((item, i) => walk(root, items, item, child(path, i), errors));
  } else if (value !== null && typeof value === 'object' && s.properties !== undefined) {
    for (const [key, sub] of Object.entries(s.properties)) {
      if (Object.hasOwn(value, key)) walk(root, sub, (value as Record<string, unknown>)[key], child(path, key), errors);
    }
  }
}

function check(root: S, schema: S, value: unknown, path = ''): string[] {
  const errors: string[] = [];
  walk(root, schema, value, path, errors);
  return errors;
}

/** Rules a schema cannot say: a rate's count within its total and its interval around it. */
function rateRules(doc: unknown): string[] {
  const errors: string[] = [];
  const schemes = (doc as { schemes?: unknown } | null)?.schemes;
  if (!Array.isArray(schemes)) return errors;
  const checkRate = (r: unknown, at: string): void => {
    const x = r as Partial<Record<'count' | 'total' | 'rate' | 'low' | 'high', unknown>> | null;
    if (x === null || typeof x !== 'object') return;
    const { count, total, rate, low, high } = x;
    if (typeof count === 'number' && typeof total === 'number' && count > total) errors.push(`${at}: count ${count} exceeds total ${total}`);
    if (typeof rate === 'number' && typeof low === 'number' && typeof high === 'number' && !(low <= rate + 1e-9 && rate <= high + 1e-9)) {
      errors.push(`${at}: interval [${low}, ${high}] does not hold rate ${rate}`);
    }
  };
  schemes.forEach((s: unknown, i) => {
    const o = s as Record<string, unknown> | null;
    if (o === null || typeof o !== 'object') return;
    const slices: [string, unknown][] = [[`schemes[${i}].overall`, o['overall']]];
    for (const list of ['byOrder', 'byRefs'] as const) {
      const b = o[list];
      if (Array.isArray(b)) b.forEach((x: unknown, j) => slices.push([`schemes[${i}].${list}[${j}]`, x]));
    }
    for (const [at, c] of slices) {
      if (c === null || typeof c !== 'object') continue;
      for (const k of ['falsePositives', 'falseNegatives', 'hiddenReadPins'] as const) checkRate((c as Record<string, unknown>)[k], `${at}.${k}`);
    }
  });
  return errors;
}

/**
 * Checks that `doc` is a valid {@link ProfileResults} document: {@link PROFILE_RESULTS_SCHEMA},
 * plus what a schema cannot say: each rate's count is at most its total and its 95 % interval
 * holds it.
 *
 * @param doc - a parsed JSON value (e.g. `JSON.parse` of a results.json)
 * @returns human-readable errors, each naming its path (`schemes[2].bias: must be integer ...`,
 *   `source.population.refs.kind: must be one of ...`); empty when the document is valid
 */
export function validateProfileResults(doc: unknown): string[] {
  const errors = check(PROFILE_RESULTS_SCHEMA, PROFILE_RESULTS_SCHEMA, doc);
  return errors.length > 0 ? errors : rateRules(doc);
}
