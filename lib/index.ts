/**
 * pinlab: a native-accelerated page-refcount engine that models the Linux kernel's DMA pin
 * schemes (bias, hybrid, separate counter, write-only bias) over a large page array.
 *
 * @packageDocumentation
 */
export { PinlabError, type PinlabErrorCode, type PinlabErrorDetails } from './errors.js';
export {
  PinOwner,
  type DropOptions,
  type DropPolicy,
  type DropReport,
  type PinOwnerOptions,
} from './owners/owner.js';
export type {
  Imbalance,
  ImbalanceCounts,
  ImbalanceKind,
  ImbalanceMode,
  OutstandingPin,
  OwnerKind,
  PinOperation,
  PinProvenance,
} from './owners/types.js';
export {
  Lease,
  PageCacheFile,
  type LayoutChange,
  type LayoutChangeReport,
  type LeaseBreak,
  type LeaseOptions,
  type PageCacheFileOptions,
} from './files/page-cache-file.js';
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
  type AddressSpaceStats,
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
} from './address-space.js';
export { runStress, type StressOptions, type StressReport } from './stress.js';
export {
  PageArray,
  type AllocOptions,
  SCHEMES,
  type Bvec,
  type MemoryUsage,
  type OutstandingPinsOptions,
  type PinnedRun,
  type PageArrayOptions,
  type PageArrayStats,
  type PageSet,
  type PinOptions,
  type PinPath,
  type Scheme,
  type UnpinOptions,
} from './page-array.js';
export * from './bench/index.js';
