// Fault points (VSNAP_FAULT=<point>, see docs/reliability.md): SIGKILL at the
// exact windows a random kill rarely hits. Each point runs several rounds on
// one volume; every round checks the point really fired in its window (the
// crash state on disk is the one the window implies), then that the next
// command recovers and the model holds.
//
// VSNAP_CRASH_FAULT_ROUNDS sets the rounds per point (CI default below).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpdir } from '../helpers/cli.js';
import { Scenario, alive, storeDirOf, type CliRun } from './harness.js';

const ROUNDS = (() => {
  const v = Number(process.env.VSNAP_CRASH_FAULT_ROUNDS ?? 6);
  if (!Number.isInteger(v) || v < 1) throw new Error(`VSNAP_CRASH_FAULT_ROUNDS must be a positive integer`);
  return v;
})();
const SEED = Number(process.env.VSNAP_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const none = { target: 'none' } as const;

function snapshotEntries(sc: Scenario): string[] {
  return fs.readdirSync(path.join(storeDirOf(sc.fx), 'snapshots')).sort();
}

/** The coordinator died by SIGKILL and left its lock behind, naming its (dead) pid. */
function coordinatorDied(sc: Scenario, run: CliRun): void {
  assert.equal(run.signal, 'SIGKILL', `${sc.label}: the coordinator should have died at the fault point (exit ${run.code}; ${run.stderr})`);
  const lock = JSON.parse(fs.readFileSync(path.join(storeDirOf(sc.fx), 'lock'), 'utf8')) as { pid: number };
  assert.equal(lock.pid, run.pid, `${sc.label}: the lock names its dead holder`);
  assert.ok(!alive(lock.pid));
}

/** A worker died at the fault point: the CLI survives it and fails with exit 1 naming the worker and the signal. */
function workerDied(sc: Scenario, run: CliRun): void {
  assert.equal(run.code, 1, `${sc.label}: the command should fail when its worker dies (exit ${run.code ?? run.signal}; ${run.stderr})`);
  assert.match(run.stderr, /worker \d+ \(pid \d+\) exited on signal SIGKILL/, sc.label);
}

/** Some writes after the newest snapshot, and at least `min` snapshots. */
async function prepare(sc: Scenario, min: number): Promise<void> {
  while (sc.ids.length < min) {
    await sc.write(none);
    await sc.create(none);
  }
  await sc.write(none);
}

// One volume for the whole file, so the set-up is paid once; every test
// leaves it consistent with the model for the next.
let shared: { sc: Scenario; cleanup: () => void } | undefined;
function scenario(): Scenario {
  if (!shared) {
    const tmp = tmpdir('vsnap-crash-fault-');
    shared = { sc: Scenario.create(tmp.dir, SEED, `seed ${SEED}`), cleanup: tmp.cleanup };
  }
  return shared.sc;
}
after(async () => {
  if (!shared) return;
  try {
    shared.sc.label = `seed ${SEED} end`;
    await shared.sc.checkAllViaCli('end');
  } finally {
    shared.cleanup();
  }
});

async function rounds(name: string, fn: (sc: Scenario, round: number) => Promise<void>): Promise<void> {
  const sc = scenario();
  const before = sc.stats.faults;
  for (let r = 0; r < ROUNDS; r++) {
    sc.label = `${name} seed ${SEED} round ${r}`;
    await fn(sc, r);
    sc.onInterrupted = undefined;
  }
  assert.ok(sc.stats.faults - before >= ROUNDS, `${name}: only ${sc.stats.faults - before} of ${ROUNDS} rounds died at the fault point`);
}

const fault = (point: string) => ({ VSNAP_FAULT: point });

test(`create-before-commit: no snapshot, .tmp removed by the next command (${ROUNDS} rounds)`, async () => {
  await rounds('create-before-commit', async (sc) => {
    await prepare(sc, 1);
    sc.onInterrupted = (run) => {
      coordinatorDied(sc, run);
      assert.ok(snapshotEntries(sc).some((n) => n.endsWith('.tmp')), `${sc.label}: a prepared .tmp directory is left by the crash`);
    };
    const out = await sc.create(none, fault('create-before-commit'));
    sc.onInterrupted = undefined;
    assert.ok(out.interrupted && out.id === undefined, `${sc.label}: a create killed before its commit point must leave no snapshot`);
  });
});

test(`create-after-commit: the snapshot exists and reads as the volume at the create (${ROUNDS} rounds)`, async () => {
  await rounds('create-after-commit', async (sc) => {
    await prepare(sc, 1);
    sc.onInterrupted = (run) => coordinatorDied(sc, run);
    const out = await sc.create(none, fault('create-after-commit'));
    sc.onInterrupted = undefined;
    assert.ok(out.interrupted && out.id !== undefined, `${sc.label}: a create killed after its commit point must leave its snapshot`);
    // The next writes go through the new snapshot's log.
    await sc.write(none);
  });
});

test(`delete-after-merge (coordinator) and worker-delete-{before,after}-merge: the snapshot stays, reading as before (${ROUNDS} rounds each)`, async () => {
  for (const point of ['delete-after-merge', 'worker-delete-before-merge', 'worker-delete-after-merge']) {
    await rounds(point, async (sc) => {
      await prepare(sc, 3);
      // Not the oldest: its log merges into a predecessor.
      const ids = sc.ids;
      const victim = ids[1 + sc.int(ids.length - 1)];
      sc.onInterrupted = (run) => (point.startsWith('worker') ? workerDied(sc, run) : coordinatorDied(sc, run));
      const out = await sc.delete(victim, none, fault(point));
      sc.onInterrupted = undefined;
      assert.ok(out.interrupted && !out.gone, `${sc.label}: snapshot ${victim} must survive a delete killed before its rename`);
      // Deleting again, without the fault, completes; the others still read as before.
      const again = await sc.delete(victim, none);
      assert.ok(!again.interrupted && again.gone);
    });
  }
});

test(`delete-before-rm: the .deleting directory goes at the next command, the snapshot is gone (${ROUNDS} rounds)`, async () => {
  await rounds('delete-before-rm', async (sc) => {
    await prepare(sc, 3);
    const ids = sc.ids;
    const victim = ids[sc.int(ids.length)];
    sc.onInterrupted = (run) => {
      coordinatorDied(sc, run);
      assert.ok(snapshotEntries(sc).includes(`${String(victim).padStart(8, '0')}.deleting`), `${sc.label}: the crash leaves ${victim}.deleting`);
    };
    const out = await sc.delete(victim, none, fault('delete-before-rm'));
    sc.onInterrupted = undefined;
    assert.ok(out.interrupted && out.gone, `${sc.label}: snapshot ${victim} is gone once renamed to .deleting`);
  });
});

test(`write-before-in-place: old blocks logged, in-place write not done; write and restore (${ROUNDS} rounds each)`, async () => {
  await rounds('write-before-in-place', async (sc) => {
    if (sc.ids.length > 4) await sc.prune(2, none);
    // Fresh snapshot: every block the write touches is copied first.
    await sc.create(none);
    const logsBefore = clogBytes(sc);
    sc.onInterrupted = (run) => {
      workerDied(sc, run);
      assert.ok(clogBytes(sc) > logsBefore, `${sc.label}: the dead worker's copy-on-write records reached the newest log`);
    };
    const big = sc.randomWrite();
    const out = await sc.write(none, fault('write-before-in-place'), { off: big.off, data: Buffer.concat([big.data, big.data]).subarray(0, Math.min(2 * big.data.length, sc.fx.size - big.off)) });
    sc.onInterrupted = undefined;
    assert.ok(out.interrupted, `${sc.label}: the write must fail when its worker dies`);
    // The same blocks again: already logged, so they must not be copied twice (the log would reject a duplicate).
    await sc.write(none);
  });
  await rounds('write-before-in-place during restore', async (sc) => {
    await prepare(sc, 2);
    const ids = sc.ids;
    sc.onInterrupted = (run) => workerDied(sc, run);
    const out = await sc.restore(ids[sc.int(ids.length)], none, fault('write-before-in-place'));
    sc.onInterrupted = undefined;
    assert.ok(out.interrupted, `${sc.label}: the restore must fail when its worker dies`);
  });
});

/** Total bytes of the newest snapshot's change logs. */
function clogBytes(sc: Scenario): number {
  const id = sc.ids[sc.ids.length - 1];
  const dir = path.join(storeDirOf(sc.fx), 'snapshots', String(id).padStart(8, '0'));
  return fs.readdirSync(dir).filter((n) => n.endsWith('.clog')).reduce((a, n) => a + fs.statSync(path.join(dir, n)).size, 0);
}
