// The shape of the code, checked from its text: lib/ has no import circle (type-only imports,
// re-exports and dynamic import() count too), and no file restates the scheme list that
// lib/schemes.ts holds. Neither check loads the addon.
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

import ts from 'typescript';
import { describe, expect, it } from 'vitest';

import { SCHEMES } from '../lib/schemes.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const lib = join(root, 'lib');

/** Every file under `dir` (recursively) whose name passes `keep`, as absolute paths, sorted. */
function filesUnder(dir: string, keep: (name: string) => boolean): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(path, keep));
    else if (keep(entry.name)) out.push(path);
  }
  return out.sort();
}

const show = (path: string): string => relative(root, path).split(sep).join('/');

// ---- import graph -------------------------------------------------------------------------------

/**
 * The relative imports of one source file: `import`, `import type`, `export ... from`,
 * `import x = require()`, dynamic `import()` and `import('...')` types, as ts.preProcessFile
 * reads them (it scans the text, so a type-only import counts like any other).
 */
function relativeImports(path: string): string[] {
  const info = ts.preProcessFile(readFileSync(path, 'utf8'), true, true);
  return info.importedFiles.map((f) => f.fileName).filter((name) => name.startsWith('.'));
}

/** `./x.js` from `lib/a.ts` -> `lib/x.ts` (ESM sources name the compiled file). */
function resolveSource(from: string, specifier: string, known: ReadonlySet<string>): string | null {
  const target = resolve(dirname(from), specifier);
  const candidates = [target.replace(/\.js$/, '.ts'), target.replace(/\.mjs$/, '.mts'), target, `${target}.ts`, join(target, 'index.ts')];
  return candidates.find((c) => known.has(c)) ?? null;
}

/** lib/'s relative-import graph: file -> the files it imports. */
function libGraph(): Map<string, string[]> {
  const files = filesUnder(lib, (n) => /\.(m|c)?ts$/.test(n) && !n.endsWith('.d.ts'));
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const targets = relativeImports(f)
      .map((s) => resolveSource(f, s, known))
      .filter((t): t is string => t !== null && t.startsWith(lib + sep));
    graph.set(f, [...new Set(targets)].sort());
  }
  return graph;
}

/** Every elementary cycle found by a depth-first search, each once (as found first), as a path a -> ... -> a. */
function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const cycles: string[][] = [];
  const seen = new Set<string>();
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      const s = state.get(next);
      if (s === 'open') {
        const cycle = [...stack.slice(stack.indexOf(next)), next];
        const key = [...cycle.slice(0, -1)].sort().join('\n');
        if (!seen.has(key)) {
          seen.add(key);
          cycles.push(cycle);
        }
      } else if (s === undefined) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node);
  return cycles;
}

/** The strongly connected components with more than one file (or a file importing itself). */
function tangles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const on = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  const strong = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const part: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        part.push(w);
      } while (w !== v);
      if (part.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(part.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) strong(v);
  return out;
}

describe('lib/ import graph', () => {
  const graph = libGraph();

  it('reads every lib/ source and its relative imports (type-only, re-exports and import() included)', () => {
    expect(graph.size).toBeGreaterThan(20);
    expect(graph.get(join(lib, 'index.ts'))).toContain(join(lib, 'bench', 'index.ts')); // export * from
    expect(graph.get(join(lib, 'profile', 'cli.ts'))).toContain(join(lib, 'profile', 'snapshot.ts')); // await import()
    // The scanner itself, on the forms a circle hides in:
    const probe = ts.preProcessFile(
      "import type { A } from './a.js';\nimport { type B } from './b.js';\nexport { C } from './c.js';\nexport * from './d.js';\n" +
        "const e = await import('./e.js');\nlet f: import('./f.js').F;\n",
      true,
      true,
    );
    expect(probe.importedFiles.map((f) => f.fileName).sort()).toEqual(['./a.js', './b.js', './c.js', './d.js', './e.js', './f.js']);
  });

  it('has no cycle', () => {
    const cycles = findCycles(graph);
    if (cycles.length > 0) {
      const lines = cycles.map((c) => `  ${c.map(show).join(' -> ')}`);
      const knots = tangles(graph).map((t) => `  ${t.map(show).join(', ')}`);
      expect.fail(`lib/ has ${cycles.length} import ${cycles.length === 1 ? 'cycle' : 'cycles'}:\n${lines.join('\n')}\nfiles tangled together:\n${knots.join('\n')}`);
    }
  });

  it('the shared types (lib/types/) and lib/schemes.ts import nothing of lib/ but each other', () => {
    const base = join(lib, 'types') + sep;
    const bad: string[] = [];
    for (const [file, targets] of graph) {
      const isBase = file.startsWith(base);
      if (!isBase && file !== join(lib, 'schemes.ts')) continue;
      for (const t of targets) {
        if (file === join(lib, 'schemes.ts') || !t.startsWith(base)) bad.push(`${show(file)} -> ${show(t)}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('lib/native.ts (the raw addon surface) takes its types from lib/types/ only', () => {
    // Besides: the error class the addon throws, and the scheme list (a leaf, like lib/types/).
    const allowed = new Set([join(lib, 'errors.ts'), join(lib, 'schemes.ts')]);
    const targets = graph.get(join(lib, 'native.ts')) ?? [];
    expect(targets.filter((t) => !allowed.has(t) && !t.startsWith(join(lib, 'types') + sep)).map(show)).toEqual([]);
  });
});

// ---- the scheme list ----------------------------------------------------------------------------

const NAMES: readonly string[] = SCHEMES;
const escaped = NAMES.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
/** A scheme name as a word of its own (`bias` not inside `write-bias`, `pinBias` or `biased`). */
const NAME_WORD = new RegExp(`(?<![\\w-])(${escaped.join('|')})(?![\\w-])`, 'g');
/** A scheme name in quotes: `'bias'`, `"bias"` or `` `bias` `` (not an object key: a per-scheme table is data). */
const QUOTED_NAME = new RegExp(`(['"\`])(${escaped.join('|')})\\1(?!\\s*:)`, 'g');

function namesIn(text: string, pattern: RegExp): Set<string> {
  return new Set([...text.matchAll(pattern)].map((m) => m[m.length - 1]!));
}

const allNames = (found: ReadonlySet<string>): boolean => NAMES.every((n) => found.has(n));

/** The text of a string-ish literal node (string, template, regex), else null. */
function literalText(node: ts.Node, source: ts.SourceFile): string | null {
  if (ts.isStringLiteralLike(node) || ts.isRegularExpressionLiteral(node)) return node.getText(source);
  if (ts.isTemplateExpression(node)) return node.getText(source);
  return null;
}

/**
 * Where a source restates the whole scheme list: an array literal, a union or tuple type, or a
 * single string/template/regex literal that names every scheme (so `['bias', ..., 'write-bias']`,
 * `enum: [...]`, `'bias' | ... | 'write-bias'`, `'bias,hybrid,...'` and `/^(bias|...)/`), or a
 * line that quotes every name (comments included). Each finding is `path:line: text`.
 */
function restatements(path: string, text = readFileSync(path, 'utf8')): string[] {
  const kind = path.endsWith('.json') ? ts.ScriptKind.JSON : path.endsWith('.ts') || path.endsWith('.mts') ? ts.ScriptKind.TS : ts.ScriptKind.JS;
  const source = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true, kind);
  const hits = new Map<number, string>();
  const lines = text.split('\n');
  const hit = (node: ts.Node): void => {
    // The node's first line, or the line of it that names every scheme (a help text's --scheme line).
    const first = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
    const last = source.getLineAndCharacterOfPosition(node.getEnd()).line;
    let line = first;
    for (let i = first; i <= last; i++) if (allNames(namesIn(lines[i]!, NAME_WORD))) line = i;
    hits.set(line, `${show(path)}:${line + 1}: ${lines[line]!.trim().slice(0, 120)}`);
  };
  const visit = (node: ts.Node): void => {
    let parts: readonly ts.Node[] | null = null;
    if (ts.isArrayLiteralExpression(node)) parts = node.elements;
    else if (ts.isUnionTypeNode(node) || ts.isTupleTypeNode(node)) parts = ts.isUnionTypeNode(node) ? node.types : node.elements;
    if (parts !== null) {
      const found = new Set<string>();
      for (const p of parts) {
        const inner = ts.isLiteralTypeNode(p) ? p.literal : p;
        const t = literalText(inner, source);
        if (t !== null) for (const n of namesIn(t, NAME_WORD)) found.add(n);
      }
      if (allNames(found)) hit(node);
    }
    const t = literalText(node, source);
    if (t !== null && allNames(namesIn(t, NAME_WORD))) hit(node);
    ts.forEachChild(node, visit);
  };
  visit(source);
  lines.forEach((line, i) => {
    if (!hits.has(i) && allNames(namesIn(line, QUOTED_NAME))) hits.set(i, `${show(path)}:${i + 1}: ${line.trim().slice(0, 120)}`);
  });
  return [...hits.entries()].sort((a, b) => a[0] - b[0]).map(([, h]) => h);
}

describe('the scheme list lives in lib/schemes.ts only', () => {
  const code = (n: string): boolean => /\.(m|c)?(ts|js)$/.test(n) || n.endsWith('.json');
  // docs/: its own files (the published JSON Schema); docs/bench/ and docs/profile/ hold recorded
  // runs, whose documents name the schemes they ran as data.
  const docs = filesUnder(join(root, 'docs'), code).filter((f) => dirname(f) === join(root, 'docs'));
  const files = [...['lib', 'test', 'bench', 'examples', 'scripts'].flatMap((d) => filesUnder(join(root, d), code)), ...docs];
  const schemes = join(lib, 'schemes.ts');
  /** Written by scripts/gen-schemes.mjs from the registry, as lib/schemes.ts is. */
  const generated = new Set([schemes, join(root, 'docs', 'bench-results.schema.json'), join(root, 'docs', 'replay-results.schema.json')]);

  it('the finder sees every form a restatement takes', () => {
    expect(NAMES.length).toBeGreaterThan(1);
    expect(files).toContain(schemes);
    expect(restatements(schemes).length).toBeGreaterThan(0); // the one legitimate list
    // Each form, written out from the names (so this file does not restate the list itself):
    const q = (n: string): string => `'${n}'`;
    const forms = [
      `const a = [${NAMES.map(q).join(', ')}];`,
      `const s = { enum: [\n${NAMES.map(q).join(',\n')},\n null] };`,
      `type T = ${NAMES.map(q).join(' | ')} | null;`,
      `const help = '--scheme LIST  ${NAMES.join(',')} (default: all)';`,
      `const re = /^(${escaped.join('|')}) +\\d+/;`,
      `const titles = [${NAMES.map((n) => `'# ${n} bias 1024'`).join(', ')}];`,
      `// one of ${NAMES.map(q).join(', ')}`,
    ];
    const probe = join(root, 'test', 'probe.ts'); // not a file: restatements() is given the text
    for (const form of forms) expect(restatements(probe, form), form).toHaveLength(1);
    // ... and not the ones that are not restatements:
    const subset = NAMES.slice(0, -1);
    for (const form of [
      `const a = [${subset.map(q).join(', ')}];`,
      `const w = scheme === ${q(NAMES[NAMES.length - 1]!)};`,
      `const cost = { ${NAMES.map((n) => `${q(n)}: 1`).join(', ')} };`, // a per-scheme table is data
      `for (const s of SCHEMES) run(s);`,
    ]) {
      expect(restatements(probe, form), form).toEqual([]);
    }
  });

  it('no file of lib/, test/, bench/, examples/, scripts/ or docs/ but the generated ones spells out the whole list', () => {
    expect(files).toContain(join(root, 'docs', 'bench-results.schema.json'));
    const found = files.filter((f) => !generated.has(f)).flatMap((f) => restatements(f));
    if (found.length > 0) {
      expect.fail(`the scheme list is restated (take it from SCHEMES, lib/schemes.ts):\n  ${found.join('\n  ')}`);
    }
  });
});

// ---- per-scheme decisions -----------------------------------------------------------------------

/**
 * Where a source decides by a scheme's name: `x === 'write-bias'`, `'separate' !== s`,
 * `case 'hybrid':`. What a scheme is (exact pincount, read pins visible, pin cost) comes from
 * its policy through the addon (schemes(), the profiler's runs); a branch on a name would
 * treat a scheme registered later like none of the four, silently.
 */
function nameDecisions(path: string, text = readFileSync(path, 'utf8')): string[] {
  const source = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out: string[] = [];
  const isName = (n: ts.Node): boolean => ts.isStringLiteralLike(n) && NAMES.includes(n.text);
  const note = (n: ts.Node): void => {
    const line = source.getLineAndCharacterOfPosition(n.getStart(source)).line;
    out.push(`${show(path)}:${line + 1}: ${n.getText(source).slice(0, 120)}`);
  };
  const visit = (n: ts.Node): void => {
    if (ts.isBinaryExpression(n)) {
      const op = n.operatorToken.kind;
      const eq = [ts.SyntaxKind.EqualsEqualsEqualsToken, ts.SyntaxKind.ExclamationEqualsEqualsToken, ts.SyntaxKind.EqualsEqualsToken, ts.SyntaxKind.ExclamationEqualsToken];
      if (eq.includes(op) && (isName(n.left) || isName(n.right))) note(n);
    } else if (ts.isCaseClause(n) && isName(n.expression)) note(n);
    ts.forEachChild(n, visit);
  };
  visit(source);
  return out;
}

describe('lib/ knows no scheme by name', () => {
  it('the finder sees a comparison and a case on a name, and not a default value', () => {
    const [a, b] = [NAMES[0]!, NAMES[NAMES.length - 1]!];
    const probe = join(root, 'lib', 'probe.ts'); // not a file: nameDecisions() is given the text
    expect(nameDecisions(probe, `const w = scheme === '${b}';`)).toHaveLength(1);
    expect(nameDecisions(probe, `if ('${a}' !== s) f();`)).toHaveLength(1);
    expect(nameDecisions(probe, `switch (s) { case '${a}': break; }`)).toHaveLength(1);
    expect(nameDecisions(probe, `const s = oneOf('scheme', v, SCHEMES, '${a}');`)).toEqual([]);
  });

  it('no lib/ source branches on a scheme name (the policy says what a scheme is)', () => {
    const found = filesUnder(lib, (n) => /\.(m|c)?ts$/.test(n) && !n.endsWith('.d.ts')).flatMap((f) => nameDecisions(f));
    expect(found).toEqual([]);
  });
});
