// nbdcopy: many requests in flight, and with -C 4 four connections at once,
// which it only does because the server advertises CAN_MULTI_CONN.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { requireTool } from '../helpers/cli.js';
import { MiB, assertSameBytes, pattern, patternWithZeroes, runOk, withServer } from './harness.js';

const skip = requireTool('nbdcopy', 'libnbd-bin');
const SIZE = 16 * MiB;

test('nbdcopy streams a snapshot export to stdout byte for byte', { skip }, async () => {
  const snap = patternWithZeroes(SIZE, 31, [[4 * MiB, 2 * MiB]]);
  await withServer({ live: pattern(SIZE, 32), snapshots: { s1: snap } }, async (s) => {
    const r = await runOk('nbdcopy', [s.uri('snapshot/s1'), '-']);
    assertSameBytes(r.stdoutBuf, snap, 'nbdcopy output');
  });
});

test('nbdcopy -C 4 --flush writes a file into the live export over four connections', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 33) }, async (s) => {
    const src = path.join(s.dir, 'src.img');
    const data = patternWithZeroes(SIZE, 34, [[MiB, 3 * MiB]]);
    fs.writeFileSync(src, data);
    // nbdcopy opens no more connections than it has threads, which default to the core count.
    await runOk('nbdcopy', ['-C', '4', '-T', '4', '--flush', src, s.uri()]);
    assertSameBytes(s.readLive(), data, 'live file after nbdcopy');
    await s.waitForLog((l) => l.split('\n').filter((x) => /export "" \(read-write/.test(x)).length === 4);
  });
});

test('nbdcopy copies the live export out to a file', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 35) }, async (s) => {
    const out = path.join(s.dir, 'out.img');
    fs.writeFileSync(out, Buffer.alloc(0));
    await runOk('nbdcopy', ['-C', '4', '-T', '4', s.uri('live'), out]);
    assertSameBytes(fs.readFileSync(out), s.liveData, 'copied file');
  });
});
