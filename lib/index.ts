/**
 * pinlab: a native-accelerated page-refcount engine that models the Linux kernel's DMA pin
 * schemes (bias, hybrid, separate counter, write-only bias) over a large page array.
 *
 * @packageDocumentation
 */
export { PinlabError, type PinlabErrorCode } from './errors.js';
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
  type PageArrayOptions,
  type PageArrayStats,
  type PageSet,
  type PinOptions,
  type PinPath,
  type Scheme,
  type UnpinOptions,
} from './page-array.js';
export * from './bench/index.js';
