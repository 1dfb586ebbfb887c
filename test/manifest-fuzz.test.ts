// Property-based fuzzing of the manifest parser: whatever JSON arrives, the
// loader returns a volume or throws a UsageError (exit 2) whose lines each
// name a JSON path; it never crashes with another error and never writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { loadManifest } from '../src/manifest/load.js';
import { UsageError } from '../src/errors.js';
import { tmpdir, snapshotTree } from './helpers/cli.js';

const VALID = {
  name: 'fuzz',
  blockSize: '4KiB',
  partitions: [
    { id: 'a', worker: 0, extents: [{ file: 'x.img', offset: 0, length: '16KiB' }] },
    { id: 'b', worker: 1, extents: [{ file: 'x.img', offset: '16KiB', length: 8192 }, { file: 'y.img', length: '8K' }] },
  ],
};

function check(dir: string, manifest: unknown): void {
  const file = path.join(dir, 'volume.json');
  fs.writeFileSync(file, typeof manifest === 'string' ? manifest : JSON.stringify(manifest));
  try {
    const v = loadManifest(file);
    assert.ok(v.size > 0 && v.size % v.blockSize === 0, 'an accepted volume is whole blocks');
  } catch (err) {
    assert.ok(err instanceof UsageError, `not a UsageError: ${(err as Error)?.stack ?? err}`);
    const lines = err.message.split('\n').slice(1);
    if (lines.length) for (const l of lines) assert.match(l, /^ {2}(\(manifest\)|[\w$[].*?): .+ \(got .*\)$/s, `line without a path: ${l}`);
  }
}

/** Replace the value at a random path of the valid manifest with an arbitrary JSON value. */
function mutate(base: unknown, pathSel: number[], value: unknown, dropKey: boolean): unknown {
  const copy = JSON.parse(JSON.stringify(base));
  let cur: Record<string, unknown> | unknown[] = copy;
  for (let depth = 0; depth < pathSel.length; depth++) {
    const keys = Object.keys(cur);
    if (keys.length === 0) break;
    const k = keys[pathSel[depth] % keys.length];
    const next = (cur as Record<string, unknown>)[k];
    if (depth === pathSel.length - 1 || next === null || typeof next !== 'object') {
      if (dropKey && !Array.isArray(cur)) delete (cur as Record<string, unknown>)[k];
      else (cur as Record<string, unknown>)[k] = value;
      break;
    }
    cur = next as Record<string, unknown>;
  }
  return copy;
}

test('the manifest loader answers any JSON with a volume or a UsageError naming paths', () => {
  const t = tmpdir();
  try {
    fs.writeFileSync(path.join(t.dir, 'x.img'), Buffer.alloc(24 * 1024));
    fs.writeFileSync(path.join(t.dir, 'y.img'), Buffer.alloc(8 * 1024));
    const before = snapshotTree(t.dir).replace(/volume\.json.*\n?/, '');
    check(t.dir, VALID);
    fc.assert(
      fc.property(fc.jsonValue(), (v) => check(t.dir, v)),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(
        fc.array(fc.nat(20), { minLength: 1, maxLength: 5 }),
        fc.oneof(fc.jsonValue(), fc.string(), fc.integer(), fc.double(), fc.constantFrom('1.5GiB', '-1', '1e400', 'x.img', '../x.img', '', '4KiB', 2 ** 53, -512)),
        fc.boolean(),
        (sel, value, drop) => check(t.dir, mutate(VALID, sel, value, drop)),
      ),
      { numRuns: 1500 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => check(t.dir, s)),
      { numRuns: 200 },
    );
    assert.equal(snapshotTree(t.dir).replace(/volume\.json.*\n?/, ''), before, 'the loader wrote nothing');
    assert.ok(!fs.existsSync(path.join(t.dir, '.vsnap')));
  } finally {
    t.cleanup();
  }
});
