// The core's folders are its layers (native/core/README.md): a folder includes only itself and
// the folders below it, the core never includes Node-API or the addon, and the native tests and
// benchmarks follow the same rule. These checks read the #include lines of every file.
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const core = join(root, 'native', 'core');

/** What each layer of native/core may include (itself included). */
const ALLOWED: Record<string, string[]> = {
  base: ['base'],
  pages: ['base', 'pages'],
  host: ['base', 'host'],
  mm: ['base', 'pages', 'mm'],
  engines: ['base', 'pages', 'mm', 'host', 'engines'],
};

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : /\.(h|cpp)$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

function quotedIncludes(file: string): string[] {
  return [...readFileSync(file, 'utf8').matchAll(/^\s*#\s*include\s+"([^"]+)"/gm)].map((m) => m[1]!);
}

function angleIncludes(file: string): string[] {
  return [...readFileSync(file, 'utf8').matchAll(/^\s*#\s*include\s+<([^>]+)>/gm)].map((m) => m[1]!);
}

/** Violations of the layer rule for the files under dir, each "file -> include". */
export function layerViolations(dir: string, layerOf: (file: string) => string | undefined): string[] {
  const bad: string[] = [];
  for (const f of files(dir)) {
    const layer = layerOf(f);
    const allowed = layer === undefined ? Object.keys(ALLOWED) : ALLOWED[layer]!;
    for (const inc of quotedIncludes(f)) {
      const top = inc.split('/')[0]!;
      if (!(top in ALLOWED)) continue; // a local helper (check.h, fixtures.h, bench_util.h)
      if (!allowed.includes(top)) bad.push(`${relative(root, f)} -> ${inc}`);
    }
  }
  return bad;
}

describe('native/core layers', () => {
  it('native/core holds exactly the layer folders, and no source file outside them', () => {
    const entries = readdirSync(core, { withFileTypes: true });
    const dirs = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
    expect(dirs).toEqual(Object.keys(ALLOWED).sort());
    expect(entries.filter((e) => e.isFile() && /\.(h|cpp)$/.test(e.name)).map((e) => e.name)).toEqual([]);
  });

  it('no core file includes a layer above its own', () => {
    const layerOf = (f: string) => relative(core, f).split('/')[0];
    expect(layerViolations(core, layerOf)).toEqual([]);
  });

  it('every quoted include of the core names its folder (pages/page_array.h, not page_array.h)', () => {
    const bare = files(core).flatMap((f) =>
      quotedIncludes(f).filter((inc) => !inc.includes('/')).map((inc) => `${relative(root, f)} -> ${inc}`),
    );
    expect(bare).toEqual([]);
  });

  it('the core knows nothing of Node-API or the addon', () => {
    const bad = files(core).flatMap((f) =>
      [...angleIncludes(f), ...quotedIncludes(f)]
        .filter((inc) => /napi|node_api|^addon\//.test(inc))
        .map((inc) => `${relative(root, f)} -> ${inc}`),
    );
    expect(bad).toEqual([]);
  });

  it('native tests follow the split: tests/<layer>/ includes only that layer and those below', () => {
    const tests = join(root, 'native', 'tests');
    const layerOf = (f: string) => {
      const top = relative(tests, f).split('/')[0]!;
      return top in ALLOWED ? top : 'base'; // main.cpp, check.h, fixtures.h: harness only
    };
    const dirs = readdirSync(tests, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    for (const d of dirs) expect(Object.keys(ALLOWED)).toContain(d);
    // fixtures.h is the pages-level helper every layer's tests share.
    const bad = layerViolations(tests, layerOf).filter((v) => !v.startsWith('native/tests/fixtures.h'));
    expect(bad).toEqual([]);
  });

  it('the check itself catches an upward include', () => {
    // A pages file that includes the mm layer must be reported.
    const fake = (f: string) => (f.endsWith('page_array.h') ? 'base' : relative(core, f).split('/')[0]);
    expect(layerViolations(join(core, 'pages'), fake).some((v) => v.includes('page_array.h -> pages/'))).toBe(true);
  });
});
