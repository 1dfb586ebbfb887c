// Fault injection under `vsnap write`, `create`, `delete`, `restore` and
// `prune`: a counting run lists every file-system call occurrence of the
// coordinator and each worker; then each chosen (call, occurrence, errno)
// fails in turn on a fresh copy of a prepared volume, and every promise is
// checked, including after an orderly restart (test/faults/ops.ts).
//
// The normal suite runs a fixed share (points.ts: ciShare); `npm run
// test:faults` (VSNAP_FAULTS_FULL=1) runs every case. VSNAP_FAULTS_STRIDE
// changes the share's stride.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpdir } from '../helpers/cli.js';
import { prepareGolden, ciShare, type Golden } from './points.js';
import { OPS, opSpec, runOp, faultCase, type OpName } from './ops.js';
import { countPoints, runCases, describeFailures, summary } from './run-cases.js';

const STRIDE = Number(process.env.VSNAP_FAULTS_STRIDE ?? 61);
let tmp: { dir: string; cleanup: () => void };
let golden: Golden;

before(async () => {
  tmp = tmpdir('vsnap-faults-');
  const dir = path.join(tmp.dir, 'golden');
  fs.mkdirSync(dir);
  golden = await prepareGolden(dir);
});
after(() => tmp?.cleanup());

for (const [i, op] of OPS.entries()) {
  test(`${op}: each file-system call occurrence fails in turn (EIO, ENOSPC); every promise holds, also after an orderly restart`, async (t) => {
    const points = await countPoints(golden, tmp.dir, async (fx, model, env) => {
      const r = await runOp(opSpec(op as OpName, fx, model), env);
      assert.equal(r.code, 0, `counting run of ${op} failed: ${r.stderr}`);
    });
    assert.ok(points.length > 10, `${op}: only ${points.length} fault points counted: is the shim loaded?`);
    assert.ok(points.some((p) => p.role.startsWith('worker')) || op === 'create', `${op}: no worker call was counted`);
    const tally = await runCases(op, golden, tmp.dir, points, (all) => ciShare(all, STRIDE, i), (c, fx, model, log, seen) => faultCase(op as OpName, c, fx, model, log, seen));
    t.diagnostic(summary(tally));
    if (tally.failures.length) t.diagnostic(describeFailures(tally));
    assert.ok(tally.fired >= tally.run * 0.9, `${op}: only ${tally.fired} of ${tally.run} runs reached their fault: the call sequence is not deterministic`);
    assert.equal(tally.failures.length, 0, `${summary(tally)}\n${describeFailures(tally)}`);
  });
}
