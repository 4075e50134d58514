#!/usr/bin/env node
// `npm pack` / `npm publish` (prepack, after `cmake-js compile --out build`): copies the addon
// into prebuilds/ as prebuildify names a Node-API prebuild with --tag-libc, stripped, so that
// node-gyp-build (the install script's check and lib/native.ts's loader) picks it up:
//   prebuilds/<platform>-<arch>/pinlab.<libc>.node   (linux-x64: prebuilds/linux-x64/pinlab.glibc.node)
// No abi tag: one Node-API 9 binary serves every Node >= 20. The copy is loaded once here to
// make sure it is an addon this Node can use.
//
// `--clean` (postpack) removes prebuilds/ again: the checkout builds from source and keeps no
// binary of the last pack around.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const prebuilds = join(root, 'prebuilds');

if (process.argv.includes('--clean')) {
  rmSync(prebuilds, { recursive: true, force: true });
  process.exit(0);
}

const built = join(root, 'build', 'Release', 'pinlab.node');
if (!existsSync(built)) {
  console.error(`prebuild: ${relative(root, built)} is missing; run \`cmake-js compile --out build\` first`);
  process.exit(1);
}

const name = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).name.replace(/\//g, '+');
const os = platform();
// The same test as node-gyp-build's loader (and prebuildify) for the libc tag.
const libc = os === 'linux' ? (process.env.LIBC ?? (existsSync('/etc/alpine-release') ? 'musl' : 'glibc')) : null;
const file = [name, ...(libc ? [libc] : []), 'node'].join('.');
const dir = join(prebuilds, `${os}-${arch()}`);

rmSync(prebuilds, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const dest = join(dir, file);
copyFileSync(built, dest);

// Strip as `prebuildify --strip` does (linux: --strip-all, darwin: -Sx).
if (os === 'linux' || os === 'darwin') {
  const strip = process.env.PREBUILD_STRIP_BIN ?? 'strip';
  const r = spawnSync(strip, os === 'darwin' ? [dest, '-Sx'] : [dest, '--strip-all'], { stdio: ['ignore', 2, 2] });
  if (r.status !== 0) {
    console.error(`prebuild: ${strip} failed on ${relative(root, dest)}`);
    process.exit(1);
  }
}

const addon = createRequire(import.meta.url)(dest);
if (typeof addon.NativePageArray !== 'function') {
  console.error(`prebuild: ${relative(root, dest)} does not export NativePageArray`);
  process.exit(1);
}
console.error(`prebuild: ${relative(root, dest)} (${statSync(dest).size} bytes, stripped from ${statSync(built).size})`);
