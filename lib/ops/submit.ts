// PageArray.submit and PageArray.record, behind the page array: a batch of ops in one native
// call, and the recorder's start.
import { PinlabError, invalid } from '../errors.js';
import { native, type NativeOpHeader, type NativePageArray } from '../native.js';
import { copyUint32, isUint32Array, optionsObject, show, uint32List } from '../validate.js';
import { OP_NOT_RUN } from './format.js';
import { OpRecorder } from './recorder.js';
import { adoptSpaces, batchNeedsFollow, checkBatch, followBatch, hasRaceHook, hasSpaces, liveSpaces, nextSpaceId } from './spaces.js';

/** Options of {@link PageArray.submit}. */
export interface SubmitOptions {
  /**
   * `'stop'` (default): the first op refused ends the batch; the ops after it do not run and
   * report {@link OP_NOT_RUN}. `'continue'`: every op runs, whatever the ones before it did.
   */
  onError?: 'stop' | 'continue';
}

const recorders = new WeakMap<NativePageArray, OpRecorder>();

/** Where the addon writes a batch's results, one buffer per thread, copied out at once. */
const scratch = new Int32Array(4096);

/** @internal PageArray.submit: checks, the native call, the address spaces it made, the recording. */
export function submitOps(memObject: object, mem: NativePageArray, ops: unknown, options: unknown): Int32Array {
  const o = optionsObject('submit options', options, ['onError']);
  const onError = o['onError'] ?? 'stop';
  if (onError !== 'stop' && onError !== 'continue') invalid(`onError must be 'stop' | 'continue' (got ${show(onError)})`);
  // A real Uint32Array (its internal type, not its prototype), read by the built-ins only.
  if (!isUint32Array(ops)) invalid(`ops must be a Uint32Array of op records (got ${show(ops)})`);
  uint32List('ops', ops); // a detached buffer is EINVAL, not an empty batch (the addon refuses it too)
  const spaces = liveSpaces(mem);
  const hooked = spaces.find(([, h]) => hasRaceHook(h));
  if (hooked !== undefined) {
    throw new PinlabError('EBUSY', `mm#${hooked[0]} has a race hook: remove it (setRaceHook(null)) before submitting a batch (a hook runs JS inside the walk)`);
  }
  // Recording: the batch is read once, into a copy of our own, which both the addon runs and
  // the recording keeps (a SharedArrayBuffer another thread rewrites could otherwise make the
  // recording differ from what ran). The copy is a plain Uint32Array made by its constructor,
  // which reads the source's internal length and elements: a subclass's Symbol.species (which
  // slice() would call), own `length` or `subarray` cannot choose what it holds. Without a
  // recorder the addon copies the records itself, by their real length.
  // The same copy when the files' records of their mappings follow the batch: the check before
  // it, the addon and the follow-up after it then read the same records (a SharedArrayBuffer
  // rewritten between them could otherwise pass a fork the check refuses, or move the records
  // by an munmap other than the one that ran). With no file mapped (the common case), nothing
  // to check or follow: the batch's cost stays the native call's.
  const rec = recorders.get(mem);
  const follow = batchNeedsFollow(mem, spaces);
  const batch = rec?.active === true || follow ? copyUint32(ops) : ops;
  if (follow) checkBatch(mem, batch); // what the files' records of their mappings could not follow
  // Room for every record of the batch before it runs: a recording that cannot grow refuses
  // the batch now (ENOMEM, nothing ran), not after its ops changed the array.
  if (rec?.active === true) {
    // A recording's address space is used only by the tag that created it: a batch that
    // breaks that is refused now (EINVAL, nothing ran).
    rec.checkBatchTags(batch, new Set(spaces.map(([id]) => id)));
    rec.reserveBatch(batch.length);
  }
  const out = native.submitOps(mem, batch, onError === 'stop', spaces, nextSpaceId(mem), scratch);
  const [r, created] = Array.isArray(out) ? [out[0], out] : [out, null];
  const results = typeof r === 'number' ? scratch.slice(0, r) : r;
  // Recorded before the spaces it made are adopted: the recorder learns which tag made each.
  if (rec?.active === true) rec.appendBatch(batch, results, OP_NOT_RUN);
  if (created !== null) adoptSpaces(memObject, mem, created[1], created[2]);
  if (follow) followBatch(mem, batch, results); // the files' records of their mappings, as one by one
  return results;
}

/** @internal PageArray.record: one recorder at a time, started before any address space exists. */
export function startRecording(mem: NativePageArray, header: NativeOpHeader): OpRecorder {
  if (recorders.get(mem)?.active === true) {
    throw new PinlabError('EBUSY', 'this page array is already recording (stop() the recorder first)');
  }
  if (hasSpaces(mem)) {
    throw new PinlabError(
      'EBUSY',
      'record() must start before the first address space is created: a replay builds its address spaces from the stream',
    );
  }
  // A stopped recorder is forgotten here: the page array no longer holds its recording, which
  // lives as long as the caller keeps the recorder.
  const rec: OpRecorder = new OpRecorder(mem, header, () => {
    if (recorders.get(mem) === rec) recorders.delete(mem);
  });
  recorders.set(mem, rec);
  return rec;
}
