// The README's "## Embedding" example must type-check and run, and print what the README says
// it prints. The ```ts block under that heading is the program; the first ```text block after
// it is its output, compared line for line.
//
// The program runs in a child `node` against the compiled dist/ (its `'pinlab'` import
// replaced by dist/index.js), so it gets a fresh process as a user's program would (address
// space and pin call ids start at 1) and this test file never loads the addon itself. It is
// type-checked against lib/ with `strict` on, as a user's project would check it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const work = mkdtempSync(join(tmpdir(), 'pinlab-embedding-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The text of the "## Embedding" section, up to the next level-2 heading. */
function section(): string {
  const start = readme.indexOf('\n## Embedding\n');
  if (start < 0) expect.fail('README.md has no "## Embedding" section');
  const next = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, next < 0 ? undefined : next);
}

/** The first fenced block of `lang` in `text` after `from`: its body and where it ends. */
function fenced(text: string, lang: string, from = 0): { body: string; end: number } {
  const open = text.indexOf('\n```' + lang + '\n', from);
  if (open < 0) expect.fail(`no \`\`\`${lang} block in README.md's Embedding section`);
  const bodyStart = open + lang.length + 5;
  const close = text.indexOf('\n```', bodyStart - 1);
  if (close < 0) expect.fail(`unterminated \`\`\`${lang} block in README.md's Embedding section`);
  return { body: text.slice(bodyStart, close + 1), end: close + 4 };
}

const text = section();
const program = fenced(text, 'ts');
const expectedOutput = fenced(text, 'text', program.end).body;
const IMPORT = /from 'pinlab';/g;

describe('README Embedding example', () => {
  it('imports the package by name, once', () => {
    expect(program.body.match(IMPORT)?.length).toBe(1);
  });

  it('type-checks against lib/ (strict)', () => {
    const file = join(work, 'embedding.mts');
    writeFileSync(file, program.body.replace(IMPORT, `from ${JSON.stringify(join(root, 'lib', 'index.js'))};`));
    const options: ts.CompilerOptions = {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      skipLibCheck: true,
      types: ['node'],
      typeRoots: [join(root, 'node_modules', '@types')],
    };
    const tsProgram = ts.createProgram([file], options);
    const diagnostics = ts.getPreEmitDiagnostics(tsProgram).filter((d) => d.file?.fileName === file || d.file === undefined);
    const host: ts.FormatDiagnosticsHost = {
      getCanonicalFileName: (f) => f,
      getCurrentDirectory: () => work,
      getNewLine: () => '\n',
    };
    expect(ts.formatDiagnostics(diagnostics, host)).toBe('');
  });

  it('runs with node against dist/ and prints what the README shows', () => {
    const dist = join(root, 'dist', 'index.js');
    if (!existsSync(dist)) expect.fail(`dist/ is missing: build it with \`npm run build:ts\` (no ${dist})`);
    // Type-only syntax, if any, goes; the README keeps the example plain JS-compatible TS.
    const js = ts.transpileModule(program.body, {
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
    }).outputText;
    const file = join(work, 'embedding.mjs');
    writeFileSync(file, js.replace(IMPORT, `from ${JSON.stringify(pathToFileURL(dist).href)};`));
    const stdout = execFileSync(process.execPath, [file], { cwd: work, encoding: 'utf8', timeout: 30_000 });
    expect(stdout.split('\n')).toEqual(expectedOutput.split('\n'));
  });
});
