// What the op-stream tests share.
import { expect } from 'vitest';

import { AddressSpace, HugetlbFile, PageArray, PinlabError, opResultName, type OpFlagName, type OpName } from '../lib/index.js';
import { nativeOf } from '../lib/page-array.js';

/** Rewrites a stream's checksums after a patch (FNV-1a over words, folded: op_format.h). */
export function rechecksum(bytes: Buffer): void {
  const fold = (from: number, to: number): bigint => {
    let h = 0xcbf29ce484222325n;
    for (let i = from; i < to; i += 8) h = ((h ^ bytes.readBigUInt64LE(i)) * 0x100000001b3n) & 0xffffffffffffffffn;
    return h ^ (h >> 32n);
  };
  bytes.writeBigUInt64LE(fold(96, bytes.length), 80);
  bytes.writeBigUInt64LE(fold(0, 88), 88);
}

export type PlannedOp = { op: OpName; a?: number; b?: number; mm?: number; flags?: OpFlagName[]; entries?: number[] };

/**
 * A planned op through the JS API, as a test's reference for the same op in a batch: its result
 * as submit reports it (a count, or -code). `spaces` maps the plan's address-space ids to the
 * spaces made so far.
 */
export function runPlannedOp(mem: PageArray, spaces: Map<number, AddressSpace>, p: PlannedOp): number {
  const has = (f: string): boolean => p.flags?.includes(f as never) === true;
  // An address space whose creation failed does not exist: its ops are EINVAL in a batch.
  if (p.op !== 'mm-new' && p.mm !== undefined && !spaces.has(p.mm)) return -1;
  try {
    switch (p.op) {
      case 'pin':
        return p.entries !== undefined
          ? mem.pinPages(new Uint32Array(p.entries), { write: has('write'), path: has('perPage') ? 'per-page' : 'bvec' })
          : mem.pinPages({ start: p.a!, count: p.b! }, { write: has('write'), path: has('perPage') ? 'per-page' : 'bvec' });
      case 'unpin':
        if (p.entries !== undefined) {
          mem.unpinPages(new Uint32Array(p.entries), { write: has('write'), dirty: has('dirty'), path: has('perPage') ? 'per-page' : 'bvec' });
          return p.entries.length;
        }
        mem.unpinPages({ start: p.a!, count: p.b! }, { write: has('write'), dirty: has('dirty'), path: has('perPage') ? 'per-page' : 'bvec' });
        return p.b!;
      case 'get':
        mem.getPage(p.a!, p.b!);
        return 0;
      case 'put':
        return mem.putPage(p.a!, p.b!) ? 1 : 0;
      case 'try-get':
        return mem.tryGetPage(p.a!, p.b!) ? 1 : 0;
      case 'set-dirty':
        mem.setDirty(p.a!);
        return 0;
      case 'unpin-lists': {
        // No JS call of its own: an owner's drop under write-bias makes this engine call.
        const e = new Uint32Array(p.entries ?? []);
        nativeOf(mem).unpinLists(e.subarray(0, p.a!), e.subarray(p.a!));
        return e.length;
      }
      case 'alloc-folio':
        return mem.allocFolio(p.b!, { movable: has('movable') });
      case 'mm-new':
        spaces.set(p.mm!, new AddressSpace(mem, { pages: p.a!, ...(p.entries !== undefined ? { swapPages: p.entries[0]! } : {}) }));
        return 0;
      case 'madvise': {
        const mm = spaces.get(p.mm!)!;
        const advice = (['dontneed', 'dontfork', 'dofork', 'pageout', 'collapse'] as const)[p.entries![0]!]!;
        const before = mm.stats().collapses;
        mm.madvise({ start: p.a!, count: p.b! }, advice);
        return advice === 'collapse' ? mm.stats().collapses - before : 0; // THPs made
      }
      case 'mremap':
        return spaces.get(p.mm!)!.mremap({
          start: p.a!,
          count: p.b!,
          newCount: p.entries![0]!,
          mayMove: has('mayMove'),
          fixed: has('fixed'),
          dontUnmap: has('dontUnmap'),
          ...(has('fixed') ? { newStart: p.entries![1]! } : {}),
        });
      case 'khugepaged':
        return spaces.get(p.mm!)!.khugepaged({ maxPtesNone: p.a!, maxPtesShared: p.b! }).collapsed;
      case 'mmap-hugetlb':
        spaces.get(p.mm!)!.mmap({ start: p.a!, count: p.b!, hugetlb: p.entries![0]! as 9, write: has('write'), populate: has('populate'), shared: has('shared') });
        return 0;
      case 'hugetlb-pool':
        mem.setHugetlbPages(p.a! as 9, p.b!);
        return 0;
      case 'hugetlb-alloc':
        new HugetlbFile(mem, { name: 'h', order: p.a! as 9, pages: p.b! * 2 ** p.a! });
        return p.b!;
      case 'pin-user':
        return spaces.get(p.mm!)!.pinUserPages(p.a!, p.b!, { write: has('write') }).count;
      case 'mmap':
        spaces.get(p.mm!)!.mmap({ start: p.a!, count: p.b!, write: has('write'), populate: has('populate'), huge: has('huge') });
        return 0;
      case 'touch':
        spaces.get(p.mm!)!.touch(p.a!, p.b!, { write: has('write') });
        return 0;
      case 'munmap':
        spaces.get(p.mm!)!.munmap({ start: p.a!, count: p.b! });
        return 0;
      case 'migrate':
        return spaces.get(p.mm!)!.migrate({ start: p.a!, count: p.b! });
      case 'fork': {
        const child = spaces.get(p.mm!)!.fork();
        spaces.set(p.a!, child);
        return 0;
      }
      default:
        throw new Error(`not planned: ${p.op}`);
    }
  } catch (e) {
    if (!(e instanceof PinlabError)) throw e;
    const names = ['OK', 'EINVAL', 'ERANGE', 'EFREE', 'EOVERFLOW', 'EBUSY', 'EPINNED', 'ENOTPINNED', 'ENOMEM', 'EFAULT', 'EACCES', 'ENOENT', 'EAGAIN'];
    const n = names.indexOf(e.code);
    expect(opResultName(-n)).toBe(e.code); // the table above agrees with the addon's
    return -n;
  }
}
