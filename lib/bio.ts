// Block I/O requests (seed 004): a Bio holds bio_vecs over pinned user pages and page-cache
// pages, and one of the two 2019 release policies decides how their references are taken and
// dropped: Glisse's per-bvec flag, or Jan Kara's "every bio reference is a pin".
import type { AddressSpace } from './address-space.js';
import { PinlabError, invalid } from './errors.js';
import { PinFlag } from './native.js';
import { provenanceOf } from './owners/ledger.js';
import { isZeroPfn } from './owners/runs.js';
import { describeProvenance } from './owners/tracking.js';
import { nativeOf, ownerOption, pinsOf, type PageArray, type PinOwner } from './page-array.js';
import { bool, integer, oneOf, optionsObject, pfnArg, show } from './validate.js';

/**
 * How a bio's page references are taken and released:
 * - `'flagged'`: each bvec records how its reference was taken (a pin from user pages, a plain
 *   reference from `bioAddPage`), and completion releases each the matching way.
 * - `'all-pins'`: every bio reference is a pin; `bioAddPage` converts a page-cache reference
 *   into a pin, and completion always unpins.
 */
export type BioPolicy = 'flagged' | 'all-pins';

/** How a bvec's reference was taken: FOLL_PIN, or a plain get_page. */
export type BvecReference = 'pin' | 'get';

/** One bio_vec: `count` consecutive subpages of one folio from `pfn`, and how the bio holds them. */
export interface BioVec {
  /** First PFN. */
  pfn: number;
  /** Base pages. */
  count: number;
  /** How the reference was taken. */
  ref: BvecReference;
}

/** Options of {@link Bio}'s constructor and of {@link bioFromUserPages}. */
export interface BioOptions {
  /** The release policy (required: the point of the model is to choose). */
  policy: BioPolicy;
  /**
   * The device writes into the pages (a read from disk): user pages are pinned with FOLL_WRITE
   * and marked dirty when the bio completes. Default false (the device reads them).
   */
  write?: boolean;
  /** The owner of the bio's pins (see {@link PageArray.pinOwner}). Default: none. */
  owner?: PinOwner;
}

/** Options of {@link bioAddPage}. */
export interface BioAddPageOptions {
  /** Consecutive pages of one folio from `pfn`. Default 1. */
  count?: number;
}

/** How {@link Bio.release} drops every reference, whatever the bvecs' flags say. */
export type BioRelease = 'unpin' | 'put';

interface Take {
  ref: BvecReference;
  pfns: Uint32Array;
  /** A pin take: the ids its pin call's records got, [from, to) (see PinBookkeeping.releasedAtDrop). */
  records?: readonly [number, number];
}

/**
 * A block I/O request over pages of a {@link PageArray}. Build it with
 * {@link bioFromUserPages} and {@link bioAddPage}; finish it with {@link Bio.complete}.
 *
 * @example
 * ```ts
 * const bio = bioFromUserPages(mm, 0, 16, { policy: 'all-pins', write: true });
 * bioAddPage(bio, file.pfnAt(0)!);   // a page-cache page: pinned too under 'all-pins'
 * bio.complete();                     // unpins everything (and dirties the user pages)
 * ```
 */
export class Bio {
  /** The page array. */
  readonly mem: PageArray;
  /** The release policy. */
  readonly policy: BioPolicy;
  /** Whether the device writes into the pages. */
  readonly write: boolean;
  /** The owner of the bio's pins, or null. */
  readonly owner: PinOwner | null;
  #takes: Take[] = [];
  #bvecs: BioVec[] = [];
  #done = false;

  /** @throws PinlabError `EINVAL` for a missing or bad policy, or an owner of another page array */
  constructor(mem: PageArray, options: BioOptions) {
    const o = optionsObject('bio options', options, ['policy', 'write', 'owner']);
    if (o['policy'] === undefined) invalid(`a bio needs { policy: 'flagged' | 'all-pins' } (got ${show(options)})`);
    this.mem = mem;
    this.policy = oneOf('policy', o['policy'], POLICIES, 'flagged');
    this.write = bool('write', o['write'], false);
    this.owner = ownerOption(mem, o['owner']);
  }

  /** The bio_vecs, in the order they were added. */
  get bvecs(): readonly BioVec[] {
    return this.#bvecs;
  }

  /** Base pages in the bio. */
  get pages(): number {
    return this.#bvecs.reduce((n, b) => n + b.count, 0);
  }

  /** Whether the bio has completed (its references are released). */
  get completed(): boolean {
    return this.#done;
  }

  /**
   * Ends the I/O the right way for the policy: pins are unpinned (user pages dirtied when the
   * device wrote them), plain references put.
   * @throws PinlabError `EINVAL` if the bio already completed
   */
  complete(): void {
    this.#checkOpen();
    this.#releaseAll((take) => take.ref);
  }

  /**
   * Ends the I/O by dropping every reference one way, as a caller that ignores the policy would
   * (`'put'`: the old put_page loop; `'unpin'`: unpin_user_pages on everything). In debug mode a
   * reference taken the other way is caught before anything changes: `EPINNED` for a put of a
   * pin, `ENOTPINNED` for an unpin of a plain reference, naming the page and the call that took
   * it (in `'count'` mode counted, and the bio is completed correctly instead). Outside debug
   * mode a put of a pin goes through, as it would in the kernel (the pins leak, and
   * `checkBalanced()` finds them); an unpin of a plain reference is refused in every mode, before
   * anything changes (the core has no pin there to release).
   */
  release(how: BioRelease): void {
    const h = oneOf('release', how, RELEASES, 'unpin');
    this.#checkOpen();
    const wrong = this.#held().find((t) => (t.ref === 'pin') !== (h === 'unpin'));
    if (wrong !== undefined && (this.mem.debug || h === 'unpin')) {
      this.#detectWrongRelease(wrong, h);
      this.complete(); // 'count' mode: counted; release the right way
      return;
    }
    this.#releaseAll(() => (h === 'unpin' ? 'pin' : 'get'));
  }

  /** @internal Adds pages the bio now holds by `ref` (a pin take: its records' ids, [from, to)). */
  addTake(ref: BvecReference, pfns: Uint32Array, records?: readonly [number, number]): void {
    this.#takes.push(records === undefined ? { ref, pfns } : { ref, pfns, records });
    if (pfns.length === 1) {
      this.#bvecs.push({ pfn: pfns[0]!, count: 1, ref }); // one page is one bvec: no scan
      return;
    }
    for (const b of this.mem.toBvecs(pfns)) this.#bvecs.push({ pfn: b.pfn, count: b.count, ref });
  }

  /**
   * The takes the bio still holds: a pin take whose pin call's record its owner's drop with
   * `pins: 'release'` released went with the owner, so completing the bio leaves it out.
   * (Pins unpinned behind the bio's back, or an owner dropped with its pins reported, are not
   * left out: the completion's unpin answers for them, ENOTPINNED or a release.)
   */
  #held(): Take[] {
    const owner = this.owner;
    if (owner === null || !owner.dropped) return this.#takes;
    const pins = pinsOf(this.mem);
    return this.#takes.filter((t) => t.ref !== 'pin' || t.records === undefined || !pins.releasedAtDrop(owner, t.records[0], t.records[1]));
  }

  #checkOpen(): void {
    if (this.#done) invalid('the bio already completed');
  }

  /**
   * Releases every take, each `as` it says, all or nothing: the puts are checked first, against
   * the counts the unpins will leave (a put whose reference went behind the bio's back, on a
   * page the bio also pins, fails only once the pins went), then the pins go in one unpin
   * (refused whole, or done), then the puts (checked, so done). A refusal leaves the bio open
   * with every reference it held.
   */
  #releaseAll(as: (take: Take) => BvecReference): void {
    const zero = this.mem.zeroPfn, hugeZero = this.mem.hugeZeroPfn;
    const pins: number[] = [];
    const gets: number[] = [];
    for (const take of this.#held()) {
      const into = as(take) === 'pin' ? pins : gets;
      for (const pfn of take.pfns) if (!isZeroPfn(pfn, zero, hugeZero)) into.push(pfn);
    }
    const getList = Uint32Array.from(gets);
    const pinList = Uint32Array.from(pins);
    if (getList.length > 0) nativeOf(this.mem).checkPutPages(getList, pinList, this.write);
    if (pinList.length > 0) {
      this.mem.unpinPages(pinList, {
        write: this.write,
        dirty: this.write,
        ...(this.owner === null ? {} : { owner: this.owner }),
      });
    }
    for (const pfn of getList) {
      if (this.write) this.mem.setDirty(pfn); // the device filled it, as unpin's dirty does for pins
      this.mem.putPage(pfn);
    }
    this.#takes = [];
    this.#done = true;
  }

  #detectWrongRelease(take: Take, how: BioRelease): void {
    const pfn = take.pfns[0]!;
    const tracking = pinsOf(this.mem).tracking;
    const holders = take.ref === 'pin' ? tracking.holdersOf(pfn, pfn + 1, (r) => r.owner === this.owner).map(provenanceOf) : [];
    const taken = holders.length > 0 ? ` (pinned by ${describeProvenance(holders[holders.length - 1]!)})` : '';
    if (how === 'put') {
      tracking.detect('EPINNED', `bio release put_page on pfn ${pfn}, which the bio holds as a pin${taken}: policy '${this.policy}' releases pins with unpin`, holders);
    } else {
      tracking.detect('ENOTPINNED', `bio release unpins pfn ${pfn}, which the bio holds as a plain reference (bioAddPage under policy 'flagged')`, holders);
    }
  }
}

const POLICIES: readonly BioPolicy[] = ['flagged', 'all-pins'];
const RELEASES: readonly BioRelease[] = ['unpin', 'put'];

/**
 * Builds a bio over `count` user pages from virtual page `start` of `mm`, pinned with
 * pin_user_pages_fast (FOLL_PIN; FOLL_WRITE when the device writes). Under both policies these
 * references are pins. A partial pin gives a shorter bio (see {@link Bio.pages}).
 * @throws PinlabError as {@link AddressSpace.pinUserPagesFast}
 */
export function bioFromUserPages(mm: AddressSpace, start: number, count: number, options: BioOptions): Bio {
  const bio = new Bio(mm.mem, options);
  const tracking = pinsOf(mm.mem).tracking;
  const from = tracking.nextRecordId;
  const pfns = mm.pinUserPagesAs('bioFromUserPages', integer('start', start), integer('count', count), {
    write: bio.write,
    ...(bio.owner === null ? {} : { owner: bio.owner }),
  });
  bio.addTake('pin', pfns, [from, tracking.nextRecordId]);
  return bio;
}

/**
 * bio_add_page of a page-cache page (not user memory): under `'flagged'` the bio takes a plain
 * reference and flags the bvec; under `'all-pins'` it takes a pin instead (the reference is
 * "converted" to a pin, Jan Kara's rule), so completion can always unpin.
 * @throws PinlabError `EFREE` for a free page, `ERANGE`, `EINVAL` if the bio completed, its
 *   owner was dropped, or the range holds the zero page
 */
export function bioAddPage(bio: Bio, pfn: number, options?: BioAddPageOptions): void {
  if (!(bio instanceof Bio)) invalid(`bio must be a Bio (got ${show(bio)})`);
  if (bio.completed) invalid('the bio already completed');
  if (bio.owner?.dropped === true) invalid(`the bio's owner '${bio.owner.name}' was dropped and takes no new pins`);
  const o = optionsObject('bioAddPage options', options, ['count']);
  const first = pfnArg('pfn', pfn);
  const count = o['count'] === undefined ? 1 : integer('count', o['count']);
  if (count < 1) invalid(`count must be >= 1 (got ${count})`);
  if (first + count > bio.mem.pages) {
    throw new PinlabError('ERANGE', `pages ${first}..${first + count - 1} are out of range (pages: ${bio.mem.pages})`);
  }
  const zero = bio.mem.zeroPfn;
  if (zero !== null && zero >= first && zero < first + count) {
    invalid(`pfn ${zero} is the zero page, which a bio of page-cache pages cannot hold (it is never counted)`);
  }
  const hugeZero = bio.mem.hugeZeroPfn;
  if (hugeZero !== null && hugeZero < first + count && first < hugeZero + 512) {
    invalid(`pages ${first}..${first + count - 1} hold the huge zero folio's (${hugeZero}..${hugeZero + 511}), which a bio of page-cache pages cannot hold (never counted)`);
  }
  const pfns = new Uint32Array(count);
  for (let i = 0; i < count; i++) pfns[i] = first + i;
  if (bio.policy === 'all-pins') {
    const pins = pinsOf(bio.mem);
    const from = pins.tracking.nextRecordId;
    pins.pinList('bioAddPage', pfns, bio.write ? PinFlag.Write : 0, bio.owner);
    bio.addTake('pin', pfns, [from, pins.tracking.nextRecordId]);
    return;
  }
  getPagesAllOrNothing(bio.mem, pfns);
  bio.addTake('get', pfns);
}

function getPagesAllOrNothing(mem: PageArray, pfns: Uint32Array): void {
  let i = 0;
  try {
    for (; i < pfns.length; i++) mem.getPage(pfns[i]!);
  } catch (e) {
    for (let j = 0; j < i; j++) mem.putPage(pfns[j]!);
    throw e;
  }
}
