// The scheme registry (native/core/pages/schemes/registry.h) is the one list of schemes: the
// generated TypeScript list, the addon's schemes() and every message agree with it.
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { PageArray, PinlabError, SCHEMES } from '../lib/index.js';
import { native } from '../lib/native.js';

const root = join(import.meta.dirname, '..');

describe('scheme registry', () => {
  it('lib/schemes.ts is what scripts/gen-schemes.mjs makes of the registry', () => {
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'gen-schemes.mjs'), '--check'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('the generator also keeps the scheme enum of docs/bench-results.schema.json', async () => {
    const { readFileSync } = await import('node:fs');
    const gen = (await import(join(root, 'scripts', 'gen-schemes.mjs'))) as { renderDocsSchema(text: string, names: readonly string[]): string };
    const text = readFileSync(join(root, 'docs', 'bench-results.schema.json'), 'utf8');
    expect(gen.renderDocsSchema(text, SCHEMES)).toBe(text); // --check above covers it too
    const more = JSON.stringify(JSON.parse(gen.renderDocsSchema(text, [...SCHEMES, 'sharded'])));
    expect(more).toContain(`"scheme":{"enum":${JSON.stringify([...SCHEMES, 'sharded', null])}}`);
  });

  it('the generator reads each struct for its own kName, past comments, and refuses what is unclear', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const gen = (await import(join(root, 'scripts', 'gen-schemes.mjs'))) as {
      readRegistry(dir?: string): { id: string; type: string; name: string; file: string }[];
    };
    const dir = mkdtempSync(join(tmpdir(), 'pinlab-registry-'));
    try {
      const registry = (lines: string) =>
        `#pragma once\n#include "pages/schemes/sharded.h"\n// #include "pages/schemes/old.h"\n#define PINLAB_SCHEME_REGISTRY(X) \\\n${lines}\n`;
      writeFileSync(
        join(dir, 'sharded.h'),
        `// struct OldScheme { static constexpr std::string_view kName = "old"; };
struct ShardedScheme;
struct ShardedScheme {
  // static constexpr std::string_view kName = "was-sharded";
  static constexpr std::string_view kName = "sharded";
  struct Shard { int n; };
};
/* struct LazyScheme { kName = "commented"; } */
struct LazyScheme final {
  static constexpr std::string_view kName = "sharded-lazy";
};
`,
      );
      writeFileSync(join(dir, 'registry.h'), registry('  X(kSharded, ShardedScheme) /* X(kOld, OldScheme) */ \\\n  X(kLazy, LazyScheme)'));
      expect(gen.readRegistry(dir).map((s) => [s.id, s.name])).toEqual([
        ['kSharded', 'sharded'],
        ['kLazy', 'sharded-lazy'],
      ]);
      writeFileSync(join(dir, 'registry.h'), registry('  X(kOld, OldScheme)'));
      expect(() => gen.readRegistry(dir)).toThrow(/OldScheme is not defined/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the addon registers the same schemes, in the same order', () => {
    expect(native.schemes().map((s) => s.name)).toEqual([...SCHEMES]);
  });

  it('the generator reads the registry, not a list of its own', () => {
    const out = execFileSync(
      process.execPath,
      ['--input-type=module', '-e', `import { readRegistry } from ${JSON.stringify(join(root, 'scripts', 'gen-schemes.mjs'))}; console.log(JSON.stringify(readRegistry()));`],
      { encoding: 'utf8' },
    );
    const registry = JSON.parse(out) as { id: string; type: string; name: string; file: string }[];
    expect(registry.map((s) => s.name)).toEqual([...SCHEMES]);
    for (const s of registry) expect(s.file).toMatch(/^\w+\.h$/);
  });

  it('each scheme describes itself: pincount home, read-pin visibility, bytes per page', () => {
    const info = new Map(native.schemes().map((s) => [s.name, s]));
    expect(info.get('bias')).toMatchObject({ pincount: 'none', pinWords: 0, readPinsVisible: true, bytesPerPage: 5, debugBytesPerPage: 4 });
    expect(info.get('hybrid')).toMatchObject({ pincount: 'large-folios', pinWords: 0, readPinsVisible: true, bytesPerPage: 5 });
    expect(info.get('separate')).toMatchObject({ pincount: 'every-folio', pinWords: 1, readPinsVisible: true, bytesPerPage: 9 });
    expect(info.get('write-bias')).toMatchObject({ pincount: 'none', pinWords: 0, readPinsVisible: false, bytesPerPage: 5, debugBytesPerPage: 8 });
    // sharded: its own store, one word a page (the shards of folios of order >= 7 live in their
    // own tail pages' words), so the same bytes per page as separate.
    expect(info.get('sharded')).toMatchObject({ pincount: 'own', pinWords: 1, readPinsVisible: true, bytesPerPage: 9, shardMinOrder: 7 });
    for (const n of ['bias', 'hybrid', 'separate', 'write-bias']) expect(info.get(n)?.shardMinOrder, n).toBeNull();
    // sharded: the pins of a sharded folio share one reference (SharedRefPinStore); nobody else's.
    expect(info.get('sharded')?.sharedRefMinOrder).toBe(7);
    for (const n of ['bias', 'hybrid', 'separate', 'write-bias']) expect(info.get(n)?.sharedRefMinOrder, n).toBeNull();
    // Only sharded's shared folios go lazy (percpu_ref's mode switch).
    expect(info.get('sharded')?.lazyPins).toBe(true);
    for (const n of ['bias', 'hybrid', 'separate', 'write-bias']) expect(info.get(n)?.lazyPins, n).toBe(false);
    for (const s of info.values()) expect(s.bytesPerPage, s.name).toBe(5 + 4 * s.pinWords);
    for (const s of info.values()) expect(s.summary.length).toBeGreaterThan(10);
  });

  it("each scheme's policy (schemeArithmetic) agrees with the test model's written-out arithmetic", async () => {
    const { PinModel } = await import('./model.js');
    for (const scheme of SCHEMES) {
      for (const [pinBias, pincountMinOrder] of [[1024, 1], [64, 2], [2, 9], [1 << 20, 30]] as const) {
        const a = native.schemeArithmetic(scheme, pinBias, pincountMinOrder);
        const m = new PinModel({ pages: 1, scheme, pinBias, pincountMinOrder });
        for (let order = 0; order <= 30; order++) {
          const at = `${scheme} bias ${pinBias} min order ${pincountMinOrder} order ${order}`;
          expect(a.exact[order], at).toBe(m.tracked(order));
          expect(a.read[order], at).toBe(m.pinRefCost(order, false));
          expect(a.write[order], at).toBe(m.pinRefCost(order, true));
          expect(a.sharedRef[order], at).toBe(m.sharesRef(order));
          expect(a.pinLimit[order], at).toBe(m.pinLimit(order));
          // A folio whose pins share one reference: no reference per pin, a limit within INT32_MAX.
          if (a.sharedRef[order]) {
            expect(a.read[order], at).toBe(0);
            expect(a.pinLimit[order], at).toBeLessThanOrEqual(2 ** 31 - 1);
          } else {
            expect(a.pinLimit[order], at).toBe(2 ** 31 - 1);
          }
        }
      }
    }
    expect(() => native.schemeArithmetic('nope', 1024, 1)).toThrow(PinlabError);
    expect(() => native.schemeArithmetic(SCHEMES[0], 1000, 1)).toThrow(/pinBias/);
    expect(() => native.schemeArithmetic(SCHEMES[0], 1024, 0)).toThrow(/pincountMinOrder/);
  });

  it('bytes per page from the registry match what a PageArray of each scheme reports', () => {
    for (const s of native.schemes()) {
      const mem = new PageArray({ pages: 1 << 16, scheme: s.name as (typeof SCHEMES)[number] });
      expect(mem.memoryUsage().bytesPerPage, s.name).toBeCloseTo(s.bytesPerPage, 1);
    }
  });

  it("the native error for an unknown scheme names every registered one", () => {
    let err: unknown;
    try {
      new native.NativePageArray({ pages: 16, scheme: 'nope' } as never);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PinlabError);
    const msg = (err as Error).message;
    for (const s of SCHEMES) expect(msg).toContain(`'${s}'`);
  });
});
