// "Installs without a compiler": the packed tarball carries a prebuilt addon for this platform,
// installs into a fresh project with no cmake and no C++ compiler on PATH, and runs the README's
// first example; a source build still happens when asked for and works from the tarball alone.
//
// One pack and one install (slow: ~20 s, plus ~40-90 s for the source build on 2 cores). The
// pack runs the package's prepack and postpack scripts around `npm pack --ignore-scripts`: the
// whole `npm pack` lifecycle except `prepare` (tsc), which would rewrite dist/ under the test
// files that import it in parallel. dist/ is already built by `npm install` in the checkout.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { delimiter, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  scripts: Record<string, string>;
};
const PREBUILT = `prebuilds/linux-x64/${pkg.name}.glibc.node`;
/** What a source build needs and the scratch project's PATH must not offer. */
const COMPILERS = ['cmake', 'c++', 'g++', 'gcc', 'cc', 'clang', 'clang++', 'make', 'ninja'];
const MINUTES = 60_000;

/** The caller's environment without npm's per-run settings or the addon overrides. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_userconfig', 'npm_config_registry']);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) && !keep.has(k.toLowerCase())) continue;
    if (['PINLAB', 'PINLAB_ADDON', 'PINLAB_PREBUILD', 'PREBUILDS_ONLY', 'LIBC'].includes(k)) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeout = 10 * MINUTES): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout, maxBuffer: 64 << 20 });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  if (r.error) throw new Error(`${what}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${what} exited ${r.status}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r.stdout;
}

/** Where `name` resolves on a PATH string, or null. */
function which(name: string, path: string): string | null {
  for (const dir of path.split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return null;
}

/** The README's first ```ts/```js block that imports the package: the usage example. */
function firstExample(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const fence = /^```(ts|typescript|js|javascript|mjs)\n([\s\S]*?)^```$/gm;
  for (let m = fence.exec(readme); m; m = fence.exec(readme)) {
    if (/from 'pinlab'/.test(m[2]!)) return m[2]!;
  }
  throw new Error("README.md has no ```ts or ```js block importing 'pinlab'");
}

/** The example's documented output: `console.log(...); // 'TEXT'...` lines, in order. */
function documentedOutput(example: string): string[] {
  return example
    .split('\n')
    .filter((l) => l.includes('console.log('))
    .map((l) => /\/\/\s*'([^']*)'/.exec(l)?.[1])
    .filter((s): s is string => s !== undefined);
}

/** Node code printing which .node files the process has mapped after importing the package. */
const LOADED = `
  await import('pinlab');
  const { readFileSync } = await import('node:fs');
  const maps = readFileSync('/proc/self/maps', 'utf8').split('\\n');
  console.log(JSON.stringify([...new Set(maps.filter((l) => l.endsWith('.node')).map((l) => l.split(/\\s+/).pop()))]));`;

const supported = platform() === 'linux' && arch() === 'x64';
const work = mkdtempSync(join(tmpdir(), 'pinlab-pack-'));
const scratch = join(work, 'scratch');
const installed = join(scratch, 'node_modules', pkg.name);
const toolbin = join(work, 'bin');
const barePath = toolbin;
let packed: { filename: string; size: number; unpackedSize: number; files: { path: string }[] };
let installLog = '';
let prepackStdout = '';

// A scratch node_modules and a build tree: removing them can take a while on a busy disk.
afterAll(() => rmSync(work, { recursive: true, force: true }), 5 * MINUTES);

describe.runIf(supported)('npm pack, then install without a compiler (linux-x64)', () => {
  beforeAll(() => {
    const started = Date.now();
    // The pack: prepack (cmake-js compile + prebuilds/), the tarball, postpack (prebuilds/ goes).
    const env = cleanEnv();
    try {
      prepackStdout = ok(run('npm', ['run', 'prepack'], root, env), 'npm run prepack');
      const out = ok(run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], root, env), 'npm pack');
      packed = (JSON.parse(out) as (typeof packed)[])[0]!;
    } finally {
      ok(run('npm', ['run', 'postpack'], root, env), 'npm run postpack');
    }

    // A PATH of node, npm and a shell only.
    mkdirSync(toolbin);
    for (const tool of ['npm', 'npx', 'sh', 'env']) {
      const at = which(tool, process.env['PATH'] ?? '');
      if (at === null) throw new Error(`${tool} is not on PATH`);
      symlinkSync(realpathSync(at), join(toolbin, tool));
    }
    symlinkSync(process.execPath, join(toolbin, 'node'));

    // The scratch project installs the tarball from the local npm cache where it can.
    mkdirSync(scratch);
    writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }) + '\n');
    const tarball = join(work, packed.filename);
    const args = ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts'];
    installLog = ok(run('npm', args, scratch, cleanEnv({ PATH: barePath })), 'npm install <tarball> without a compiler');
    console.log(
      `pinlab pack: ${packed.filename} ${packed.size} bytes packed, ${packed.unpackedSize} unpacked, ` +
        `${packed.files.length} files; pack + install ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  }, 10 * MINUTES);

  it('the tarball holds the prebuilt, dist/ and every source a build from source needs', () => {
    const files = new Set(packed.files.map((f) => f.path));
    expect(files).toContain(PREBUILT);
    for (const f of ['package.json', 'README.md', 'CMakeLists.txt', 'binding.gyp', 'scripts/gyp-sources.mjs', 'scripts/install.mjs', 'dist/index.js', 'dist/native.js']) {
      expect(files).toContain(f);
    }
    // native/core and native/addon whole, subfolders included.
    const walk = (dir: string): string[] =>
      readdirSync(join(root, dir), { withFileTypes: true }).flatMap((d) =>
        d.isDirectory() ? walk(`${dir}/${d.name}`) : [`${dir}/${d.name}`],
      );
    const sources = [...walk('native/core'), ...walk('native/addon')];
    expect(sources.length).toBeGreaterThan(0);
    expect(sources.filter((f) => !files.has(f))).toEqual([]);
    expect([...files].filter((f) => f.startsWith('build/') || f.startsWith('node_modules/'))).toEqual([]);
    expect([...files].filter((f) => f.startsWith('prebuilds/'))).toEqual([PREBUILT]);
  });

  it('prepack writes nothing to stdout but npm\'s own lines, so `npm pack --json` stays JSON', () => {
    const own = prepackStdout.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('> '));
    expect(own).toEqual([]);
  });

  it('pack leaves no prebuilds/ in the checkout', () => {
    expect(existsSync(join(root, 'prebuilds'))).toBe(false);
  });

  it('the scratch PATH offers no cmake and no C++ compiler', () => {
    for (const tool of COMPILERS) expect(which(tool, barePath), tool).toBeNull();
    const r = run('sh', ['-c', `for t in ${COMPILERS.join(' ')}; do command -v "$t"; done; exit 0`], scratch, cleanEnv({ PATH: barePath }));
    expect(ok(r, 'command -v').trim()).toBe('');
    expect(which('node', barePath)).not.toBeNull();
  });

  it('the install ran the install script and built nothing', () => {
    expect(installLog).toContain(`${pkg.name}@${pkg.version} install`);
    expect(existsSync(join(installed, PREBUILT))).toBe(true);
    expect(existsSync(join(installed, 'build'))).toBe(false);
  });

  it("runs the README's first example there and prints what it documents", () => {
    const example = firstExample();
    const js = ts.transpileModule(example, {
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
    }).outputText;
    writeFileSync(join(scratch, 'example.mjs'), js);
    const r = run('node', ['example.mjs'], scratch, cleanEnv({ PATH: barePath }), 2 * MINUTES);
    const stdout = ok(r, 'node example.mjs');
    expect(r.stderr).toBe('');
    const expected = documentedOutput(example);
    expect(expected.length).toBeGreaterThan(0);
    expect(stdout.trimEnd().split('\n')).toEqual(expected);
  });

  it('the installed package loaded the prebuilt', () => {
    const r = run('node', ['--input-type=module', '-e', LOADED], scratch, cleanEnv({ PATH: barePath }));
    const loaded = JSON.parse(ok(r, 'load probe').trim()) as string[];
    expect(loaded.map((p) => relative(realpathSync(installed), p))).toEqual([PREBUILT]);
  });

  it('npm rebuild keeps the prebuilt; --build-from-source or another arch chooses a build (no cmake: it fails)', () => {
    const bare = cleanEnv({ PATH: barePath });
    const keep = run('npm', ['rebuild', pkg.name, '--foreground-scripts'], scratch, bare);
    ok(keep, 'npm rebuild');
    expect(existsSync(join(installed, 'build'))).toBe(false);

    // Each switch makes the install script run cmake-js, which finds no compiler on this PATH.
    const fromSource = (value: string) => cleanEnv({ PATH: barePath, npm_config_build_from_source: value });
    const tries: [string, string[], NodeJS.ProcessEnv][] = [
      ['--build-from-source', ['--build-from-source'], bare],
      ['npm_config_build_from_source=true', [], fromSource('true')],
      ['npm_config_build_from_source=1', [], fromSource('1')],
      ['npm_config_build_from_source=TRUE', [], fromSource('TRUE')],
      [`npm_config_build_from_source=${pkg.name} (this package only)`, [], fromSource(`other,${pkg.name}`)],
      ['--arch=arm64 (no prebuilt)', ['--arch=arm64'], bare],
    ];
    for (const [what, flags, env] of tries) {
      const r = run('npm', ['rebuild', pkg.name, '--foreground-scripts', ...flags], scratch, env);
      const out = r.stdout + r.stderr;
      expect(r.status, `${what}: ${out}`).not.toBe(0);
      expect(out, what).toMatch(/cmake-js compile --out build/);
      expect(out, what).toMatch(/Compiler toolset is not available|CMake.*not found/i);
    }
    // ... and these do not: another package named, or false.
    for (const value of ['other-package', 'false', '']) {
      ok(run('npm', ['rebuild', pkg.name, '--foreground-scripts'], scratch, fromSource(value)), `npm rebuild, npm_config_build_from_source=${value}`);
      expect(existsSync(join(installed, 'build')), value).toBe(false);
    }
  });

  it('a prebuilt that does not load here (another libc, an older system) falls back to a build, PINLAB set or not', () => {
    const prebuilt = join(installed, PREBUILT);
    const good = readFileSync(prebuilt);
    try {
      writeFileSync(prebuilt, 'not an ELF shared object'); // dlopen fails, as on a mismatched system
      const extras: Record<string, string>[] = [{}, { PINLAB: '1' }];
      for (const extra of extras) {
        const r = run('npm', ['rebuild', pkg.name, '--foreground-scripts'], scratch, cleanEnv({ PATH: barePath, ...extra }));
        const out = r.stdout + r.stderr;
        const what = JSON.stringify(extra);
        expect(r.status, `${what}: ${out}`).not.toBe(0);
        expect(out, what).toMatch(/no usable prebuilt addon/);
        expect(out, what).toMatch(/cmake-js compile --out build/);
      }
    } finally {
      writeFileSync(prebuilt, good);
    }
    ok(run('npm', ['rebuild', pkg.name, '--foreground-scripts'], scratch, cleanEnv({ PATH: barePath })), 'npm rebuild with the prebuilt back');
    expect(existsSync(join(installed, 'build'))).toBe(false);
  });

  it("the README states the tarball's size as npm pack measures it (within 2%)", () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const size = Number(/`size`\s*(\d+) bytes/.exec(readme)?.[1]);
    const unpacked = Number(/`unpackedSize`\s*(\d+) bytes/.exec(readme)?.[1]);
    const measured = `measured: size ${packed.size} bytes, unpackedSize ${packed.unpackedSize} bytes`;
    expect(Math.abs(size / packed.size - 1), measured).toBeLessThan(0.02);
    expect(Math.abs(unpacked / packed.unpackedSize - 1), measured).toBeLessThan(0.02);
  });

  it(
    'a build from source of the tarball works when asked, and is then loaded first',
    () => {
      rmSync(join(installed, 'build'), { recursive: true, force: true });
      // -O1 (CMakeLists.txt's PINLAB_CXX_OPT): this build only has to work and load.
      const env = cleanEnv({ npm_config_build_from_source: 'true', PINLAB_CXX_OPT: '-O1' });
      ok(run('npm', ['rebuild', pkg.name, '--foreground-scripts'], scratch, env), 'npm rebuild --build-from-source');
      expect(existsSync(join(installed, 'build', 'Release', `${pkg.name}.node`))).toBe(true);
      const r = run('node', ['--input-type=module', '-e', LOADED], scratch, cleanEnv());
      const loaded = JSON.parse(ok(r, 'load probe').trim()) as string[];
      expect(loaded.map((p) => relative(realpathSync(installed), p))).toEqual([`build/Release/${pkg.name}.node`]);
      const example = run('node', ['example.mjs'], scratch, cleanEnv(), 2 * MINUTES);
      expect(ok(example, 'node example.mjs (source build)').trimEnd().split('\n')).toEqual(documentedOutput(firstExample()));
    },
    10 * MINUTES,
  );
});
