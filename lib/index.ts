/**
 * pinlab: a native-accelerated page-refcount engine that models the Linux kernel's DMA pin
 * schemes (bias, hybrid, separate counter, write-only bias) over a large page array.
 *
 * @packageDocumentation
 */
export { PinlabError, type PinlabErrorCode } from './errors.js';
export {
  PageArray,
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
