// The JSON Schema of a ReplayResults document (./types.ts), and its validator.
import { validateJson, type JsonSchema } from '../bench/json-schema.js';
import { SCHEMES } from '../schemes.js';
import { REPLAY_SCHEMA_ID, REPLAY_SCHEMA_VERSION } from './types.js';

const NON_NEG: JsonSchema = { type: 'number', minimum: 0 };
const COUNT: JsonSchema = { type: 'integer', minimum: 0 };
const POSITIVE: JsonSchema = { type: 'integer', minimum: 1 };
const STRING: JsonSchema = { type: 'string' };
const HEX: JsonSchema = { type: 'string', minLength: 16 };
const COUNTERS: JsonSchema = { type: 'object', additionalProperties: COUNT };

function closed(properties: Record<string, JsonSchema>): JsonSchema {
  return { type: 'object', properties, required: Object.keys(properties), additionalProperties: false };
}

const decision = closed({ decisions: COUNT, falsePositives: COUNT, unclassified: COUNT });

const digest = closed({
  pages: HEX,
  freeBlocks: HEX,
  freePages: COUNT,
  zeroPfn: { type: ['integer', 'null'], minimum: 0 },
  stats: COUNTERS,
  spaces: HEX,
  spaceCount: COUNT,
  mmStats: COUNTERS,
});

const scheme = closed({
  scheme: { enum: [...SCHEMES] },
  bias: POSITIVE,
  pincountMinOrder: { type: 'integer', minimum: 0, maximum: 31 },
  debug: { type: 'boolean' },
  threads: POSITIVE,
  ops: COUNT,
  seconds: NON_NEG,
  cpuSeconds: NON_NEG,
  opsPerSecond: NON_NEG,
  opsPerSecondPerThread: NON_NEG,
  opsPerCpuSecond: NON_NEG,
  nsPerOp: NON_NEG,
  refused: COUNT,
  refusals: COUNTERS,
  overflowRefusals: COUNT,
  imbalances: COUNT,
  diverged: COUNT,
  decisions: closed({
    earlyCow: { $ref: '#/$defs/decision' },
    migration: { $ref: '#/$defs/decision' },
    reclaim: { $ref: '#/$defs/decision' },
    collapse: { $ref: '#/$defs/decision' },
    pageout: { $ref: '#/$defs/decision' },
  }),
  falsePositives: COUNT,
  reclaimScan: closed({ folios: COUNT, missed: COUNT }),
  pinsOutstanding: { type: 'integer' },
  debugPinnedPages: COUNT,
  balanced: { type: 'boolean' },
  addressSpaces: COUNT,
  stats: COUNTERS,
  mmStats: COUNTERS,
  endState: { type: ['object', 'null'] },
});

/**
 * JSON Schema (draft 2020-12) of a {@link ReplayResults} document: every field of ./types.ts
 * required, no unknown fields, scheme names from the registry, counts integers >= 0.
 */
export const REPLAY_RESULTS_SCHEMA: JsonSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: `urn:pinlab:${REPLAY_SCHEMA_ID}:${REPLAY_SCHEMA_VERSION}`,
  title: 'pinlab replay results',
  description: 'What `pinlab replay --json` prints and `--out DIR` writes as results.json.',
  ...closed({
    schema: { const: REPLAY_SCHEMA_ID },
    version: { const: REPLAY_SCHEMA_VERSION },
    createdAt: { type: 'string', minLength: 1 },
    machine: closed({ cpu: STRING, cores: POSITIVE, kernel: STRING, os: STRING, node: STRING, build: STRING, pinlab: STRING }),
    stream: closed({
      file: STRING,
      bytes: COUNT,
      records: COUNT,
      ops: COUNT,
      threads: POSITIVE,
      pages: POSITIVE,
      movablePages: COUNT,
      folioOrder: { type: 'integer', minimum: 0, maximum: 30 },
      pincountMinOrder: { type: 'integer', minimum: 0, maximum: 31 },
      pinBias: POSITIVE,
      debug: { type: 'boolean' },
      populated: { type: 'boolean' },
      scheme: { enum: [...SCHEMES] },
    }),
    threads: POSITIVE,
    schemes: { type: 'array', items: { $ref: '#/$defs/scheme' } },
    durationMs: NON_NEG,
  }),
  $defs: { scheme, decision, digest },
};

/**
 * Checks that `doc` is a valid {@link ReplayResults} document ({@link REPLAY_RESULTS_SCHEMA}, and
 * each `endState` that is not null against the digest's shape).
 *
 * @returns human-readable errors naming their paths; empty when valid
 */
export function validateReplayResults(doc: unknown): string[] {
  const errors = validateJson(REPLAY_RESULTS_SCHEMA, doc);
  const schemes = (doc as { schemes?: unknown } | null)?.schemes;
  if (Array.isArray(schemes)) {
    schemes.forEach((s: unknown, i) => {
      const end = (s as { endState?: unknown } | null)?.endState;
      if (end !== null && end !== undefined) for (const e of validateJson(digest, end)) errors.push(`schemes[${i}].endState ${e}`);
    });
  }
  return errors;
}
