// Crash safety of restore of the newest snapshot, which cuts its change logs
// (docs/reliability.md "Restore of the newest snapshot"): the worker is
// killed at each crash point of the restore (VSNAP_FAULT, src/faults.ts);
// right after the kill, before any vsnap command opens the store, every
// snapshot computed from the files (harness diskViews) must equal the model;
// then the re-run completes, the newest logs are back to their header size,
// every snapshot reads as the model through vsnap, and `vsnap verify` is
// clean. A failed truncate (strace fault injection) must not fail the
// restore, and the next open completes the cut.
//
// VSNAP_CRASH_FAULT_ROUNDS sets the rounds per point (default 3).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, ROOT, requireTool, tmpdir, vsnap } from '../helpers/cli.js';
import { liveFromFiles } from '../helpers/volume-fixture.js';
import { Scenario, storeDirOf, firstDiff, type CliRun } from './harness.js';

const ROUNDS = Number(process.env.VSNAP_CRASH_FAULT_ROUNDS ?? 3);
const SEED = Number(process.env.VSNAP_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const HEADER = 4096;
const none = { target: 'none' } as const;

let shared: { sc: Scenario; cleanup: () => void } | undefined;
function scenario(): Scenario {
  if (!shared) {
    const tmp = tmpdir('vsnap-restore-crash-');
    shared = { sc: Scenario.create(tmp.dir, SEED, `seed ${SEED}`), cleanup: tmp.cleanup };
  }
  return shared.sc;
}
after(() => shared?.cleanup());

function logFile(sc: Scenario, id: number, partition: string): string {
  return path.join(storeDirOf(sc.fx), 'snapshots', String(id).padStart(8, '0'), `${partition}.clog`);
}
const newestSizes = (sc: Scenario): number[] => sc.fx.partitions.map((p) => fs.statSync(logFile(sc, sc.ids[sc.ids.length - 1], p.id)).size);

function stateOf(sc: Scenario, partition: string): { clean: boolean; logs: Record<string, number> } {
  return JSON.parse(fs.readFileSync(path.join(storeDirOf(sc.fx), 'state', `${partition}.json`), 'utf8'));
}

/** Two snapshots at least, and writes after the newest that span several partitions. */
async function prepare(sc: Scenario): Promise<void> {
  while (sc.ids.length < 2) {
    await sc.write(none);
    await sc.create(none);
  }
  for (let k = 0; k < 3; k++) await sc.write(none);
  // Every partition (so every worker) has something to restore: one write across nearly all the volume.
  await sc.write(none, undefined, { off: 1000, data: Buffer.alloc(sc.fx.size - 2000, 0x5a + sc.ids.length) });
}

const POINTS: { point: string; crashState: (sc: Scenario, sizes: number[], newest: number) => void }[] = [
  {
    point: 'write-before-in-place',
    crashState: (sc, sizes) => assert.ok(sizes.every((n) => n > HEADER), `${sc.label}: no log is cut before the in-place writes (${sizes})`),
  },
  {
    point: 'restore-before-cut',
    crashState: (sc, sizes) => assert.ok(sizes.every((n) => n > HEADER), `${sc.label}: no log is cut before the state records it (${sizes})`),
  },
  {
    point: 'restore-cut-recorded',
    crashState: (sc, sizes, newest) => {
      assert.ok(sizes.every((n) => n > HEADER), `${sc.label}: the log is still full (${sizes})`);
      const recorded = sc.fx.partitions.map((p) => stateOf(sc, p.id)).filter((s) => !s.clean && s.logs[String(newest)] === HEADER);
      assert.ok(recorded.length > 0, `${sc.label}: some partition state records the header length, unclean`);
    },
  },
  {
    point: 'restore-mid-cut',
    crashState: (sc, sizes) => assert.ok(sizes.some((n) => n === HEADER), `${sc.label}: a truncated log (${sizes})`),
  },
  {
    point: 'restore-after-cut',
    crashState: (sc, sizes) => assert.ok(sizes.some((n) => n === HEADER), `${sc.label}: a cut log (${sizes})`),
  },
];

for (const { point, crashState } of POINTS) {
  test(`restore of the newest, worker killed at ${point}: no snapshot data lost, the re-run completes and cuts, verify clean (${ROUNDS} rounds, seed ${SEED})`, async () => {
    const sc = scenario();
    for (let r = 0; r < ROUNDS; r++) {
      sc.label = `${point} seed ${SEED} round ${r}`;
      await prepare(sc);
      const newest = sc.ids[sc.ids.length - 1];
      let sawCrash = false;
      sc.onInterrupted = (run: CliRun) => {
        sawCrash = true;
        assert.match(run.stderr, /worker \d+ \(pid \d+\) exited on signal SIGKILL/, sc.label);
        crashState(sc, newestSizes(sc), newest);
        // Before any vsnap command opens the store: every snapshot, from the files, is the model.
        sc.checkAll(`right after the kill at ${point}`);
      };
      const out = await sc.restore(newest, none, { VSNAP_FAULT: point });
      sc.onInterrupted = undefined;
      assert.ok(out.interrupted && sawCrash, `${sc.label}: the restore must die at ${point}`);
      assert.deepEqual(newestSizes(sc), sc.fx.partitions.map(() => HEADER), `${sc.label}: the re-run cut every newest log`);
      await sc.checkAllViaCli(`after the re-run at ${point}`);
      const v = await vsnap(['verify', sc.fx.manifest]);
      assert.equal(v.code, 0, `${sc.label}: verify after the re-run: ${v.stderr}${v.stdout}`);
    }
  });
}

test('a failed truncate of the cut (strace: ftruncate EIO) does not fail the restore; the next open completes the cut', async (t) => {
  const skip = requireTool('strace', 'strace');
  if (skip) return t.skip(skip);
  const sc = scenario();
  sc.label = `cut EIO seed ${SEED}`;
  await prepare(sc);
  const newest = sc.ids[sc.ids.length - 1];
  const r = spawnSync('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=ftruncate', '-e', 'inject=ftruncate:error=EIO', process.execPath, BIN, 'restore', sc.fx.manifest, String(newest), '--json'], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', VSNAP_FAULT: '' },
    timeout: 120_000,
  });
  assert.equal(r.status, 0, `restore with failing ftruncate: exit ${r.status}: ${r.stderr}`);
  assert.match(r.stderr, /warning: partition \S+ is restored, but .*\.clog: cutting the log to its 4096-byte header failed: .*EIO/, r.stderr);
  sc.live = Buffer.from(sc.snaps.get(newest)!);
  const live = liveFromFiles(sc.fx);
  assert.ok(live.equals(sc.live), `live after the restore: ${firstDiff(live, sc.live)}`);
  sc.checkAll('after a restore whose cut failed');
  const v = await vsnap(['verify', sc.fx.manifest]);
  assert.equal(v.code, 0, `verify after a failed cut: ${v.stderr}${v.stdout}`);
  // The next command that opens the logs writable drops the records (dropTail).
  await sc.checkAllViaCli('after a restore whose cut failed');
  assert.deepEqual(newestSizes(sc), sc.fx.partitions.map(() => HEADER), 'the next open completed the cut');
  sc.checkAll('after the next open completed the cut');
});
