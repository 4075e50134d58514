// The raw addon surface, typed by hand in one place and loaded with createRequire.
// lib/page-array.ts checks arguments first for good messages; the addon checks them again
// itself (types, integer ranges, the real type of typed arrays), so nothing here is unsafe to
// call with anything.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import { PinlabError } from './errors.js';
import type { AddressSpaceStats, KernelRules, SwapEntry, SwapUsage } from './types/address-space.js';
import type { PageArrayStats } from './types/page-array.js';
import type { Distribution, Population } from './types/population.js';
import type { StressReport } from './types/stress.js';

/** Flag bits understood by the addon's pin calls. @internal */
export const PinFlag = { Write: 1, PerPage: 2, Dirty: 4 } as const;

/** @internal */
export interface NativeInfo {
  pages: number;
  scheme: string;
  pinBias: number;
  pincountMinOrder: number;
  folioOrder: number;
  debug: boolean;
  populated: boolean;
  movablePages: number;
  memoryBytes: number;
  bytesPerPage: number;
}

/** The addon returns the public statistics object as is. @internal */
export type NativeStats = Omit<PageArrayStats, 'imbalances'>;

/** @internal */
export interface NativePageArray {
  info(): NativeInfo;
  folioHead(pfn: number): number;
  folioOrder(pfn: number): number;
  refcount(pfn: number): number;
  pincount(pfn: number): number | null;
  maybeDmaPinned(pfn: number): boolean;
  isDirty(pfn: number): boolean;
  setDirty(pfn: number): void;
  getPage(pfn: number, refs: number): void;
  tryGetPage(pfn: number, refs: number): boolean;
  putPage(pfn: number, refs: number): boolean;
  /**
   * Would one put of each PFN be refused now (put_pages' checks), or, given `unpins`, right
   * after unpinning them (write pins if `write`)? Throws its refusal; changes nothing.
   */
  checkPutPages(pfns: Uint32Array, unpins?: Uint32Array, write?: boolean): void;
  makeFolio(head: number, order: number): void;
  splitFolio(head: number): void;
  pinRange(start: number, count: number, flags: number): number;
  pinList(pfns: Uint32Array, flags: number): number;
  unpinRange(start: number, count: number, flags: number): void;
  unpinList(pfns: Uint32Array, flags: number): void;
  /** The read pins of `reads` and the write pins of `writes` as one all-or-nothing unpin. */
  unpinLists(reads: Uint32Array, writes: Uint32Array): void;
  bvecsRange(start: number, count: number): Uint32Array;
  bvecsList(pfns: Uint32Array): Uint32Array;
  countMaybeDmaPinnedRange(start: number, count: number): number;
  countMaybeDmaPinnedList(pfns: Uint32Array): number;
  stats(): NativeStats;
  allocFolio(order: number, movable: boolean): number;
  freePages(): number;
  zeroPfn(): number | null;
  hugeZeroPfn(): number | null;
  isMovable(pfn: number): boolean;
  /** nr_hugepages of one size (order 9 or 18). */
  hugetlbSetPages(order: number, count: number): void;
  hugetlbCounts(order: number): { total: number; free: number; reserved: number };
  /** A hugetlb file's pages (refcount 1 each: the file's), all or nothing. */
  hugetlbAllocPages(order: number, count: number): Uint32Array;
  /** Idempotent; every later call is EINVAL. The core goes with its last holder. */
  dispose(): void;
  isDisposed(): boolean;
  /** Maximal runs of consecutive ascending PFNs in list order, flat [pfn, count, ...]. */
  pfnRunsInto(pfns: Uint32Array, out: Uint32Array): number;
  /** Debug mode only: runs of pages with the same non-zero exact pin count, flat [pfn, count, pins, ...]. */
  debugPinnedRuns(): Uint32Array;
  /** Debug mode only: the exact pin count of each page of a range. */
  debugPagePins(start: number, count: number): Int32Array;
}

/** Flag bits of the addon's gup call. @internal */
export const GupFlag = { Write: 1, Longterm: 2, FastOnly: 4, Pin: 8, SlowOnly: 16 } as const;

/** What translate() reports for a present page. @internal */
export interface NativeTranslation {
  pfn: number;
  writable: boolean;
  zeroPage: boolean;
  huge: boolean;
  /** A page-cache page of a shared (MAP_SHARED) mapping. */
  shared: boolean;
  /** Present (true) only for a private file mapping's page-cache page. */
  pageCache?: true;
}

/** @internal */
export interface NativeAddressSpace {
  mmap(start: number, count: number, write: boolean, populate: boolean, huge: boolean): void;
  munmap(start: number, count: number): void;
  mprotect(start: number, count: number, write: boolean): void;
  /** A shared region at start mapping pfns[i] at start + i (PTEs, one reference each). */
  mapShared(start: number, pfns: Uint32Array, write: boolean, dirtyTracked?: boolean): void;
  /** madvise: 0 MADV_DONTNEED, 1 MADV_DONTFORK, 2 MADV_DOFORK, 3 MADV_PAGEOUT. */
  madvise(start: number, count: number, advice: number): void;
  /** zap_page_range: clears and puts every entry of the range; the regions stay. */
  zap(start: number, count: number): void;
  /** mmap(MAP_HUGETLB): aligned to the page size of `order` (9 or 18). */
  mmapHugetlb(start: number, count: number, order: number, write: boolean, populate: boolean, shared: boolean): void;
  /** A hugetlb file's pages (heads of `order`) mapped at start, shared or private. */
  mapHugetlbFile(start: number, heads: Uint32Array, order: number, write: boolean, shared: boolean): void;
  checkCanMap(start: number, count: number): void;
  touch(start: number, count: number, write: boolean): void;
  gup(start: number, count: number, flags: number): Uint32Array;
  unpinUserPages(pfns: Uint32Array, write: boolean, dirty: boolean): void;
  putUserPages(pfns: Uint32Array): void;
  fork(): NativeAddressSpace;
  migrate(start: number, count: number): number;
  compact(): number;
  translate(vpage: number): NativeTranslation | null;
  stats(): AddressSpaceStats;
  info(): { pages: number; hasPinned: boolean; regions: number; mappedPages: number; rules: KernelRules; thpOrders: number; swappedPages: number };
  setRaceHook(hook: ((point: string, vpage: number) => void) | null): void;
  /** The swap entry at vpage (MADV_PAGEOUT), or null. */
  swapEntry(vpage: number): SwapEntry | null;
  /** The swap device of this address space's fork family. */
  swapUsage(): SwapUsage;
  /** mremap: flags 1 MAYMOVE, 2 FIXED, 4 DONTUNMAP; newStart -1 without FIXED. Returns the new start. */
  mremap(start: number, count: number, newCount: number, newStart: number, flags: number): number;
  /** MADV_COLLAPSE of the range: THPs made. */
  collapse(start: number, count: number): number;
  /** One khugepaged pass. */
  khugepaged(maxPtesNone: number, maxPtesShared: number): { collapsed: number; scanned: number };
  /** Idempotent: unmaps everything and frees the page table; every later call is EINVAL. */
  dispose(): void;
  isDisposed(): boolean;
  /** A private file region at start mapping pfns[i] at start + i read-only (COW on write). */
  mapPrivate(start: number, pfns: Uint32Array, write: boolean, dirtyTracked?: boolean): void;
  /** The file dropped these pages: clears its page-cache entries, with evenCows its COW copies too. */
  zapFile(start: number, count: number, evenCows: boolean): void;
  /** MADV_REMOVE's checks: every page in a region, each a shared mapping (EACCES private file, EINVAL anonymous). */
  checkMadvRemove(start: number, count: number): void;
  /** The stretches of the range that lie in regions, as (start, count) pairs in address order. */
  regionRuns(start: number, count: number): Float64Array;
  /** The file pages held without an entry in the range (a zap of it puts them too). */
  heldPages(start: number, count: number): Uint32Array;
}

/** @internal */
export interface NativeStressOptions {
  scheme: string;
  threads: number;
  durationMs: number;
  regionPages: number;
  regions: number;
  seed: number;
  debug: boolean;
}

/** A benchmark configuration as the addon takes it. @internal */
export interface NativeBenchSpec {
  op: string;
  scheme: string;
  perPage: boolean;
  order: number;
  listInput: boolean;
  threads: number;
  sharing: string;
  bufferPages: number;
  pagesPerCall: number;
}

/** One configuration's outcome from the addon. @internal */
export interface NativeBenchResult {
  ok: boolean;
  error: string | null;
  nsPerPage: number[];
  atomicsPerPage: number;
  roundsPerTrial: number;
}

/** The host kernel probe's outcome. @internal */
export interface NativeKernelProbe {
  available: boolean;
  reason: string | null;
  pages: number;
  pinNsPerPage: number[];
  unpinNsPerPage: number[];
  nrFollPinAcquiredDelta: number;
  nrFollPinReleasedDelta: number;
  thpConfirmed: boolean;
  anonHugeKb: number;
}

/** One scheme and bias of a profile run, as the addon reports it. @internal */
export interface NativeProfileTally {
  pages: number;
  unpinnedPages: number;
  falsePositivePages: number;
  pinnedPages: number;
  falseNegativePages: number;
  readOnlyPages: number;
  hiddenReadPages: number;
  folios: number;
  unpinnedFolios: number;
  falsePositiveFolios: number;
  pinnedFolios: number;
  falseNegativeFolios: number;
  readOnlyFolios: number;
  hiddenReadFolios: number;
}

/** @internal */
export interface NativeProfileRun {
  scheme: string;
  bias: number;
  overall: NativeProfileTally;
  byOrder: NativeProfileTally[];
  byRefs: NativeProfileTally[];
  pinsTaken: number;
  overflowRefusals: number;
  samplePages: number;
  sampleEarlyCowFalsePositives: number;
  sampleMigrationFalsePositives: number;
  samplePageoutFalsePositives: number;
  sampleCollapseFalsePositives: number;
  scanPagesPerSecond: number;
  /** From the scheme's policy: whether folios of order k keep an exact pincount (index k). */
  exactOrders: boolean[];
  /** The refcount cost of one write pin of a small folio (the pin budget's unit). */
  pinRefCost: number;
  /** Whether maybe-pinned sees read pins (false: write-bias hides them by design). */
  readPinsVisible: boolean;
}

/** One registered scheme, as the addon describes it. @internal */
export interface NativeSchemeInfo {
  name: string;
  summary: string;
  /** Where the exact pincount lives: none, a large folio's first tail, a side array, or the scheme's own store. */
  pincount: 'none' | 'large-folios' | 'every-folio' | 'own';
  /** int32 pincount words per page (0, 1 for a side array, or an own store's). */
  pinWords: number;
  readPinsVisible: boolean;
  bytesPerPage: number;
  debugBytesPerPage: number;
  /** The smallest folio order whose pins it counts in per-thread shards (null: it never shards). */
  shardMinOrder: number | null;
  /**
   * The smallest folio order whose pins share ONE reference on the refcount (taken by the first
   * pin, given back by the last), so that `refcount()` is gets + mappings + 1 while pinned
   * (null: every pin holds its own references).
   */
  sharedRefMinOrder: number | null;
  /**
   * Whether a folio whose pins many threads share may go lazy (percpu_ref's mode switch): its
   * pins and unpins then write only their own thread's shard, and the mode holds the pins'
   * reference until the folio is settled (README, "The `sharded` scheme").
   */
  lazyPins: boolean;
}

/** The op stream format's constants, from the addon (engines/op_format.h). @internal */
export interface NativeOpFormat {
  version: number;
  headerBytes: number;
  recordWords: number;
  entriesPerData: number;
  dataOpcode: number;
  outputWindow: number;
  notRun: number;
  noValue: number;
  /** Opcode by op name. */
  ops: Record<string, number>;
  /** Flag bits by name. */
  flags: Record<'write' | 'perPage' | 'dirty' | 'list' | 'movable' | 'populate' | 'huge' | 'fastOnly' | 'longterm' | 'refs' | 'shmem' | 'shared' | 'mayMove' | 'fixed' | 'dontUnmap' | 'evenCows', number>;
  /** Error code names by number (index 0 is OK). */
  codes: string[];
}

/** A stream header's page-array fields, as writeOps takes them. @internal */
export interface NativeOpHeader {
  pages: number;
  movablePages: number;
  folioOrder: number;
  pincountMinOrder: number;
  pinBias: number;
  debug: boolean;
  populated: boolean;
  scheme: string;
}

/** A stream's header as the replay read it. @internal */
export interface NativeStreamInfo extends NativeOpHeader {
  threads: number;
  records: number;
  ops: number;
  /** The bytes the replay read from the file and checked (only its own replays report it). */
  bytes?: number;
}

/** The digest of a page array's (and its address spaces') whole state. @internal */
export interface NativeStateDigest {
  pages: string;
  freeBlocks: string;
  freePages: number;
  zeroPfn: number | null;
  stats: Record<string, number>;
  spaces: string;
  spaceCount: number;
  mmStats: Record<string, number>;
}

/** One variant of a native replay. @internal */
export interface NativeReplayRun {
  scheme: string;
  bias: number;
  pincountMinOrder: number;
  debug: boolean;
  threads: number;
  ops: number;
  refused: number;
  diverged: number;
  refusals: Record<string, number>;
  seconds: number;
  cpuSeconds: number;
  stats: Record<string, number>;
  mmStats: Record<string, number>;
  spaces: number;
  reclaim: { folios: number; maybePinned: number; falsePositives: number; unclassified: number; missed: number };
  pinsOutstanding: number;
  debugPinnedPages: number;
  balanced: boolean;
  digest: NativeStateDigest | null;
}

/** An asynchronous native job: its promise and a function that asks it to stop. @internal */
export interface NativeJob<T> {
  promise: Promise<T>;
  cancel(): void;
}

/** @internal */
export interface NativeModule {
  NativePageArray: new (options: Omit<NativeInfo, 'memoryBytes' | 'bytesPerPage'>) => NativePageArray;
  NativeAddressSpace: new (mem: NativePageArray, pages: number, rules?: string | Partial<KernelRules>, thpOrders?: number, swapPages?: number) => NativeAddressSpace;
  runStress(options: NativeStressOptions): Promise<StressReport>;
  runBench(
    specs: NativeBenchSpec[],
    timing: { trials: number; trialMs: number },
    onProgress?: (done: number, total: number, label: string) => void,
  ): Promise<NativeBenchResult[]>;
  probeKernel(options: { bufferBytes: number; huge: boolean; trials: number }): Promise<NativeKernelProbe>;
  runProfile(
    request: { population: Population; schemes: string[]; biases: number[]; threads: number; sampleFolios: number; snapshot?: string },
    onProgress?: (done: number, total: number, what: string) => void,
  ): Promise<{ folios: number; pages: number; runs: NativeProfileRun[] }>;
  takeSnapshot(
    path: string,
    maxPages: number,
    onProgress?: (done: number, total: number) => void,
  ): Promise<{ pages: number; folios: number; foliosByOrder: Record<string, number>; allocatedPages: number; source: string }>;
  distributionTail(dist: Distribution, k: number): number;
  /** The registered schemes (native/core/pages/schemes/registry.h), in registry order. */
  schemes(): NativeSchemeInfo[];
  /**
   * Per order 0..30, one subpage pin: exact pincount kept, refcount cost of a read and a write
   * pin, whether the folio's pins share one reference, and the most pins such a folio holds.
   */
  schemeArithmetic(
    scheme: string,
    pinBias: number,
    pincountMinOrder: number,
  ): { exact: boolean[]; read: number[]; write: number[]; sharedRef: boolean[]; pinLimit: number[] };
  setErrorClass(cls: typeof PinlabError): void;
  opFormat(): NativeOpFormat;
  /** The results: their count (in `scratch`) or a fresh array; with the address spaces made, if any. */
  submitOps(
    mem: NativePageArray,
    ops: Uint32Array,
    stopOnError: boolean,
    spaces: [number, NativeAddressSpace][] | null,
    firstNewId: number,
    scratch: Int32Array,
  ): number | Int32Array | [number | Int32Array, [number, NativeAddressSpace][], number];
  writeOps(path: string, header: NativeOpHeader, chunks: Uint32Array[]): { records: number; ops: number; bytes: number };
  /** mm-new's settings word (rules and THP orders that differ from the defaults) for an address space. */
  opSpaceSettings(space: NativeAddressSpace): number;
  stateDigest(mem: NativePageArray, spaces: [number, NativeAddressSpace][]): NativeStateDigest;
  startReplay(
    request: { file: string; variants: { scheme: string; bias: number; pincountMinOrder: number }[]; threads: number; debug: number; digest: boolean },
    onProgress?: (done: number, total: number, what: string) => void,
  ): NativeJob<{ stream: NativeStreamInfo; results: NativeReplayRun[] }>;
  startSynth(
    path: string,
    options: { ops: number; seed: number; threads: number; pages: number; scheme: string; bias: number; debug: boolean; mix: string },
    onProgress?: (done: number, total: number, what: string) => void,
  ): NativeJob<{ path: string; ops: number; records: number }>;
  startConvert(in_: string, out: string, onProgress?: (done: number, total: number, what: string) => void): NativeJob<{ records: number }>;
}

// node-gyp-build finds the addon the ecosystem's way: a source build first (build/Release, then
// build/Debug, where cmake-js and node-gyp both put it), then a prebuilt shipped in the package
// (prebuilds/<platform>-<arch>/pinlab[.<tags>].node, Node-API so any Node ABI). lib/ and dist/ sit
// at the same depth, so '..' is the package root for the sources and the compiled package alike.
/** node-gyp-build's loader: `resolve(dir)` returns the path it would load, or throws. */
interface NodeGypBuild {
  (dir: string): unknown;
  resolve(dir: string): string;
}

function loadAddon(): NativeModule {
  const require = createRequire(import.meta.url);
  const root = fileURLToPath(new URL('..', import.meta.url));
  let found = process.env['PINLAB_ADDON'];
  if (found === undefined) {
    try {
      found = (require('node-gyp-build') as NodeGypBuild).resolve(root);
    } catch (e) {
      throw new Error(
        `pinlab: native addon not built (looked for build/Release/pinlab.node and a prebuilt in ` +
          `prebuilds/${process.platform}-${process.arch}/ under ${root}); run \`npm install\` ` +
          `(or \`npm install --build-from-source\`) or \`npm run build\``,
        { cause: e },
      );
    }
  }
  let mod: NativeModule;
  try {
    mod = require(found) as NativeModule;
  } catch (e) {
    // A prebuilt that the install script's load test accepted elsewhere (node_modules copied to
    // another system), or a build for another Node-API: say what to do, not only dlopen's words.
    throw new Error(
      `pinlab: the native addon ${found} does not load here (${String((e as Error).message).split('\n')[0]}); ` +
        `build it for this system: \`npm rebuild pinlab --build-from-source\` (needs CMake and a C++20 compiler)`,
      { cause: e },
    );
  }
  mod.setErrorClass(PinlabError);
  return mod;
}

/** The loaded addon. @internal */
export const native: NativeModule = loadAddon();
