#!/usr/bin/env node
// Checks that binding.gyp builds the same sources with node-gyp into an addon the library
// loads. Builds in a temporary copy (node-gyp owns ./build, where cmake-js's addon lives),
// then runs a pin/unpin round through lib/ with PINLAB_ADDON pointing at the result.
// Writes .test-results/node-gyp.json = { passed, failed }.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'pinlab-gyp-'));
let ok = false;
try {
  for (const entry of ['binding.gyp', 'package.json', 'native', 'scripts']) cpSync(join(root, entry), join(work, entry), { recursive: true });
  symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'));
  // Build offline against the local Node headers (as npm's own node-gyp does here).
  const args = [join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'), 'rebuild', '-j', '2'];
  const nodedir = process.env.npm_config_nodedir ?? dirname(dirname(process.execPath));
  if (existsSync(join(nodedir, 'include', 'node', 'node.h'))) args.push(`--nodedir=${nodedir}`);
  // It only has to build and load: -O1 (binding.gyp's flag from PINLAB_CXX_OPT) compiles faster.
  const build = spawnSync(process.execPath, args, { cwd: work, stdio: 'inherit', env: { ...process.env, PINLAB_CXX_OPT: '-O1' } });
  const addon = join(work, 'build', 'Release', 'pinlab.node');
  if (build.status === 0 && existsSync(addon)) {
    const probe = `
      const { PageArray } = await import(${JSON.stringify(join(root, 'dist', 'index.js'))});
      const mem = new PageArray({ pages: 1024, scheme: 'bias', folioOrder: 9 });
      const n = mem.pinPages({ start: 0, count: 512 });
      if (n !== 512 || mem.refcount(3) !== 1 + 512 * 1024 || !mem.maybeDmaPinned(100)) throw new Error('bad pin state');
      mem.unpinPages({ start: 0, count: 512 });
      if (mem.refcount(3) !== 1) throw new Error('bad unpin state');
      console.log('node-gyp addon loaded and pinned 512 pages through lib/');`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', probe], {
      stdio: 'inherit',
      env: { ...process.env, PINLAB_ADDON: addon },
    });
    ok = run.status === 0;
  } else {
    console.error('node-gyp rebuild failed');
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
mkdirSync(join(root, '.test-results'), { recursive: true });
writeFileSync(join(root, '.test-results', 'node-gyp.json'), JSON.stringify({ passed: ok ? 1 : 0, failed: ok ? 0 : 1 }) + '\n');
console.log(ok ? 'node-gyp check: 1 passed, 0 failed' : 'node-gyp check: 0 passed, 1 failed');
process.exit(ok ? 0 : 1);
