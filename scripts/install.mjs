#!/usr/bin/env node
// The package's install script (`npm install`, `npm ci`, `npm rebuild`): keep the prebuilt
// addon when it loads here, else build from source with cmake-js.
//
// The prebuilt (prebuilds/<platform>-<arch>/, see scripts/prebuild.mjs) is tried as the
// lib/native.ts loader will find it, node-gyp-build's resolve() with PREBUILDS_ONLY, in a child
// process that loads it and checks it is pinlab's addon: a binary for another libc or an older
// system fails to load there and the build follows. It is node-gyp-build-test's job, done here
// without its one shortcut, which passes whenever an environment variable named after the
// package (PINLAB) is set, prebuilt or not.
//
// A build from source is forced, as prebuild-install and node-gyp-build conventions have it, by
// `--build-from-source` (npm_config_build_from_source=true), and here also by 1/yes/on in any
// case, or by the package's name in a comma-separated list (--build-from-source=pinlab).
// A checkout (a .git beside package.json) always builds: a prebuilds/ left there by an
// interrupted `npm pack` must not stand in for the sources being worked on.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const require = createRequire(import.meta.url);

/** Whether `value` (npm_config_build_from_source) asks this package to build from source. */
export function buildFromSourceAsked(value, name = pkg.name) {
  const v = (value ?? '').trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  return v.split(',').map((s) => s.trim()).includes(name.toLowerCase());
}

/** Whether the prebuilt for this platform loads here and is pinlab's addon. */
function prebuiltLoads() {
  const probe = `
    const gyp = require(${JSON.stringify(require.resolve('node-gyp-build'))});
    const addon = require(gyp.resolve(${JSON.stringify(root)}));
    if (typeof addon.NativePageArray !== 'function') throw new Error('not the pinlab addon');`;
  const env = { ...process.env, PREBUILDS_ONLY: '1' };
  const r = spawnSync(process.execPath, ['-e', probe], { env, encoding: 'utf8' });
  if (r.status === 0) return true;
  const why = (r.stderr || r.error?.message || '').trim().split('\n').find((l) => /Error/.test(l)) ?? `exit ${r.status}`;
  console.error(`pinlab: no usable prebuilt addon (${why})`);
  return false;
}

// Run as a script (a path with spaces or other escaped characters compares as a path).
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const asked = buildFromSourceAsked(process.env['npm_config_build_from_source']);
  const checkout = existsSync(join(root, '.git'));
  if (!asked && !checkout && prebuiltLoads()) process.exit(0);
  const why = asked ? ' (asked for)' : checkout ? ' (a checkout)' : '';
  console.error(`pinlab: building the addon from source${why}: cmake-js compile --out build`);
  const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
  const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', 'build'], { cwd: root, stdio: 'inherit' });
  if (r.error) throw r.error;
  process.exit(r.status ?? 1);
}
