// Where reports are written: output folders checked before a long run, files written through a
// temporary that nobody can have planted (O_CREAT | O_EXCL | O_NOFOLLOW, next to the target)
// and renamed into place, and never through a symbolic link.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, lstat, mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';

import { PinlabError } from '../errors.js';

function kind(s: { isSymbolicLink(): boolean; isDirectory(): boolean; isFile(): boolean; isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean }): string {
  if (s.isSymbolicLink()) return 'a symbolic link';
  if (s.isDirectory()) return 'a directory';
  if (s.isFIFO()) return 'a FIFO';
  if (s.isCharacterDevice() || s.isBlockDevice()) return 'a device';
  if (s.isSocket()) return 'a socket';
  if (s.isFile()) return 'a regular file';
  return 'not a regular file';
}

function refuse(path: string, why: string): never {
  throw new PinlabError('EINVAL', `will not write ${path}: ${why}`);
}

/** Why a path cannot be used, from the errno of a call on it (a PinlabError, never a raw one). */
function refuseErrno(path: string, e: unknown): never {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'ENOTDIR') refuse(path, 'a part of it is not a directory');
  if (err.code === 'ENAMETOOLONG') refuse(path, 'the path or one of its names is too long');
  if (err.code === 'ELOOP') refuse(path, 'it goes through too many symbolic links');
  refuse(path, err.code ?? err.message);
}

/** lstat, or undefined where nothing is there. */
async function lstatOrNone(path: string) {
  try {
    return await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    refuseErrno(path, e);
  }
}

/**
 * A path argument as given: a string without NUL bytes, not empty. Anything else is refused
 * with a PinlabError (`EINVAL`), not the TypeError Node's path functions would throw.
 */
function checkPathArgument(path: unknown, what: 'folder' | 'file'): string {
  if (typeof path !== 'string') throw new PinlabError('EINVAL', `the ${what} must be a string (got ${typeof path})`);
  if (path === '') refuse("''", what === 'folder' ? 'an empty path names no folder (write . for the current one)' : 'an empty path names no file');
  if (path.includes('\0')) refuse(JSON.stringify(path), 'a path cannot hold a NUL byte');
  return path;
}

/**
 * mkdir -p of `root`, one level at a time: the nearest folder that exists is probed first (a
 * file created and removed), so a tree that takes no file (/proc) is refused before anything
 * is made, and every failure is a PinlabError naming the path (Node's recursive mkdir loops
 * forever under /proc and hides EROFS behind ENOENT).
 */
async function makeFolders(root: string): Promise<void> {
  const missing: string[] = [];
  let at = root;
  for (;;) {
    const s = await lstatOrNone(at);
    if (s !== undefined) {
      const d = s.isSymbolicLink() ? await stat(at).catch(() => undefined) : s;
      if (d === undefined || !d.isDirectory()) refuse(root, `${at} is ${d === undefined ? 'a dangling symbolic link' : kind(d)}, not a directory`);
      break;
    }
    missing.push(at);
    const up = dirname(at);
    if (up === at) break;
    at = up;
  }
  await probeWritable(at);
  for (const dir of missing.reverse()) {
    try {
      await mkdir(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') refuseErrno(dir, e);
    }
  }
}

/**
 * Makes sure a report can be written into `dir` before any work starts: the folder exists (it
 * is created, like `mkdir -p`) and is a directory, and none of `names` in it is anything but a
 * regular file (a symbolic link, a FIFO or a directory there is refused, not written through),
 * and a file can be created in it (one is created and removed: root passes access(2) on /proc).
 * An empty path, a NUL byte or a non-string is refused (`.` names the current folder).
 *
 * @returns the folder's absolute path
 * @throws PinlabError `EINVAL` naming the path and the reason
 */
export async function prepareOutputDir(dir: string, names: readonly string[]): Promise<string> {
  // An empty path would resolve to the current folder: a slip, never a choice.
  const root = resolve(checkPathArgument(dir, 'folder'));
  const there = await lstatOrNone(root);
  if (there === undefined) {
    await makeFolders(root);
  } else {
    // The folder itself may be a link to a folder (the user's own choice of path).
    const s = there.isSymbolicLink() ? await stat(root).catch(() => undefined) : there;
    if (s === undefined || !s.isDirectory()) refuse(root, `it is ${s === undefined ? 'a dangling symbolic link' : kind(s)}, not a directory`);
  }
  for (const name of names) {
    const s = await lstatOrNone(join(root, name));
    if (s !== undefined && !s.isFile()) refuse(join(root, name), `it is ${kind(s)}`);
  }
  await probeWritable(root);
  return root;
}

/**
 * Creates and removes one fresh file in `root` (O_CREAT | O_EXCL | O_NOFOLLOW), so a folder
 * that will not take files (read-only, /proc, a full disk's quota) is refused before a long
 * run rather than after it. Permission bits alone cannot tell: root passes access(2) on /proc.
 */
async function probeWritable(root: string): Promise<void> {
  let made: { tmp: string; handle: Awaited<ReturnType<typeof open>> };
  try {
    made = await openTemporary(join(root, '.pinlab-probe'));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    refuse(root, `no file can be created in it (${err.code ?? err.message})`);
  }
  await made.handle.close().catch(() => undefined);
  await unlink(made.tmp).catch(() => undefined);
}

/** A fresh temporary beside `target`: O_CREAT | O_EXCL | O_NOFOLLOW, so a planted name is never opened. */
async function openTemporary(target: string) {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  for (let attempt = 0; ; attempt++) {
    const tmp = `${target}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
    try {
      return { tmp, handle: await open(tmp, flags, 0o644) };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code !== 'EEXIST' && code !== 'ELOOP') || attempt >= 8) throw e;
    }
  }
}

/**
 * Writes `data` to `path` atomically: into a fresh temporary beside it (created with
 * O_CREAT | O_EXCL | O_NOFOLLOW, so a planted name is never opened), then renamed over the
 * target, which replaces the directory entry and never follows a link. A target that is a
 * symbolic link or not a regular file is refused, and nothing is left behind on failure.
 *
 * @throws PinlabError `EINVAL` if the target is not a regular file
 */
export async function writeFileAtomic(path: string, data: string): Promise<void> {
  const target = resolve(checkPathArgument(path, 'file'));
  const before = await lstatOrNone(target);
  if (before !== undefined && !before.isFile()) refuse(target, `it is ${kind(before)}`);
  const { tmp, handle } = await openTemporary(target);
  try {
    await handle.writeFile(data);
    await handle.close();
    const now = await lstatOrNone(target);
    if (now !== undefined && !now.isFile()) refuse(target, `it is ${kind(now)}`);
    await rename(tmp, target);
  } catch (e) {
    await handle.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

/** One file of a report. */
export interface ReportFile {
  /** The file's name inside the report folder. */
  name: string;
  /** Its contents. */
  data: string;
}

/** Options of the report writers ({@link writeReplayReport}; the files are written all or none). */
export interface WriteReportOptions {
  /**
   * Stops the writing (Ctrl-C): until the files are renamed into place, an abort removes every
   * temporary and the call rejects with {@link ReportStopped}, leaving none of the report's
   * files changed. Once the renames have started they all complete.
   */
  signal?: AbortSignal;
}

/**
 * The rejection of a report writer whose `signal` stopped it before its files were renamed
 * into place: none of them was written (the temporaries were removed). A PinlabError `EINVAL`,
 * as a replay stopped at the caller's request.
 */
export class ReportStopped extends PinlabError {
  /** @param dir - the report folder, as given */
  constructor(dir: string) {
    super('EINVAL', `the report to ${dir} was stopped at the caller's request; nothing was written`);
    this.name = 'ReportStopped';
  }
}

/**
 * Writes a report's files into `dir` (see {@link prepareOutputDir}) as a set, all or none: each
 * into a fresh temporary beside its target (O_CREAT | O_EXCL | O_NOFOLLOW) first, then, once
 * every one is written and every target is still absent or a regular file, all renamed into
 * place. A failure or a stop (`options.signal`) before the renames removes the temporaries and
 * changes none of the files. A rename that fails partway puts the files it already replaced
 * back (each old file was kept under a hard link until all are in place) and removes those
 * that replaced nothing; on a filesystem without hard links an old file cannot be put back.
 * Each name and its contents are read once, before anything is written.
 *
 * @returns the absolute paths written, in the order given
 * @throws ReportStopped if `options.signal` stopped it (nothing written); PinlabError `EINVAL`
 *   for a target that is not a regular file, or a name given twice
 */
export async function writeReportFiles(dir: string, files: readonly ReportFile[], options: WriteReportOptions = {}): Promise<string[]> {
  const signal = options.signal;
  checkPathArgument(dir, 'folder');
  const list = Array.from(files, (f) => ({ name: String(f.name), data: String(f.data) })); // each read once
  const stopped = (): boolean => signal?.aborted === true;
  if (stopped()) throw new ReportStopped(dir);
  // Two names for one path ('a', './a') would be kept aside twice and put back once.
  const where = list.map((f) => resolve(dir, f.name));
  const twice = where.findIndex((p, i) => where.indexOf(p) !== i);
  if (twice >= 0) throw new PinlabError('EINVAL', `a report cannot write ${where[twice]} twice (${list[twice]!.name})`);
  const root = await prepareOutputDir(dir, list.map((f) => f.name));
  const paths = list.map((f) => join(root, f.name));
  const temps: string[] = [];
  try {
    for (let i = 0; i < list.length; i++) {
      if (stopped()) throw new ReportStopped(dir);
      const { tmp, handle } = await openTemporary(paths[i]!);
      temps.push(tmp);
      try {
        await handle.writeFile(list[i]!.data);
      } finally {
        await handle.close();
      }
    }
    if (stopped()) throw new ReportStopped(dir);
    for (const target of paths) {
      const now = await lstatOrNone(target);
      if (now !== undefined && !now.isFile()) refuse(target, `it is ${kind(now)}`);
    }
  } catch (e) {
    await Promise.all(temps.map((t) => unlink(t).catch(() => undefined)));
    throw e;
  }
  // Every file is written and checked: the renames, one after the other, are not stopped. Each
  // file already there is kept under a second name (a hard link) until all are in place, so a
  // rename that fails partway puts the earlier ones back: the report changes whole or not at all.
  let backups: Kept[];
  try {
    backups = await keepOldFiles(paths);
  } catch (e) {
    await Promise.all(temps.map((t) => unlink(t).catch(() => undefined)));
    throw e;
  }
  for (let i = 0; i < paths.length; i++) {
    try {
      await rename(temps[i]!, paths[i]!);
    } catch (e) {
      await putBack(paths.slice(0, i), backups.slice(0, i));
      await Promise.all([...temps.slice(i), ...asides(backups.slice(i))].map((t) => unlink(t).catch(() => undefined)));
      throw e;
    }
  }
  await Promise.all(asides(backups).map((b) => unlink(b).catch(() => undefined)));
  return paths;
}

/** What was at a report file's path before its rename: nothing, a file kept aside, or a file that could not be. */
type Kept = { aside: string } | 'absent' | 'unkept';

const asides = (kept: readonly Kept[]): string[] => kept.flatMap((k) => (typeof k === 'object' ? [k.aside] : []));

/**
 * A second name (hard link, fresh, beside it) for each of `paths` that holds a file: what a
 * failed set of renames puts back. `'unkept'` on a filesystem without hard links (that file then
 * cannot be put back).
 */
async function keepOldFiles(paths: readonly string[]): Promise<Kept[]> {
  const out: Kept[] = [];
  try {
    for (const p of paths) out.push(await linkAside(p));
  } catch (e) {
    await Promise.all(asides(out).map((b) => unlink(b).catch(() => undefined)));
    throw e;
  }
  return out;
}

async function linkAside(path: string): Promise<Kept> {
  for (let attempt = 0; ; attempt++) {
    const aside = `${path}.old-${process.pid}-${randomBytes(6).toString('hex')}`;
    try {
      await link(path, aside); // link(2) does not follow a symbolic link (and the target is a regular file)
      return { aside };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return 'absent'; // nothing there to keep
      if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EMLINK') return 'unkept'; // no hard links here
      if (code !== 'EEXIST' || attempt >= 8) throw e;
    }
  }
}

/**
 * Undoes the renames over `paths`: each old file back under its name, a new file that replaced
 * nothing removed, one that replaced a file it could not keep left in place. Best effort.
 */
async function putBack(paths: readonly string[], kept: readonly Kept[]): Promise<void> {
  for (let j = paths.length - 1; j >= 0; j--) {
    const k = kept[j]!;
    if (k === 'unkept') continue;
    await (k === 'absent' ? unlink(paths[j]!) : rename(k.aside, paths[j]!)).catch(() => undefined);
  }
}

/** The files every report folder holds whatever the run: checked before a run starts. */
export const REPORT_FILES = ['results.json', 'results.md'] as const;
