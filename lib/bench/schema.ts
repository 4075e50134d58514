// The JSON Schema of a BenchResults document (./types.ts), and its validator.
import { SCHEMES } from '../schemes.js';
import { validateJson, type JsonSchema } from './json-schema.js';
import { BENCH_SCHEMA_ID, BENCH_SCHEMA_VERSION } from './types.js';

const NUM: JsonSchema = { type: 'number' };
const NON_NEG: JsonSchema = { type: 'number', minimum: 0 };
const NON_NEG_OR_NULL: JsonSchema = { type: ['number', 'null'], minimum: 0 };
const COUNT: JsonSchema = { type: 'integer', minimum: 1 };
const STRING: JsonSchema = { type: 'string' };

function closed(properties: Record<string, JsonSchema>, optional: readonly string[] = []): JsonSchema {
  return {
    type: 'object',
    properties,
    required: Object.keys(properties).filter((k) => !optional.includes(k)),
    additionalProperties: false,
  };
}

const spread = closed({ median: NON_NEG, min: NON_NEG, max: NON_NEG, q1: NON_NEG, q3: NON_NEG });

const kernelFigures = closed({
  pinNsPerPage: NON_NEG,
  unpinNsPerPage: NON_NEG,
  // -1: /proc/vmstat has no such counter on this kernel (the probe still measured the times).
  nrFollPinAcquiredDelta: { type: 'integer', minimum: -1 },
  nrFollPinReleasedDelta: { type: 'integer', minimum: -1 },
  thpConfirmed: { type: ['boolean', 'null'] },
});

const row = closed(
  {
    id: { type: 'string', minLength: 1 },
    kind: { enum: ['model', 'baseline', 'kernel'] },
    op: { enum: ['pin-unpin', 'get-put', 'gup-fast', 'mixed', 'raw-per-page', 'raw-per-folio', 'io_uring-register'] },
    scheme: { enum: [...SCHEMES, null] },
    path: { enum: ['per-page', 'bvec', null] },
    order: { type: 'integer', minimum: 0, maximum: 30 },
    input: { enum: ['range', 'list'] },
    threads: COUNT,
    sharing: { enum: ['private', 'shared', 'interleaved'] },
    bufferPages: COUNT,
    pagesPerCall: COUNT,
    nsPerPage: { $ref: '#/$defs/spread' },
    pagesPerSecond: closed({ perThread: NON_NEG, total: NON_NEG }),
    atomicsPerPage: NON_NEG,
    scalingEfficiency: NON_NEG_OR_NULL,
    speedupVsOneThread: NON_NEG_OR_NULL,
    bvecSpeedup: NON_NEG_OR_NULL,
    vsRawPerPage: NON_NEG_OR_NULL,
    vsRawPerFolio: NON_NEG_OR_NULL,
    trials: COUNT,
    kernel: { $ref: '#/$defs/kernelFigures' },
  },
  ['kernel'],
);

const target = closed({
  name: { type: 'string', minLength: 1 },
  description: STRING,
  value: { type: ['number', 'null'] },
  limit: NUM,
  op: { enum: ['<=', '>='] },
  met: { type: 'boolean' },
  skipped: { type: ['string', 'null'] },
});

const machine = closed({
  cpu: STRING,
  cores: COUNT,
  kernel: STRING,
  os: STRING,
  node: STRING,
  build: STRING,
  pinlab: STRING,
});

/**
 * JSON Schema (draft 2020-12) of a {@link BenchResults} document, exactly the types of
 * ./types.ts: every non-optional field required, no unknown fields (except inside the free-form
 * `config`), enums for the string unions, `null` where the type allows it. Numbers are finite
 * (JSON has no NaN); ns and throughput figures are >= 0; counts are integers >= 1.
 */
export const BENCH_RESULTS_SCHEMA: JsonSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: `urn:pinlab:${BENCH_SCHEMA_ID}:${BENCH_SCHEMA_VERSION}`,
  title: 'pinlab benchmark results',
  description: 'What `pinlab bench --json` prints and `--out DIR` writes as results.json.',
  ...closed({
    schema: { const: BENCH_SCHEMA_ID },
    version: { const: BENCH_SCHEMA_VERSION },
    createdAt: { type: 'string', minLength: 1 },
    machine: { $ref: '#/$defs/machine' },
    config: { type: 'object' },
    durationMs: NON_NEG,
    rows: { type: 'array', items: { $ref: '#/$defs/row' } },
    targets: { type: 'array', items: { $ref: '#/$defs/target' } },
    kernel: closed({ available: { type: 'boolean' }, reason: { type: ['string', 'null'] } }),
  }),
  $defs: { spread, kernelFigures, row, target, machine },
};

/**
 * Checks that `doc` is a valid {@link BenchResults} document: {@link BENCH_RESULTS_SCHEMA}, plus
 * the one rule a schema cannot say, that row ids are unique.
 *
 * @param doc - a parsed JSON value (e.g. `JSON.parse` of a results.json)
 * @returns human-readable errors, each naming its path (`rows[2].op: must be one of ...`);
 *   empty when the document is valid
 */
export function validateBenchResults(doc: unknown): string[] {
  const errors = validateJson(BENCH_RESULTS_SCHEMA, doc);
  const rows = (doc as { rows?: unknown } | null)?.rows;
  if (Array.isArray(rows)) {
    const seen = new Map<string, number>();
    rows.forEach((r: unknown, i) => {
      const id = (r as { id?: unknown } | null)?.id;
      if (typeof id !== 'string') return;
      const first = seen.get(id);
      if (first === undefined) seen.set(id, i);
      else errors.push(`rows[${i}].id: duplicates rows[${first}].id ${JSON.stringify(id)}`);
    });
  }
  return errors;
}
