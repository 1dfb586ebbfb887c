// Real `kill -9` (SIGKILL) of the `vsnap` CLI process (the coordinator) or of
// one of its worker processes, at random moments during write, create,
// delete, restore and prune. After every kill the next command must recover
// by itself, and the model must hold (docs/reliability.md lists the promises).
//
// VSNAP_CRASH_ITERATIONS sets the number of killed commands (CI default
// below); VSNAP_CRASH_SEED replays an operation sequence (kill timing is
// real time, so a replay is close, not exact).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from '../helpers/cli.js';
import { Scenario, iterations, type KillPlan, type Op } from './harness.js';

const N = iterations(90);
const SEED = Number(process.env.VSNAP_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));

test(`kill -9 of the coordinator or a worker at random moments (${N} iterations, seed ${SEED})`, { timeout: 15 * 60_000 }, async (t) => {
  const tmp = tmpdir('vsnap-crash-kill-');
  const sc = Scenario.create(tmp.dir, SEED, `seed ${SEED}`);
  // How long each command runs once its workers exist (ms), learnt from the
  // runs a kill came too late for, so that kills spread over the whole command.
  const span: Record<Op, number> = { write: 250, create: 250, delete: 250, restore: 250, prune: 300 };
  const t0 = Date.now();
  try {
    // Start with two snapshots and some changes so deletes merge and restores copy.
    await sc.create({ target: 'none' });
    await sc.write({ target: 'none' });
    await sc.create({ target: 'none' });
    await sc.write({ target: 'none' });
    for (let i = 0; i < N; i++) {
      sc.label = `seed ${SEED} iteration ${i}`;
      const n = sc.ids.length;
      const r = sc.rand();
      let op: Op;
      if (n === 0) op = r < 0.5 ? 'create' : 'write';
      else if (n >= 5) op = r < 0.3 ? 'delete' : r < 0.55 ? 'prune' : r < 0.8 ? 'write' : 'restore';
      else op = r < 0.3 ? 'write' : r < 0.55 ? 'create' : r < 0.72 ? 'delete' : r < 0.87 ? 'restore' : 'prune';
      const k = sc.rand();
      const delay = Math.floor(sc.rand() * span[op] * 1.3);
      // Soon after the command starts changing the store: the operation itself.
      const soon = Math.floor(sc.rand() * 40);
      const kill: KillPlan =
        k < 0.1
          ? { target: 'coordinator', after: 'spawn', delayMs: Math.floor(sc.rand() * 350) }
          : k < 0.35
            ? { target: 'coordinator', after: 'workers', delayMs: delay }
            : k < 0.6
              ? { target: 'coordinator', after: 'mutating', delayMs: soon }
              : k < 0.8
                ? { target: 'worker', after: 'workers', delayMs: delay, pick: sc.int(3) }
                : { target: 'worker', after: 'mutating', delayMs: soon, pick: sc.int(3) };
      const ids = sc.ids;
      let out;
      switch (op) {
        case 'write':
          out = await sc.write(kill);
          break;
        case 'create':
          out = await sc.create(kill);
          break;
        case 'delete':
          out = await sc.delete(ids[sc.int(ids.length)], kill);
          break;
        case 'restore':
          out = await sc.restore(ids[sc.int(ids.length)], kill);
          break;
        case 'prune':
          out = await sc.prune(1 + sc.int(Math.max(1, ids.length - 1)), kill);
          break;
      }
      const run = out.run;
      if (!run.killed && run.code === 0 && run.workersAtMs !== undefined) {
        span[op] = Math.round(0.7 * span[op] + 0.3 * (run.durationMs - run.workersAtMs));
      }
      // Between crashes the volume also keeps changing normally.
      if (sc.rand() < 0.15) await sc.write({ target: 'none' });
      if ((i + 1) % 40 === 0) await sc.checkAllViaCli(`checkpoint after iteration ${i}`);
    }
    sc.label = `seed ${SEED} end`;
    await sc.checkAllViaCli('end');
    const s = sc.stats;
    t.diagnostic(sc.summary());
    t.diagnostic(`${N} iterations in ${((Date.now() - t0) / 1000).toFixed(1)} s; learnt spans ${JSON.stringify(span)}`);
    // The test must actually have crashed things, or it proves nothing.
    if (N >= 40) {
      assert.ok(s.coordinatorKills >= N / 8, `only ${s.coordinatorKills} coordinator kills landed`);
      assert.ok(s.workerKills >= N / 10, `only ${s.workerKills} worker kills landed`);
      assert.ok(s.staleLocksTakenOver >= N / 10, `only ${s.staleLocksTakenOver} stale locks taken over`);
    }
  } finally {
    tmp.cleanup();
  }
});
