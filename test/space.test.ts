// Space (issue 10 item 8): list's usedBytes per snapshot and status's store,
// snapshots and clones totals are the allocated bytes of their files (as
// `du -B1` counts them), free space is the file system's, and status warns
// when free space is less than an hour of writes at the recent rate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { vsnap, tmpdir } from './helpers/cli.js';
import { judgeSpace } from '../src/store/space.js';

async function ok(args: string[], o: { input?: Buffer; env?: Record<string, string> } = {}): Promise<string> {
  const r = await vsnap(args, o);
  assert.equal(r.code, 0, `vsnap ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** `du -B1 -s`: allocated bytes of a tree, directories included. */
function du(p: string): number {
  const r = spawnSync('du', ['-B1', '-s', p], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return Number(r.stdout.split('\t')[0]);
}

/** Allocated bytes of the regular files directly in a directory (stat %b x %B). */
function filesAllocated(dir: string): number {
  const r = spawnSync('sh', ['-c', 'for f in "$1"/*; do stat -c "%b %B" "$f"; done', 'sh', dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim().split('\n').reduce((a, l) => a + Number(l.split(' ')[0]) * Number(l.split(' ')[1]), 0);
}

function dfAvail(p: string): number {
  const r = spawnSync('df', ['-B1', '--output=avail', p], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return Number(r.stdout.trim().split('\n')[1]);
}

test('judgeSpace: the rate is the newest logs over at least a minute; the warning when free < one hour', () => {
  assert.deepEqual(judgeSpace(1e12, null, 0), { recentBytesPerHour: null, warning: null });
  assert.equal(judgeSpace(1e12, 60 << 20, 1000).recentBytesPerHour, 60 * 60 * (1 << 20), 'a fresh snapshot counts as a minute old');
  assert.equal(judgeSpace(1e12, 3600, 3_600_000).recentBytesPerHour, 3600);
  assert.equal(judgeSpace(1e12, 3600, 3_600_000).warning, null);
  assert.match(judgeSpace(3599, 3600, 3_600_000).warning ?? '', /free space \(3599 bytes\) is less than one more hour of writes at the recent rate \(3600 bytes\/hour\)/);
  assert.equal(judgeSpace(0, 0, 3_600_000).warning, null, 'no growth, no warning');
});

test('list usedBytes and status space figures match the allocated bytes of the files (du -B1)', async (t) => {
  const { dir, cleanup } = tmpdir('vsnap-space-');
  t.after(cleanup);
  await ok(['init', dir, '--files', '2', '--file-size', '16MiB', '--partitions', '2', '--workers', '2', '--name', 'sp']);
  const manifest = path.join(dir, 'volume.json');
  const store = path.join(dir, '.vsnap', 'sp');
  await ok(['create', manifest, '--name', 'a']);
  await ok(['write', manifest, '--offset', '0'], { input: crypto.randomBytes(3 << 20) });
  await ok(['create', manifest, '--name', 'b']);
  await ok(['write', manifest, '--offset', '20MiB'], { input: crypto.randomBytes(1 << 20) });
  // Something under clones/ (the clones helper's files): summed as they are.
  fs.mkdirSync(path.join(store, 'clones', 'c1'), { recursive: true });
  fs.writeFileSync(path.join(store, 'clones', 'c1', 'part0.ovl'), crypto.randomBytes(200_000));
  const list = JSON.parse(await ok(['list', manifest, '--json'])) as { id: number; name: string; usedBytes: number }[];
  for (const s of list) {
    const want = filesAllocated(path.join(store, 'snapshots', String(s.id).padStart(8, '0')));
    assert.equal(s.usedBytes, want, `snapshot ${s.name}`);
  }
  assert.ok(list[0].usedBytes > 3 << 20, `snapshot a holds the 3 MiB overwritten after it: ${list[0].usedBytes}`);
  assert.ok(list[1].usedBytes > 1 << 20 && list[1].usedBytes < 2 << 20, `snapshot b: ${list[1].usedBytes}`);
  const st = JSON.parse(await ok(['status', manifest, '--json'])) as { space: { storeBytes: number; snapshotsBytes: number; clonesBytes: number; freeBytes: number; recentBytesPerHour: number; warning: string | null } };
  assert.equal(st.space.snapshotsBytes, du(path.join(store, 'snapshots')));
  assert.equal(st.space.clonesBytes, du(path.join(store, 'clones')));
  // The store total includes the lock file status itself held (one block) at the time.
  const storeDu = du(store);
  assert.ok(st.space.storeBytes >= storeDu && st.space.storeBytes <= storeDu + 16384, `store ${st.space.storeBytes} vs du ${storeDu}`);
  assert.ok(Math.abs(st.space.freeBytes - dfAvail(store)) < 256 << 20, `free ${st.space.freeBytes} vs df ${dfAvail(store)}`);
  // The newest logs hold 1 MiB (and headers), over at least a minute: at most about 61 MiB an hour
  // (less when this loaded machine took more than a minute since "b").
  const logs = filesAllocated(path.join(store, 'snapshots', '00000002')); // its logs, and a little more
  assert.ok(st.space.recentBytesPerHour > 0 && st.space.recentBytesPerHour <= logs * 60, `${st.space.recentBytesPerHour} vs ${logs}`);
  assert.equal(st.space.warning, null);
  const human = await ok(['status', manifest]);
  assert.match(human, /^space\t[\d.]+ \w*B in the store \([\d.]+ \w*B snapshots, [\d.]+ KiB clones\)$/m);
  assert.match(human, /^free\t[\d.]+ \w*B; recent growth [\d.]+ \w*B\/hour$/m);
  assert.match(await ok(['list', manifest]), /^id\tname\tcreated \(UTC\)\tused\tchanged\texpires \(UTC\)\tkind\theld$/m);
});

/** Mount a small tmpfs for the store when this process may (root with CAP_SYS_ADMIN); undefined otherwise. */
function smallTmpfs(dir: string, size: string): (() => void) | undefined {
  fs.mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  return () => spawnSync('umount', [dir]);
}

test('status warns when the store has less free space than an hour of writes at the recent rate', async (t) => {
  const { dir, cleanup } = tmpdir('vsnap-space-');
  let unmount: (() => void) | undefined;
  t.after(() => {
    unmount?.();
    cleanup();
  });
  await ok(['init', dir, '--files', '1', '--file-size', '32MiB', '--partitions', '1', '--workers', '1', '--name', 'full']);
  const manifest = path.join(dir, 'volume.json');
  const mnt = path.join(dir, 'small');
  unmount = smallTmpfs(mnt, '24m');
  // Prefer a real small file system; where mount is not allowed, the test-only seam says the same.
  const env: Record<string, string> = unmount ? {} : { VSNAP_TEST_FREE_BYTES: String(8 << 20) };
  if (!unmount) process.stderr.write('space.test: cannot mount a tmpfs here; VSNAP_TEST_FREE_BYTES stands in for a small file system\n');
  const m = JSON.parse(fs.readFileSync(manifest, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(manifest, JSON.stringify({ ...m, store: path.join(mnt, 'store') }));
  await ok(['create', manifest, '--name', 'a'], { env });
  let st = JSON.parse(await ok(['status', manifest, '--json'], { env })) as { space: { freeBytes: number; warning: string | null } };
  assert.equal(st.space.warning, null, 'no writes yet: no warning');
  // 12 MiB logged within the minute: 720 MiB an hour, far more than the ~12 MiB left.
  await ok(['write', manifest, '--offset', '0'], { input: crypto.randomBytes(12 << 20), env });
  st = JSON.parse(await ok(['status', manifest, '--json'], { env })) as { space: { freeBytes: number; warning: string | null } };
  if (unmount) assert.ok(Math.abs(st.space.freeBytes - dfAvail(mnt)) < 1 << 20, `free ${st.space.freeBytes} vs df ${dfAvail(mnt)}`);
  assert.match(st.space.warning ?? '', /less than one more hour of writes at the recent rate/);
  const human = await ok(['status', manifest], { env });
  assert.match(human, /^warning: free space \(\d+ bytes\) is less than one more hour/m);
  // -q keeps the result (stdout), warning included, and says nothing on stderr.
  const q = await vsnap(['-q', 'status', manifest], { env });
  assert.equal(q.stderr, '');
  assert.match(q.stdout, /^warning: free space/m);
});

test('status before the first create: free space of the file system the store will be made on, and no store made', async (t) => {
  const { dir, cleanup } = tmpdir('vsnap-space-');
  t.after(cleanup);
  await ok(['init', dir, '--files', '1', '--file-size', '8MiB', '--partitions', '1', '--workers', '1', '--name', 'fresh']);
  const manifest = path.join(dir, 'volume.json');
  const st = JSON.parse(await ok(['status', manifest, '--json'])) as { space: { freeBytes: number; warning: string | null } };
  assert.ok(Math.abs(st.space.freeBytes - dfAvail(dir)) < 64 << 20, `free ${st.space.freeBytes} vs df ${dfAvail(dir)}`);
  assert.equal(st.space.warning, null);
  assert.equal(fs.existsSync(path.join(dir, '.vsnap')), false, 'status made no store');
});
