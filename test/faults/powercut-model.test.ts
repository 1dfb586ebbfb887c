// The power-cut model itself (powercut.ts) on hand-written journals: what it
// keeps and drops must be what a strict POSIX file system may lose, or the
// crash images prove nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpdir } from '../helpers/cli.js';
import { DiskModel, boundaries, type JournalEvent } from './powercut.js';

function journal(root: string, evs: [string, string, Partial<JournalEvent>?][]): JournalEvent[] {
  return evs.map(([ev, p, x], i) => ({ t: String(i), pid: 1, ev, path: path.join(root, p), ...x, ...(x?.dest ? { dest: path.join(root, x.dest) } : {}) }));
}

function image(root: string, evs: JournalEvent[], upTo: number, variant: 'drop' | 'torn', out: string): void {
  const m = new DiskModel(root);
  for (const e of evs.slice(0, upTo + 1)) m.apply(e);
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(out);
  m.materialize(out, variant);
}

test('power-cut model: unsynced data dropped or torn by sector, names need a directory fsync, renames undone', () => {
  const tmp = tmpdir('vsnap-pcm-');
  try {
    const root = path.join(tmp.dir, 'root');
    const out = path.join(tmp.dir, 'img');
    fs.mkdirSync(path.join(root, 'd'), { recursive: true });
    fs.writeFileSync(path.join(root, 'old'), Buffer.alloc(2048, 1));
    const b64 = (n: number, v: number) => Buffer.alloc(n, v).toString('base64');
    const evs = journal(root, [
      ['write', 'old', { pos: 0, data: b64(2048, 2) }], // 0: unsynced overwrite
      ['open', 'd/new', { create: true }], // 1
      ['write', 'd/new', { pos: 0, data: b64(100, 3) }], // 2
      ['sync0', 'd/new', { id: 'a' }], // 3
      ['sync1', 'd/new', { id: 'a' }], // 4: data durable, name not
      ['sync0', 'd', { id: 'b' }], // 5
      ['sync1', 'd', { id: 'b' }], // 6: name durable
      ['rename', 'd/new', { dest: 'd/renamed' }], // 7: not durable until d is synced again
      ['sync0', 'old', { id: 'c' }], // 8
      ['sync1', 'old', { id: 'c' }], // 9
    ]);
    assert.deepEqual(boundaries(evs), [4, 6, 9]);
    image(root, evs, 4, 'drop', out);
    assert.ok(!fs.existsSync(path.join(out, 'd/new')), 'a created file whose directory was not synced is not there');
    assert.deepEqual(fs.readFileSync(path.join(out, 'old')), Buffer.alloc(2048, 1), 'unsynced overwrite dropped');
    image(root, evs, 4, 'torn', out);
    const torn = fs.readFileSync(path.join(out, 'old'));
    assert.deepEqual([0, 1, 2, 3].map((s) => torn[s * 512]), [2, 1, 2, 1], 'torn: even sectors new, odd sectors old');
    image(root, evs, 6, 'drop', out);
    assert.deepEqual(fs.readFileSync(path.join(out, 'd/new')), Buffer.alloc(100, 3));
    image(root, evs, 9, 'drop', out);
    assert.ok(fs.existsSync(path.join(out, 'd/new')) && !fs.existsSync(path.join(out, 'd/renamed')), 'a rename without a directory fsync is undone');
    assert.deepEqual(fs.readFileSync(path.join(out, 'old')), Buffer.alloc(2048, 2), 'synced overwrite kept');
  } finally {
    tmp.cleanup();
  }
});
