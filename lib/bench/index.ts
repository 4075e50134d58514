// `pinlab bench` as a library: runBench (the native engine), and the reporting side, pure
// functions over a BenchResults document.
export * from './types.js';
export { runBench, type BenchProgressEvent, type RunBenchHooks } from './run.js';
export { MODEL_OPS, SHARINGS, type BenchOptions, type ModelOp } from './matrix.js';
export { BENCH_RESULTS_SCHEMA, validateBenchResults } from './schema.js';
export type { JsonSchema, JsonTypeName } from './json-schema.js';
export { formatTable, type TableOptions } from './table.js';
export { formatMarkdown, type MarkdownOptions } from './markdown.js';
export { chartSpecs, renderCharts, renderSvg, type BenchChart } from './charts.js';
export { writeReport, type ReportPaths } from './report.js';
export {
  compareResults,
  formatComparison,
  hasRegressions,
  type BenchComparison,
  type CompareOptions,
  type RowChange,
} from './compare.js';
export { describeMachine, pinlabVersion } from './machine.js';
