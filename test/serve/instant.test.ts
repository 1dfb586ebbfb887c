// A snapshot taken through the control socket while clients write must be one
// instant across all partitions: a writer that updates a counter in every
// partition in a fixed order, one acknowledged write after another, must find
// in the snapshot a state that some moment of its run really had. fio's nbd
// engine writes (and verifies) at the same time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { vsnap, tmpdir, requireTool } from '../helpers/cli.js';
import { runOk, SYSTEM_PYTHON_ENV } from '../nbd/harness.js';
import { startServe } from './harness.js';

const MiB = 1 << 20;

const SEQUENCER = `
import nbd, sys, struct, os
uri, locs, stop = sys.argv[1], [int(x) for x in sys.argv[2].split(',')], sys.argv[3]
h = nbd.NBD()
h.connect_uri(uri)
i = 0
while not os.path.exists(stop):
    i += 1
    rec = struct.pack('<Q', i) * 64
    for loc in locs:
        h.pwrite(rec, loc)
h.flush()
print(i)
`;

const READER = `
import nbd, sys, struct
uri, locs = sys.argv[1], [int(x) for x in sys.argv[2].split(',')]
h = nbd.NBD()
h.connect_uri(uri)
out = []
for loc in locs:
    b = h.pread(512, loc)
    vals = set(struct.unpack('<64Q', b))
    if len(vals) != 1:
        raise SystemExit('torn record at %d: %r' % (loc, sorted(vals)[:4]))
    out.append(str(vals.pop()))
print(','.join(out))
`;

test('a snapshot over the control socket during NBD writes (fio and a sequencer) is one instant', async (tt) => {
  for (const [tool, pkg] of [['fio', 'fio'], ['nbdsh', 'python3-libnbd']]) {
    const m = requireTool(tool, pkg);
    if (m) return tt.skip(m);
  }
  const t = tmpdir();
  const dir = path.join(t.dir, 'vol');
  assert.equal((await vsnap(['init', dir, '--file-size', '16MiB', '--partitions', '4', '--workers', '2'])).code, 0);
  const manifest = path.join(dir, 'volume.json');
  // 48 MiB in 4 partitions of 12 MiB: the counter lives near the end of each.
  const locs = [12, 24, 36, 48].map((m) => m * MiB - 65536);
  const stop = path.join(t.dir, 'stop');
  const srv = await startServe(manifest);
  try {
    const seq = spawn('python3', ['-c', SEQUENCER, srv.uri, locs.join(','), stop], { env: { ...process.env, ...SYSTEM_PYTHON_ENV }, stdio: ['ignore', 'pipe', 'pipe'] });
    let seqOut = '';
    let seqErr = '';
    seq.stdout.on('data', (d: Buffer) => (seqOut += d));
    seq.stderr.on('data', (d: Buffer) => (seqErr += d));
    const seqDone = new Promise<number | null>((r) => seq.on('exit', r));
    const fio = runOk(
      'fio',
      [
        '--ioengine=nbd', `--uri=${srv.uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=32', '--verify=crc32c', '--verify_fatal=1',
        // fio otherwise leaves verify state files in its working directory (the repository).
        '--verify_state_save=0',
        '--name=a', '--offset=0', '--size=8m', '--loops=2',
        '--name=b', '--offset=12m', '--size=8m', '--loops=2',
      ],
      { timeoutMs: 120_000 },
    );
    await new Promise((r) => setTimeout(r, 700));
    const snaps: number[] = [];
    for (let k = 0; k < 3; k++) {
      const c = await vsnap(['create', manifest, '--name', `during-${k}`, '--json']);
      assert.equal(c.code, 0, c.stderr);
      snaps.push(JSON.parse(c.stdout).id);
      await new Promise((r) => setTimeout(r, 300));
    }
    const f = await fio;
    assert.doesNotMatch(f.stdout + f.stderr, /verify: bad/);
    fs.writeFileSync(stop, '');
    assert.equal(await seqDone, 0, seqErr);
    const last = Number(seqOut.trim());
    assert.ok(last > 10, `the sequencer made progress (${last})`);
    for (const id of snaps) {
      const r = await runOk('python3', ['-c', READER, srv.exportUri(`snapshot/${id}`), locs.join(',')], { env: SYSTEM_PYTHON_ENV });
      const v = r.stdout.trim().split(',').map(Number);
      // One instant: each location holds i or i-1 in write order, non-increasing.
      assert.ok(v[0] >= 1, `snapshot ${id} was taken while the sequencer ran: ${v}`);
      for (let k = 1; k < v.length; k++) assert.ok(v[k] <= v[k - 1], `snapshot ${id}: ${v} is not one instant`);
      assert.ok(v[v.length - 1] >= v[0] - 1, `snapshot ${id}: ${v} is not one instant`);
    }
    const live = await runOk('python3', ['-c', READER, srv.uri, locs.join(',')], { env: SYSTEM_PYTHON_ENV });
    assert.deepEqual(live.stdout.trim().split(',').map(Number), locs.map(() => last));
  } finally {
    fs.writeFileSync(stop, '');
    await srv.stop();
    t.cleanup();
  }
});
