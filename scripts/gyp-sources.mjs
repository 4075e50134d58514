#!/usr/bin/env node
// Prints the addon's C++ sources for binding.gyp (`<!@(node scripts/gyp-sources.mjs)`): every
// .cpp under native/core (all layers) and native/addon, as CMakeLists.txt globs them, so the
// two builds cannot drift and no file lists them by hand.
//
// With --opt: the optimisation flag instead, -O2 unless PINLAB_CXX_OPT names another level
// (-O0..-O3, -Os), as CMakeLists.txt reads it (the CI checks that only build and load).
import { readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function cppFiles(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...cppFiles(p));
    else if (e.name.endsWith('.cpp')) out.push(relative(root, p).split('\\').join('/'));
  }
  return out;
}

if (process.argv.includes('--opt')) {
  const opt = process.env['PINLAB_CXX_OPT'];
  if (opt !== undefined && !/^-O[0-3s]$/.test(opt)) {
    console.error(`PINLAB_CXX_OPT must be one of -O0, -O1, -O2, -O3, -Os (got '${opt}')`);
    process.exit(1);
  }
  console.log(opt ?? '-O2');
} else {
  console.log([...cppFiles(join(root, 'native', 'core')), ...cppFiles(join(root, 'native', 'addon'))].join(' '));
}
