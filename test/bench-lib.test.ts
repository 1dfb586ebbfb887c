// Unit tests of the benchmark plumbing (bench/lib.ts, bench/fio.ts) and of
// run.ts's argument checks: the figures are the machine's, but the
// statistics, the goal verdicts and the fio jobs are code that can be wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { goalMet, goalText, missing, perRun, spread, type Row } from '../bench/lib.js';
import { fioArgs } from '../bench/fio.js';

const runJs = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bench', 'run.js');

test('spread: median, min and max of the runs; NaN for no runs', () => {
  assert.deepEqual(spread([5, 1, 3]), { value: 3, min: 1, max: 5 });
  assert.deepEqual(spread([4, 1, 3, 2]), { value: 2.5, min: 1, max: 4 });
  const none = spread([]);
  assert.ok(Number.isNaN(none.value) && Number.isNaN(none.min) && Number.isNaN(none.max));
});

test('perRun: ratio of run i to run i, and refuses unpaired runs', () => {
  assert.deepEqual(perRun([2, 9, 4], [1, 3, 8]), [2, 3, 0.5]);
  assert.throws(() => perRun([1, 2], [1]), /2 runs against 1/);
  // The median of per-run ratios is not the ratio of medians: the table says which it prints.
  assert.equal(spread(perRun([10, 1, 6], [5, 1, 6])).value, 1);
});

test('goalMet judges the median against the goal, either way round, and says missing without a figure', () => {
  const row = (value: number, op: '>=' | '<=', target: number): Row => ({ group: 'g', what: 'w', value, unit: 'ratio', goal: { op, target } });
  assert.equal(goalMet(row(1.0, '>=', 1.0)), 'met');
  assert.equal(goalMet(row(0.99, '>=', 1.0)), 'missed');
  assert.equal(goalMet(row(1.5, '<=', 1.5)), 'met');
  assert.equal(goalMet(row(1.51, '<=', 1.5)), 'missed');
  assert.equal(goalMet({ group: 'g', what: 'w', value: 2, unit: 'ms' }), '');
  assert.equal(goalMet(missing('g', 'w', 'qemu-nbd not installed', { op: '>=', target: 1 })), 'missing');
});

test('goalText writes the goal as issue 11 does', () => {
  assert.equal(goalText({ op: '>=', target: 1 }), '>= 1.0');
  assert.equal(goalText({ op: '>=', target: 0.8 }), '>= 0.8');
  assert.equal(goalText({ op: '<=', target: 1.5, of: 'node -e 0' }), '<= 1.5x node -e 0');
});

test('fioArgs: random jobs repeat their offsets and do a fixed amount of work; sequential ones cover the region', () => {
  const rand = fioArgs({ rw: 'randread', bs: '4k', size: 1 << 30, ioSize: 256 << 20, depth: 32 }, 'nbd+unix:///live?socket=/s');
  for (const a of ['--ioengine=nbd', '--uri=nbd+unix:///live?socket=/s', '--rw=randread', '--bs=4k', `--size=${1 << 30}`, `--io_size=${256 << 20}`, '--iodepth=32', '--randrepeat=1']) assert.ok(rand.includes(a), `${a} in ${rand.join(' ')}`);
  const seeded = fioArgs({ rw: 'randwrite', bs: '64k', size: 1 << 28, ioSize: 1 << 20, depth: 4, seed: 1007 }, 'u');
  assert.ok(seeded.includes('--randseed=1007'));
  const seq = fioArgs({ rw: 'read', bs: '1M', size: 1 << 30, depth: 8 }, 'u');
  assert.ok(!seq.some((a) => a.startsWith('--io_size') || a.startsWith('--randrepeat')), seq.join(' '));
});

test('run.js refuses an unknown group and a --vsnap that does not exist, before doing any work', () => {
  const bad = spawnSync(process.execPath, [runJs, '--only', 'nbd,nope'], { encoding: 'utf8' });
  assert.equal(bad.status, 2, bad.stderr);
  assert.match(bad.stderr, /unknown group nope/);
  assert.match(bad.stderr, /issue11/);
  const noVsnap = spawnSync(process.execPath, [runJs, '--only', 'cli', '--vsnap', '/nonexistent/bin/vsnap'], { encoding: 'utf8' });
  assert.equal(noVsnap.status, 2, noVsnap.stderr);
  assert.match(noVsnap.stderr, /--vsnap: no file \/nonexistent\/bin\/vsnap/);
});
