// Restore in O(this test) (design.md §5, docs/formats.md "The cut"): through
// the real binary, a restore of the newest snapshot writes only what changed
// since the last restore and leaves that snapshot's change logs at their
// header size; a restore of an older snapshot keeps every newer one intact
// and does not empty the newest logs; --dry-run changes nothing. The live
// volume is checked against a model read straight from the backing files,
// the snapshots against an independent reader of the change logs
// (test/crash/harness.ts diskViews), never only through vsnap's read path.
//
// VSNAP_RESTORE_ROUNDS sets the CI loop's rounds (default 100);
// VSNAP_RESTORE_SEED replays one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { vsnap, tmpdir, requireTool, treeDigest, BIN } from './helpers/cli.js';
import { makeFixture, liveFromFiles, checkGapsUntouched, rng, type Fixture } from './helpers/volume-fixture.js';
import { diskViews, firstDiff, storeDirOf } from './crash/harness.js';

const ROUNDS = Number(process.env.VSNAP_RESTORE_ROUNDS ?? 100);
const SEED = Number(process.env.VSNAP_RESTORE_SEED ?? Math.floor(Math.random() * 2 ** 31));
const HEADER = 4096;

function logFile(fx: Fixture, id: number, partition: string): string {
  return path.join(storeDirOf(fx), 'snapshots', String(id).padStart(8, '0'), `${partition}.clog`);
}

function logSizes(fx: Fixture, id: number): Record<string, number> {
  return Object.fromEntries(fx.partitions.map((p) => [p.id, fs.statSync(logFile(fx, id, p.id)).size]));
}

/** Partition-relative blocks a volume range touches, as "partition:block" keys. */
function touched(fx: Fixture, off: number, len: number): Set<string> {
  const out = new Set<string>();
  const bs = fx.blockSize;
  let start = 0;
  for (const p of fx.partitions) {
    const plen = p.extents.reduce((a, e) => a + e.length, 0);
    const a = Math.max(off, start);
    const z = Math.min(off + len, start + plen);
    for (let b = Math.floor((a - start) / bs); a < z && b * bs < z - start; b++) out.add(`${p.id}:${b}`);
    start += plen;
  }
  return out;
}

async function ok(args: string[], input?: Buffer): Promise<string> {
  const r = await vsnap(args, { input });
  assert.equal(r.code, 0, `vsnap ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function create(fx: Fixture, name: string): Promise<number> {
  return (JSON.parse(await ok(['create', fx.manifest, '--name', name, '--json'])) as { id: number }).id;
}

interface RestoreJson {
  snapshot: number;
  restoredBytes: number;
  blocks: number;
  dryRun: boolean;
  partitions: string[];
  perPartition: { id: string; blocks: number; bytes: number; logCut: boolean }[];
}

async function restore(fx: Fixture, snap: string, extra: string[] = []): Promise<RestoreJson> {
  return JSON.parse(await ok(['restore', fx.manifest, snap, '--json', ...extra])) as RestoreJson;
}

function checkSnapshots(fx: Fixture, model: Map<number, Buffer>, when: string): void {
  const views = diskViews(fx);
  assert.deepEqual([...views.keys()], [...model.keys()].sort((a, b) => a - b), `${when}: snapshots on disk`);
  for (const [id, v] of views) assert.ok(v.equals(model.get(id)!), `${when}: snapshot ${id} from its change logs differs from the model: ${firstDiff(v, model.get(id)!)}`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

test(`CI loop: restore of the newest snapshot costs what its round wrote, flat over ${ROUNDS} rounds (seed ${SEED})`, async (t) => {
  const tmp = tmpdir('vsnap-restore-loop-');
  try {
    const fx = makeFixture(tmp.dir, { blockSize: 4096, scale: 16 });
    const rand = rng(SEED);
    const int = (n: number) => Math.floor(rand() * n);
    const pristine = liveFromFiles(fx);
    const id = await create(fx, 'pristine');
    const rows: { bytes: number; ms: number }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const label = `seed ${SEED} round ${round}`;
      // One or two writes of 1 byte to 24 blocks, anywhere (across extents and partitions).
      const blocks = new Set<string>();
      for (let w = 1 + int(2); w > 0; w--) {
        const len = 1 + int(rand() < 0.2 ? 24 * fx.blockSize : 3 * fx.blockSize);
        const off = int(fx.size - len + 1);
        await ok(['write', fx.manifest, '--offset', String(off)], crypto.randomBytes(len));
        for (const k of touched(fx, off, len)) blocks.add(k);
      }
      const t0 = process.hrtime.bigint();
      const r = await restore(fx, 'pristine');
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      rows.push({ bytes: r.restoredBytes, ms });
      assert.equal(r.restoredBytes, blocks.size * fx.blockSize, `${label}: the restore writes exactly the blocks this round wrote (${blocks.size}), not more`);
      for (const p of r.perPartition) {
        const mine = [...blocks].filter((k) => k.startsWith(`${p.id}:`)).length;
        assert.equal(p.blocks, mine, `${label}: partition ${p.id} restored ${p.blocks} blocks, its writes touched ${mine}`);
        assert.equal(p.logCut, mine > 0, `${label}: partition ${p.id} log cut`);
      }
      const live = liveFromFiles(fx);
      assert.ok(live.equals(pristine), `${label}: the live volume (backing files) differs from pristine: ${firstDiff(live, pristine)}`);
      assert.deepEqual(Object.values(logSizes(fx, id)), fx.partitions.map(() => HEADER), `${label}: every newest log is back to its header size`);
      if (round % 25 === 0) checkSnapshots(fx, new Map([[id, pristine]]), label);
    }
    assert.equal(checkGapsUntouched(fx), undefined);
    const v = await vsnap(['verify', fx.manifest]);
    assert.equal(v.code, 0, v.stderr + v.stdout);
    // Flat: the cost of a restore never grows with the rounds before it.
    const perBlock = rows.map((r) => r.bytes);
    const fmt = (r: { bytes: number; ms: number }) => `${r.bytes} B in ${r.ms.toFixed(0)} ms`;
    t.diagnostic(`restore per round (seed ${SEED}): first ${fmt(rows[0])}, median ${median(perBlock)} B in ${median(rows.map((r) => r.ms)).toFixed(0)} ms, last ${fmt(rows[rows.length - 1])}; max ${Math.max(...perBlock)} B`);
    assert.ok(Math.max(...perBlock) <= (2 * 25) * fx.blockSize, 'no restore wrote more than two writes can touch');
  } finally {
    tmp.cleanup();
  }
});

test('restore of an older snapshot keeps every newer one and does not empty the newest logs; then the newest restores and cuts', async () => {
  const tmp = tmpdir('vsnap-restore-older-');
  try {
    const fx = makeFixture(tmp.dir, { blockSize: 4096, scale: 8 });
    const model = new Map<number, Buffer>();
    const bs = fx.blockSize;
    const write = async (off: number, len: number, seed: number) => {
      const data = crypto.createHash('sha512').update(String(seed)).digest();
      await ok(['write', fx.manifest, '--offset', String(off)], Buffer.concat(Array.from({ length: Math.ceil(len / data.length) }, () => data)).subarray(0, len));
    };
    const ids: number[] = [];
    for (let k = 0; k < 3; k++) {
      const id = await create(fx, `s${k + 1}`);
      model.set(id, liveFromFiles(fx));
      ids.push(id);
      await write(k * 7 * bs + 100, 9 * bs, k);
    }
    const newest = ids[2];
    const before = logSizes(fx, newest);
    assert.ok(Object.values(before).some((n) => n > HEADER), 'the newest logs hold the last writes');
    const r = await restore(fx, 's1');
    assert.ok(r.restoredBytes > 0 && r.perPartition.every((p) => !p.logCut), 'an older restore cuts nothing');
    assert.ok(liveFromFiles(fx).equals(model.get(ids[0])!), 'the live volume is s1');
    const after = logSizes(fx, newest);
    for (const p of fx.partitions) assert.ok(after[p.id] >= before[p.id], `partition ${p.id}: the newest log did not shrink (${before[p.id]} -> ${after[p.id]})`);
    checkSnapshots(fx, model, 'after restoring s1');
    for (const id of ids) {
      const rd = await vsnap(['read', fx.manifest, '--snapshot', String(id), '--offset', '0', '--length', String(fx.size)]);
      assert.equal(rd.code, 0, rd.stderr);
      assert.ok(rd.stdoutBuf.equals(model.get(id)!), `snapshot ${id} reads as before through vsnap`);
    }
    // Now the newest: exactly the blocks of its logs are written, and its logs are cut.
    const dry = await restore(fx, 's3', ['--dry-run']);
    const logged = Object.values(after).reduce((a, n) => a + (n - HEADER) / (32 + bs), 0);
    assert.equal(dry.blocks, logged, 'the dry run counts the blocks of the newest logs');
    const r3 = await restore(fx, 's3');
    assert.equal(r3.restoredBytes, dry.restoredBytes, 'the restore writes what the dry run said');
    assert.ok(liveFromFiles(fx).equals(model.get(newest)!), 'the live volume is s3');
    assert.deepEqual(Object.values(logSizes(fx, newest)), fx.partitions.map(() => HEADER));
    checkSnapshots(fx, model, 'after restoring s3');
    // A second restore of the newest has nothing to write.
    assert.equal((await restore(fx, 's3')).restoredBytes, 0);
    const v = await vsnap(['verify', fx.manifest]);
    assert.equal(v.code, 0, v.stderr + v.stdout);
  } finally {
    tmp.cleanup();
  }
});

test('restore --dry-run says what would be written, per partition, and changes nothing on disk', async () => {
  const tmp = tmpdir('vsnap-restore-dry-');
  try {
    const fx = makeFixture(tmp.dir, { blockSize: 4096, scale: 8 });
    await create(fx, 'base');
    const off = 3 * fx.blockSize + 10;
    const len = 20 * fx.blockSize;
    await ok(['write', fx.manifest, '--offset', String(off)], crypto.randomBytes(len));
    await create(fx, 'newer');
    await ok(['write', fx.manifest, '--offset', '0'], crypto.randomBytes(5));
    const blocks = touched(fx, off, len);
    for (const k of touched(fx, 0, 5)) blocks.add(k);
    const before = treeDigest(tmp.dir, { dirMtimes: false });
    for (const snap of ['base', 'newer']) {
      const j = await restore(fx, snap, ['--dry-run']);
      assert.equal(j.dryRun, true);
      const want = snap === 'base' ? blocks.size : touched(fx, 0, 5).size;
      assert.equal(j.blocks, want, `${snap}: blocks that would be written`);
      assert.equal(j.restoredBytes, want * fx.blockSize, `${snap}: bytes that would be written`);
      assert.deepEqual(j.perPartition.map((p) => p.id), fx.partitions.map((p) => p.id));
      assert.equal(j.perPartition.reduce((a, p) => a + p.bytes, 0), j.restoredBytes);
      assert.ok(j.perPartition.every((p) => !p.logCut), 'a dry run cuts nothing');
      const human = await vsnap(['restore', fx.manifest, snap, '--dry-run']);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stderr, new RegExp(`would write .* \\(${want} blocks\\); nothing was changed`));
      for (const p of fx.partitions) assert.match(human.stderr, new RegExp(`^  ${p.id}: .*blocks\\)$`, 'm'));
      assert.equal(treeDigest(tmp.dir, { dirMtimes: false }), before, `${snap}: --dry-run changed a file (store or backing)`);
    }
    // What the dry run promised is what the restore writes.
    const dry = await restore(fx, 'base', ['--dry-run']);
    assert.equal((await restore(fx, 'base')).restoredBytes, dry.restoredBytes);
  } finally {
    tmp.cleanup();
  }
});

test('the restore progress bar on a terminal starts at 0% of the planned total and reaches 100% only with the last durable bytes', async (t) => {
  const skip = requireTool('script', 'bsdutils');
  if (skip) return t.skip(skip);
  const tmp = tmpdir('vsnap-restore-bar-');
  try {
    const fx = makeFixture(tmp.dir, { blockSize: 4096, scale: 16 });
    await create(fx, 'base');
    await ok(['write', fx.manifest, '--offset', '777'], crypto.randomBytes(fx.size - 2000));
    // script(1) gives the command a terminal, so the bar is drawn; its output is the terminal's.
    const cmd = [process.execPath, BIN, 'restore', fx.manifest, 'base'].map((a) => `'${a}'`).join(' ');
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, timeout: 120_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const pcts = [...r.stdout.matchAll(/restoring \[[#.]+\]\s+(\d+)%/g)].map((m) => Number(m[1]));
    assert.ok(pcts.length >= 2, `the bar was drawn: ${JSON.stringify(r.stdout.slice(0, 300))}`);
    assert.equal(pcts[0], 0, `the bar starts at 0% of the planned total, not at 100% (${pcts})`);
    assert.equal(pcts[pcts.length - 1], 100, `the bar ends at 100% (${pcts})`);
    for (let i = 1; i < pcts.length; i++) assert.ok(pcts[i] >= pcts[i - 1], `the bar never goes back (${pcts})`);
    assert.equal(pcts.filter((p) => p === 100).length, 1, `100% is shown once, at the end (${pcts})`);
    assert.match(r.stdout, /restored snapshot \d+ "base": .* written/);
  } finally {
    tmp.cleanup();
  }
});
