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

test('power-cut model: two syncs of one directory or file that overlap and end out of order never undo what the later-started one made durable', () => {
  const tmp = tmpdir('vsnap-pcm-');
  try {
    const root = path.join(tmp.dir, 'root');
    const out = path.join(tmp.dir, 'img');
    fs.mkdirSync(path.join(root, 'state'), { recursive: true });
    fs.writeFileSync(path.join(root, 'state/p1.json'), 'clean');
    fs.writeFileSync(path.join(root, 'log'), Buffer.alloc(1024, 1));
    const b64 = (n: number, v: number) => Buffer.alloc(n, v).toString('base64');
    // What two workers did in stop 18's failing run: worker B starts an fsync of the shared
    // directory, worker A renames its state in and fsyncs the directory (its fsync returns first),
    // then appends to its log; B's fsync returns after that.
    const evs = journal(root, [
      ['sync0', 'state', { id: 'B' }], // 0: B's fsync starts (before A's rename)
      ['open', 'state/p1.json.tmp', { create: true }], // 1
      ['write', 'state/p1.json.tmp', { pos: 0, data: Buffer.from('unclean').toString('base64') }], // 2
      ['sync0', 'state/p1.json.tmp', { id: 't' }], // 3
      ['sync1', 'state/p1.json.tmp', { id: 't' }], // 4
      ['rename', 'state/p1.json.tmp', { dest: 'state/p1.json' }], // 5
      ['sync0', 'state', { id: 'A' }], // 6
      ['sync1', 'state', { id: 'A' }], // 7: A's rename durable
      ['write', 'log', { pos: 1024, data: b64(1024, 2) }], // 8: A appends (unsynced)
      ['sync0', 'log', { id: 'L1' }], // 9: two syncs of the log at once
      ['write', 'log', { pos: 2048, data: b64(512, 3) }], // 10
      ['sync0', 'log', { id: 'L2' }], // 11
      ['sync1', 'log', { id: 'L2' }], // 12: the later one ends first
      ['sync1', 'state', { id: 'B' }], // 13: B's older fsync ends last
      ['sync1', 'log', { id: 'L1' }], // 14
    ]);
    for (const at of [7, 12, 13, 14]) {
      image(root, evs, at, 'drop', out);
      assert.equal(fs.readFileSync(path.join(out, 'state/p1.json'), 'utf8'), 'unclean', `after event ${at}: the rename A's fsync made durable is kept`);
    }
    for (const at of [12, 13, 14]) {
      image(root, evs, at, 'drop', out);
      const log = fs.readFileSync(path.join(out, 'log'));
      assert.equal(log.length, 2560, `after event ${at}: both appends durable (L2 started after them)`);
      assert.deepEqual([log[0], log[1024], log[2048]], [1, 2, 3]);
    }
  } finally {
    tmp.cleanup();
  }
});
