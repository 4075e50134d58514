// Packaging: the package resolves itself by name through its exports (dist/), and node-gyp's
// binding.gyp builds exactly the sources CMake builds.
//
// This file deliberately does not import ../lib's classes: the addon keeps one error class per
// process, and the compiled dist/ copy is the one under test here. (lib/schemes.ts loads nothing.)
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { SCHEMES } from '../lib/schemes.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const DIST_HINT = 'dist/ is missing or incomplete: build it with `npx tsc -p tsconfig.build.json` (npm run build:ts)';

function requireDist(): void {
  const entry = join(root, 'dist', 'index.js');
  if (!existsSync(entry)) expect.fail(`${DIST_HINT} (no ${entry})`);
}

describe('package self-reference', () => {
  it('package.json exports "." to dist/index.js with types', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      name: string;
      type: string;
      exports: Record<string, { import?: string; types?: string } | string>;
    };
    expect(pkg.name).toBe('pinlab');
    expect(pkg.type).toBe('module');
    const dot = pkg.exports['.'];
    expect(typeof dot).toBe('object');
    expect((dot as { import?: string }).import).toBe('./dist/index.js');
    expect((dot as { types?: string }).types).toBe('./dist/index.d.ts');
  });

  it('dist/ holds a compiled module (and declarations) for every lib/ source', () => {
    requireDist();
    const sources = readdirSync(join(root, 'lib')).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
    expect(sources.length).toBeGreaterThan(0);
    const missing: string[] = [];
    for (const f of sources) {
      for (const out of [f.replace(/\.ts$/, '.js'), f.replace(/\.ts$/, '.d.ts')]) {
        if (!existsSync(join(root, 'dist', out))) missing.push(`dist/${out}`);
      }
    }
    if (missing.length > 0) expect.fail(`${DIST_HINT}: missing ${missing.join(', ')}`);
  });

  it("import('pinlab') resolves in this process and its exports work", async () => {
    requireDist();
    // A variable specifier keeps `tsc` from resolving it statically (the typecheck must not need
    // dist/); the runtime import is a plain self-reference by package name. Types come from lib/.
    const specifier = 'pinlab';
    const mod = (await import(/* @vite-ignore */ specifier)) as typeof import('../lib/index.js');
    expect(typeof mod.PageArray).toBe('function');
    expect(typeof mod.PinlabError).toBe('function');
    // The package's scheme list is the source's (lib/schemes.ts): not empty, no repeats.
    expect(mod.SCHEMES).toEqual(SCHEMES);
    expect(mod.SCHEMES.length).toBeGreaterThan(0);
    expect(new Set(mod.SCHEMES).size).toBe(mod.SCHEMES.length);
    expect(mod.SCHEMES).toContain('hybrid'); // the default scheme
    const pa = new mod.PageArray({ pages: 16, scheme: 'hybrid' });
    pa.makeFolio(8, 3);
    expect(pa.pinPages({ start: 8, count: 8 })).toBe(8);
    expect(pa.pincount(12)).toBe(8);
    expect(pa.maybeDmaPinned(15)).toBe(true);
    let err: unknown;
    try {
      pa.unpinPages({ start: 0, count: 1 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(mod.PinlabError);
    expect(err).toBeInstanceOf(Error);
    expect((err as { code: string }).code).toBe('ENOTPINNED');
    let optErr: unknown;
    try {
      new mod.PageArray({ pages: 0 });
    } catch (e) {
      optErr = e;
    }
    expect(optErr).toBeInstanceOf(mod.PinlabError);
    expect((optErr as { code: string }).code).toBe('EINVAL');
  });

  it("plain Node resolves import('pinlab') from the package root (no test-runner resolver)", () => {
    requireDist();
    const script = `
      const m = await import('pinlab');
      const pa = new m.PageArray({ pages: 8, scheme: 'bias' });
      pa.pinPages(new Uint32Array([3, 3]));
      let code = null, isErr = false;
      try { pa.getPage(8); } catch (e) { code = e.code; isErr = e instanceof m.PinlabError; }
      const url = import.meta.resolve('pinlab');
      console.log(JSON.stringify({ keys: Object.keys(m).sort(), ref: pa.refcount(3), code, isErr, url }));
    `;
    let out: string;
    try {
      out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
        cwd: root,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (e) {
      const x = e as { stderr?: string; message: string };
      expect.fail(`node could not import 'pinlab' from ${root}: ${x.stderr ?? x.message}`);
    }
    const r = JSON.parse(out.trim().split('\n').pop()!) as {
      keys: string[];
      ref: number;
      code: string;
      isErr: boolean;
      url: string;
    };
    expect(r.keys).toEqual(expect.arrayContaining(['PageArray', 'PinlabError', 'SCHEMES']));
    expect(r.ref).toBe(1 + 2 * 1024);
    expect(r.code).toBe('ERANGE');
    expect(r.isErr).toBe(true);
    expect(fileURLToPath(r.url)).toBe(join(root, 'dist', 'index.js'));
  });
});

describe('binding.gyp and CMake build the same sources', () => {
  function gypSources(): string[] {
    const text = readFileSync(join(root, 'binding.gyp'), 'utf8');
    let gyp: { targets: { target_name: string; sources?: string[] }[] };
    try {
      gyp = JSON.parse(text);
    } catch {
      // .gyp is a Python literal: allow # comments, single quotes and trailing commas
      const cleaned = text
        .replace(/^\s*#.*$/gm, '')
        .replace(/'/g, '"')
        .replace(/,(\s*[}\]])/g, '$1');
      gyp = JSON.parse(cleaned);
    }
    const target = gyp.targets.find((t) => t.target_name === 'pinlab');
    if (!target) expect.fail('binding.gyp has no "pinlab" target');
    // gyp expands <!@(command) into the command's whitespace-separated output.
    return (target.sources ?? []).flatMap((src) => {
      const cmd = /^<!@\((.*)\)$/.exec(src);
      if (!cmd) return [src];
      const [bin, ...args] = cmd[1]!.split(' ');
      return execFileSync(bin === 'node' ? process.execPath : bin!, args, { cwd: root, encoding: 'utf8' }).trim().split(/\s+/);
    });
  }

  function cppUnder(dir: string): string[] {
    return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((d) =>
      d.isDirectory() ? cppUnder(`${dir}/${d.name}`) : d.isFile() && d.name.endsWith('.cpp') ? [`${dir}/${d.name}`] : [],
    );
  }

  it('"sources" equals the .cpp files of native/core and native/addon, no more, no less, no repeats', () => {
    const listed = gypSources().map((s) => s.replace(/^\.\//, ''));
    const onDisk = [...cppUnder('native/core'), ...cppUnder('native/addon')];
    expect(onDisk.length).toBeGreaterThan(0);
    expect(new Set(listed).size, `duplicate entries in binding.gyp sources: ${listed.join(', ')}`).toBe(listed.length);
    const missingFromGyp = onDisk.filter((f) => !listed.includes(f));
    const notOnDisk = listed.filter((f) => !onDisk.includes(f));
    expect(missingFromGyp, 'on disk but not in binding.gyp').toEqual([]);
    expect(notOnDisk, 'in binding.gyp but not a .cpp file of native/core or native/addon').toEqual([]);
    expect([...listed].sort()).toEqual([...onDisk].sort());
  });

  it('CMake globs exactly those two directories for the addon (the core with its layer folders)', () => {
    const cmake = readFileSync(join(root, 'CMakeLists.txt'), 'utf8');
    expect(cmake).toMatch(/file\(GLOB_RECURSE\s+\w+\s+(CONFIGURE_DEPENDS\s+)?\S*native\/core\/\*\.cpp\)/);
    expect(cmake).toMatch(/file\(GLOB\s+\w+\s+(CONFIGURE_DEPENDS\s+)?\S*native\/addon\/\*\.cpp\)/);
  });
});

describe('the install script (scripts/install.mjs)', () => {
  it('reads npm_config_build_from_source as the ecosystem writes it', async () => {
    const script = join(root, 'scripts', 'install.mjs'); // a path: the .mjs has no type declarations
    const { buildFromSourceAsked } = (await import(script)) as {
      buildFromSourceAsked(value: string | undefined, name?: string): boolean;
    };
    for (const v of ['true', 'TRUE', ' True ', '1', 'yes', 'on', 'pinlab', 'PINLAB', 'sharp,pinlab', 'sharp, pinlab']) {
      expect(buildFromSourceAsked(v, 'pinlab'), v).toBe(true);
    }
    for (const v of [undefined, '', 'false', '0', 'no', 'sharp', 'pinlab-extra', 'pin']) {
      expect(buildFromSourceAsked(v, 'pinlab'), String(v)).toBe(false);
    }
  });

  it('is what package.json runs on install, and ships in the package', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string>; files: string[] };
    expect(pkg.scripts['install']).toBe('node scripts/install.mjs');
    expect(pkg.files).toContain('scripts/install.mjs');
  });
});

describe('the addon loader (lib/native.ts)', () => {
  it('an addon that does not load says how to build one for this system', async () => {
    requireDist();
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { spawnSync } = await import('node:child_process');
    const dir = mkdtempSync(join(tmpdir(), 'pinlab-loader-'));
    try {
      const bad = join(dir, 'pinlab.node');
      writeFileSync(bad, 'not an ELF shared object');
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(join(root, 'dist', 'index.js'))});`], {
        env: { ...process.env, PINLAB_ADDON: bad },
        encoding: 'utf8',
      });
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain(`pinlab: the native addon ${bad} does not load here`);
      expect(r.stderr).toContain('npm rebuild pinlab --build-from-source');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
