/**
 * pinlab: a native-accelerated page-refcount engine that models the Linux kernel's DMA pin
 * schemes (bias, hybrid, separate counter, write-only bias) over a large page array.
 *
 * @packageDocumentation
 */
export { PinlabError, type PinlabErrorCode, type PinlabErrorDetails } from './errors.js';
export type {
  DropOptions,
  DropPolicy,
  DropReport,
  Imbalance,
  ImbalanceCounts,
  ImbalanceKind,
  ImbalanceMode,
  OutstandingPin,
  OwnerKind,
  PinOperation,
  PinOwnerOptions,
  PinOwnerRef,
  PinProvenance,
} from './types/owners.js';
export {
  Lease,
  PageCacheFile,
  type LayoutChange,
  type LayoutChangeReport,
  type LeaseBreak,
  type LeaseOptions,
  type PageCacheFileOptions,
} from './files/page-cache-file.js';
export { HugetlbFile, type HugetlbFileOptions } from './files/hugetlb-file.js';
export type { HugetlbOrder, HugetlbPoolCounts } from './types/hugetlb.js';
export {
  Bio,
  bioAddPage,
  bioFromUserPages,
  type BioAddPageOptions,
  type BioOptions,
  type BioPolicy,
  type BioRelease,
  type BioVec,
  type BvecReference,
} from './bio.js';
export {
  AddressSpace,
  type AddressSpaceOptions,
  type GetUserOptions,
  type GupResult,
  type MmapOptions,
  type MprotectOptions,
  type PinUserOptions,
  type RaceHook,
  type RacePoint,
  type TouchOptions,
  type Translation,
  type UnpinUserOptions,
  type VirtualRange,
  type KernelRules,
  type KernelRuleSet,
  type MadviseAdvice,
  type MremapOptions,
  type KhugepagedOptions,
  type KhugepagedResult,
} from './address-space.js';
export type { AddressSpaceStats, SwapEntry, SwapUsage } from './types/address-space.js';
export { runStress, type StressOptions } from './stress.js';
export type { StressReport } from './types/stress.js';
export {
  PageArray,
  PinOwner,
  type AllocOptions,
  type Bvec,
  type MemoryUsage,
  type OutstandingPinsOptions,
  type PinnedRun,
  type PageArrayOptions,
  type PageSet,
  type PinOptions,
  type PinPath,
  type UnpinOptions,
} from './page-array.js';
export type { PageArrayStats } from './types/page-array.js';
export { SCHEMES, type Scheme } from './schemes.js';
export { OpRecorder, type OpSaveResult } from './ops/recorder.js';
export type { SubmitOptions } from './ops/submit.js';
export {
  OP_ADVICE,
  OP_CODES,
  OP_FLAGS,
  OP_NOT_RUN,
  OP_RECORD_WORDS,
  OpBatch,
  opResultName,
  type OpFields,
  type OpFlagName,
  type OpName,
} from './ops/format.js';
export { stateDigest, type StateDigest } from './ops/state.js';
export { runReplay, type ReplayOptions } from './ops/replay.js';
export {
  REPLAY_SCHEMA_ID,
  REPLAY_SCHEMA_VERSION,
  type ReplayDecision,
  type ReplayResults,
  type ReplayScheme,
  type ReplayStream,
} from './ops/types.js';
export { REPLAY_RESULTS_SCHEMA, validateReplayResults } from './ops/schema.js';
export {
  formatReplayMarkdown,
  formatReplayTable,
  renderReplayCharts,
  replayChartSpecs,
  writeReplayReport,
  type ReplayChart,
  type ReplayMarkdownOptions,
  type ReplayReportPaths,
} from './ops/report.js';
export { ReportStopped, type WriteReportOptions } from './report/files.js';
export * from './bench/index.js';
