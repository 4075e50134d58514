// The core's folders are its layers (native/core/README.md): a folder includes only itself and
// the folders below it, the core never includes Node-API or the addon, and the native tests
// follow the same rule. These checks read the #include lines of every file and resolve each
// one as the compiler does (a quoted include from the including file's folder first, then the
// include paths; an angle include from the include paths), so an include that reaches a
// header of a layer above is caught however it is spelled: "../mm/x.h", "pages/../mm/x.h",
// <mm/x.h>, or through a test helper that includes it.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const core = join(root, 'native', 'core');
const tests = join(root, 'native', 'tests');

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

interface Include {
  text: string; // as written
  angle: boolean;
}

function includes(file: string): Include[] {
  return [...readFileSync(file, 'utf8').matchAll(/^\s*#\s*include\s*(?:"([^"]+)"|<([^>]+)>)/gm)].map((m) => ({
    text: (m[1] ?? m[2])!,
    angle: m[2] !== undefined,
  }));
}

/** The tree a check runs over: the core's folder and the include paths the build gives. */
interface Tree {
  core: string;
  /** -I paths, in order (CMakeLists.txt: native/core; the native tests add native/tests). */
  includePaths: string[];
}

/** The file an include names, as the compiler finds it, or null (a system header). */
function resolveInclude(from: string, inc: Include, tree: Tree): string | null {
  const dirs = [...(inc.angle ? [] : [dirname(from)]), ...tree.includePaths];
  for (const d of dirs) {
    const p = resolve(d, inc.text);
    if (existsSync(p)) return p;
  }
  return null;
}

const under = (dir: string, p: string): boolean => p.startsWith(dir + sep);
const layerIn = (tree: Tree, p: string): string => relative(tree.core, p).split(sep)[0]!;

/**
 * Violations of the layer rule for the files under dir, each "file -> include": an include
 * that resolves to a core header of a layer the file's layer may not include. Headers outside
 * the core (a test's check.h, fixtures.h) are followed: what they include counts for the file.
 */
export function layerViolations(dir: string, layerOf: (file: string) => string | undefined, tree: Tree): string[] {
  const bad: string[] = [];
  for (const f of files(dir)) {
    const layer = layerOf(f);
    const allowed = layer === undefined ? Object.keys(ALLOWED) : ALLOWED[layer]!;
    const seen = new Set<string>();
    const walk = (file: string, via: string): void => {
      for (const inc of includes(file)) {
        const target = resolveInclude(file, inc, tree);
        if (target === null || seen.has(target)) continue;
        seen.add(target);
        if (under(tree.core, target)) {
          if (!allowed.includes(layerIn(tree, target))) bad.push(`${relative(root, f)}${via} -> ${inc.angle ? `<${inc.text}>` : inc.text}`);
        } else {
          walk(target, `${via} -> ${relative(dirname(f), target)}`); // a local helper: what it includes counts
        }
      }
    };
    walk(f, '');
  }
  return bad;
}

/**
 * Includes of a core header not written the one way: quoted, from native/core
 * ("pages/page_array.h"), so that a file's layers show in its #include lines.
 */
function spellingViolations(fileList: string[], tree: Tree): string[] {
  const bad: string[] = [];
  for (const f of fileList) {
    for (const inc of includes(f)) {
      const target = resolveInclude(f, inc, tree);
      if (target === null || !under(tree.core, target)) continue;
      const canonical = relative(tree.core, target).split(sep).join('/');
      if (inc.angle || inc.text !== canonical) bad.push(`${relative(root, f)} -> ${inc.angle ? `<${inc.text}>` : `"${inc.text}"`} (write "${canonical}")`);
    }
  }
  return bad;
}

const coreTree: Tree = { core, includePaths: [core] };
const testTree: Tree = { core, includePaths: [tests, core] };

describe('native/core layers', () => {
  it('native/core holds exactly the layer folders, and no source file outside them', () => {
    const entries = readdirSync(core, { withFileTypes: true });
    const dirs = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
    expect(dirs).toEqual(Object.keys(ALLOWED).sort());
    expect(entries.filter((e) => e.isFile() && /\.(h|cpp)$/.test(e.name)).map((e) => e.name)).toEqual([]);
  });

  it('no core file includes a layer above its own', () => {
    const layerOf = (f: string) => relative(core, f).split(sep)[0];
    expect(layerViolations(core, layerOf, coreTree)).toEqual([]);
  });

  it('every include of a core header is quoted and written from native/core (pages/page_array.h)', () => {
    const all = [...files(core), ...files(tests), ...files(join(root, 'native', 'addon')), ...files(join(root, 'bench', 'native'))];
    expect(spellingViolations(all, testTree)).toEqual([]);
  });

  it('the core knows nothing of Node-API or the addon', () => {
    const bad = files(core).flatMap((f) =>
      includes(f)
        .map((i) => i.text)
        .filter((inc) => /napi|node_api|^addon\/|(^|\/)native\/addon\//.test(inc))
        .map((inc) => `${relative(root, f)} -> ${inc}`),
    );
    expect(bad).toEqual([]);
  });

  it('native tests follow the split: tests/<layer>/ reaches only that layer and those below', () => {
    const layerOf = (f: string) => {
      const top = relative(tests, f).split(sep)[0]!;
      return top in ALLOWED ? top : undefined; // main.cpp, check.h, fixtures.h: followed from each test
    };
    const dirs = readdirSync(tests, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    for (const d of dirs) expect(Object.keys(ALLOWED)).toContain(d);
    const testFiles = (d: string) => (existsSync(join(tests, d)) ? [join(tests, d)] : []);
    const bad = Object.keys(ALLOWED).flatMap(testFiles).flatMap((d) => layerViolations(d, layerOf, testTree));
    expect(bad).toEqual([]);
  });

  it('the check itself catches an upward include however it is spelled, and through a helper', () => {
    const work = mkdtempSync(join(tmpdir(), 'pinlab-layers-'));
    try {
      const fakeCore = join(work, 'core');
      const fakeTests = join(work, 'tests');
      for (const d of ['base', 'pages', 'mm']) mkdirSync(join(fakeCore, d), { recursive: true });
      mkdirSync(join(fakeTests, 'pages'), { recursive: true });
      writeFileSync(join(fakeCore, 'mm', 'space.h'), '#pragma once\n');
      writeFileSync(join(fakeCore, 'base', 'ok.h'), '#pragma once\n');
      const forms = ['#include "mm/space.h"', '#include "../mm/space.h"', '#include "pages/../mm/space.h"', '#include <mm/space.h>', '#  include   "mm/space.h"'];
      forms.forEach((form, i) => writeFileSync(join(fakeCore, 'pages', `p${i}.h`), `#pragma once\n#include "base/ok.h"\n${form}\n`));
      writeFileSync(join(fakeCore, 'pages', 'clean.h'), '#pragma once\n#include "base/ok.h"\n#include <vector>\n');
      const tree: Tree = { core: fakeCore, includePaths: [fakeCore] };
      const layerOf = (f: string) => relative(fakeCore, f).split(sep)[0];
      const found = layerViolations(join(fakeCore, 'pages'), layerOf, tree);
      for (let i = 0; i < forms.length; i++) expect(found.some((v) => v.includes(`p${i}.h`)), forms[i]).toBe(true);
      expect(found.some((v) => v.includes('clean.h'))).toBe(false);
      expect(spellingViolations(files(join(fakeCore, 'pages')), tree)).toHaveLength(3); // "../", "pages/../", <>

      // A pages test through a helper at the tests' root that includes the mm layer.
      writeFileSync(join(fakeTests, 'helper.h'), '#pragma once\n#include "mm/space.h"\n');
      writeFileSync(join(fakeTests, 'pages', 't.cpp'), '#include "helper.h"\n');
      const testLayer = (f: string) => relative(fakeTests, f).split(sep)[0];
      const viaHelper = layerViolations(join(fakeTests, 'pages'), testLayer, { core: fakeCore, includePaths: [fakeTests, fakeCore] });
      expect(viaHelper).toHaveLength(1);
      expect(viaHelper[0]).toMatch(/helper\.h -> mm\/space\.h/);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
