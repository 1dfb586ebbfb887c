// The incremental backup recipe (scripts/vsnap-backup.py) over ten snapshots
// with seeded random writes between them: a full copy of the first, then one
// incremental copy per snapshot through snapshot/<T>@<S> and its one dirty
// bitmap, into a qcow2 chain and into a raw image updated in place. Each
// restored image is checked with `qemu-img compare` against the snapshot's
// export, and the bytes the server sent (counted by the server, per
// connection) against the model of the blocks each round touched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ROOT, vsnap, tmpdir, requireTool } from '../helpers/cli.js';
import { makeFixture } from '../helpers/volume-fixture.js';
import { run, runOk, SYSTEM_PYTHON_ENV } from '../nbd/harness.js';
import { startServe, type Server } from './harness.js';
import { blocksToRanges, randomWrites, touchedBlocks, writeThrough } from './bitmap-model.js';

const SCRIPT = path.join(ROOT, 'scripts', 'vsnap-backup.py');

/** Bytes the server says it sent in READ replies on the connection that opened `exportName` (the last such). */
async function servedBytes(srv: Server, exportName: string): Promise<number> {
  for (let tries = 0; tries < 100; tries++) {
    const log = srv.log();
    const opened = [...log.matchAll(/nbd connection (\d+): export "([^"]*)"/g)].filter((m) => m[2] === exportName);
    const conn = opened[opened.length - 1]?.[1];
    const served = conn && new RegExp(`nbd connection ${conn}: served (\\d+) READ requests, (\\d+) bytes`).exec(log);
    if (served) return Number(served[2]);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no "served" line for export ${exportName} in the log:\n${srv.log()}`);
}

/** Bytes covered by the union of [offset, length] writes. */
function byteUnion(writes: readonly [number, number][]): number {
  const sorted = [...writes].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let end = -1;
  for (const [o, l] of sorted) {
    const s = Math.max(o, end);
    if (o + l > s) total += o + l - s;
    end = Math.max(end, o + l);
  }
  return total;
}

interface Backup {
  snapshot: string;
  snapshotId: number;
  from: string | null;
  fromId: number | null;
  bytesRead: number;
  runs: number;
}

async function backup(args: string[]): Promise<Backup> {
  const r = await runOk('python3', [SCRIPT, ...args], { env: SYSTEM_PYTHON_ENV });
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

test('incremental backup loop over ten snapshots: qcow2 chain and raw in place equal each snapshot, reading only the changed blocks', async (tt) => {
  for (const [tool, pkg] of [['qemu-img', 'qemu-utils'], ['qemu-nbd', 'qemu-utils'], ['nbdsh', 'python3-libnbd']]) {
    const m = requireTool(tool, pkg);
    if (m) return tt.skip(m);
  }
  const t = tmpdir();
  const bs = 65536;
  const fx = makeFixture(t.dir, { blockSize: bs, scale: 8 });
  const size = fx.size;
  const srv = await startServe(fx.manifest);
  const figures: string[] = [];
  try {
    const rounds = 10;
    const touched: Set<number>[] = [];
    const written: number[] = [];
    const shaped: boolean[] = [];
    for (let i = 1; i <= rounds; i++) {
      const c = await vsnap(['create', fx.manifest, '--name', `b${i}`]);
      assert.equal(c.code, 0, c.stderr);
      const writes = randomWrites(700 + i, size, 1 + (i % 4) * 3, (i % 3) * bs + 5000);
      // Odd rounds also zero (punching a hole) and trim parts of what they wrote: the
      // blocks are already in this round's log, so the changed set stays the writes'
      // blocks, while the content (and base:allocation) changes.
      const extra: [number, number, 'zero' | 'trim'][] = [];
      if (i % 2 === 1) {
        const [wo, wn] = writes[0];
        extra.push([wo + Math.floor(wn / 4), Math.max(1, Math.floor(wn / 2)), 'zero']);
        const [to, tn] = writes[writes.length - 1];
        extra.push([to, tn, 'trim']);
      }
      await writeThrough(srv.uri, [...writes, ...extra], 900 + i);
      shaped.push(extra.length > 0);
      touched.push(touchedBlocks(writes, bs));
      written.push(byteUnion(writes));
    }
    const snapUri = (i: number) => srv.exportUri(`snapshot/b${i}`);
    const rawImage = path.join(t.dir, 'image.raw');
    const full = await backup(['full', '--server', srv.uri, '--snapshot', 'b1', '--output', path.join(t.dir, 'b1.qcow2')]);
    // The script resolves the snapshot once and opens it by id (b<i> is snapshot i).
    const fullServed = await servedBytes(srv, 'snapshot/1');
    assert.deepEqual([full.snapshot, full.snapshotId, full.from, full.fromId], ['b1', 1, null, null]);
    assert.equal(fullServed, full.bytesRead, 'the server sent what the script counted');
    await runOk('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', path.join(t.dir, 'b1.qcow2'), snapUri(1)]);
    await backup(['full', '--server', srv.uri, '--snapshot', '1', '--output', rawImage, '--format', 'raw']);
    await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', rawImage, snapUri(1)]);
    figures.push(`full copy of b1: ${full.bytesRead} bytes read (volume ${size})`);

    let incTotal = 0;
    for (let i = 2; i <= rounds; i++) {
      const top = path.join(t.dir, `b${i}.qcow2`);
      const inc = await backup(['incremental', '--server', srv.uri, '--from', `b${i - 1}`, '--snapshot', `b${i}`, '--backing', path.join(t.dir, `b${i - 1}.qcow2`), '--output', top]);
      const served = await servedBytes(srv, `snapshot/${i}@${i - 1}`);
      assert.deepEqual([inc.snapshot, inc.snapshotId, inc.from, inc.fromId], [`b${i}`, i, `b${i - 1}`, i - 1]);
      // The blocks written between b(i-1) and b(i), and the bytes the writes themselves covered.
      const changed = blocksToRanges(touched[i - 2], bs, size);
      const changedBlockBytes = changed.reduce((a, r) => a + r.length, 0);
      assert.equal(served, inc.bytesRead, `b${i}: the server sent what the script counted`);
      if (!shaped[i - 2]) {
        assert.equal(inc.bytesRead, changedBlockBytes, `b${i}: the script read exactly the changed blocks`);
        assert.equal(inc.runs, changed.length, `b${i}: one run per changed range`);
        // Block rounding costs less than a block at each end of each changed range.
        assert.ok(inc.bytesRead >= written[i - 2] && inc.bytesRead - written[i - 2] < 2 * bs * changed.length, `b${i}: ${inc.bytesRead} read for ${written[i - 2]} written`);
      } else {
        // Zeroed and trimmed holes are written as zeroes, not read: never more than the changed blocks.
        assert.ok(inc.bytesRead <= changedBlockBytes, `b${i}: ${inc.bytesRead} read, more than the ${changedBlockBytes} bytes of changed blocks`);
      }
      await runOk('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', top, snapUri(i)]);
      // The same through an id pair and a raw image updated in place.
      await backup(['incremental', '--server', srv.uri, '--from', String(i - 1), '--snapshot', String(i), '--in-place', rawImage]);
      await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', rawImage, snapUri(i)]);
      incTotal += inc.bytesRead;
      figures.push(`incremental b${i - 1} -> b${i}: ${inc.bytesRead} bytes read in ${inc.runs} runs for ${written[i - 2]} bytes written`);
    }
    // "latest" is resolved to the snapshot it names, printed by name and id, and that is what is copied.
    const latest = await backup(['full', '--server', srv.uri, '--snapshot', 'latest', '--output', path.join(t.dir, 'latest.raw'), '--format', 'raw']);
    assert.deepEqual([latest.snapshot, latest.snapshotId], [`b${rounds}`, rounds]);
    await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', path.join(t.dir, 'latest.raw'), snapUri(rounds)]);
    const incLatest = await backup(['incremental', '--server', srv.uri, '--from', String(rounds - 2), '--snapshot', 'latest', '--in-place', path.join(t.dir, 'latest.raw')]);
    assert.deepEqual([incLatest.snapshot, incLatest.snapshotId, incLatest.from, incLatest.fromId], [`b${rounds}`, rounds, `b${rounds - 2}`, rounds - 2]);
    // An unknown snapshot, or a --from that is not older, exits non-zero naming it.
    const unknown = await run('python3', [SCRIPT, 'full', '--server', srv.uri, '--snapshot', 'nope', '--output', path.join(t.dir, 'nope.raw')], { env: SYSTEM_PYTHON_ENV });
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /no snapshot 'nope'/);
    const backwards = await run('python3', [SCRIPT, 'incremental', '--server', srv.uri, '--from', 'latest', '--snapshot', 'b1', '--in-place', path.join(t.dir, 'latest.raw')], { env: SYSTEM_PYTHON_ENV });
    assert.match(backwards.stderr, /--from latest \(snapshot 10\) is not older than --snapshot b1 \(snapshot 1\)/);
    // The whole chain still reads as every snapshot, from the bottom up.
    const info = await runOk('qemu-img', ['info', '--backing-chain', '--output=json', path.join(t.dir, `b${rounds}.qcow2`)]);
    assert.equal(JSON.parse(info.stdout).length, rounds, 'a chain of ten images');
    for (let i = 1; i <= rounds; i++) await runOk('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', path.join(t.dir, `b${i}.qcow2`), snapUri(i)]);
    assert.ok(incTotal < full.bytesRead, 'nine incrementals read less than one full copy');
    figures.push(`nine incrementals: ${incTotal} bytes read in total`);
    for (const f of figures) tt.diagnostic(f);
  } finally {
    await srv.stop();
    t.cleanup();
  }
});
