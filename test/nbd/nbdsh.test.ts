// nbdsh (libnbd's Python binding) for what other clients never do: requests
// the server must refuse, the simple-reply and EXPORT_NAME paths, LIST,
// BLOCK_STATUS with and without REQ_ONE, FAST_ZERO, and deep queues.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { requireTool } from '../helpers/cli.js';
import { MiB, SYSTEM_PYTHON_ENV, assertSameBytes, pattern, patternWithZeroes, runOk, withServer } from './harness.js';

const skip = requireTool('nbdsh', 'libnbd-bin') ?? requireTool('python3', 'python3-libnbd');
const SIZE = 4 * MiB;

/** Run a Python snippet in nbdsh (`h` is the handle, `nbd` the module); stdout is returned. */
async function nbdsh(script: string, args: string[] = []): Promise<string> {
  return (await runOk('nbdsh', [...args, '-c', script], { env: SYSTEM_PYTHON_ENV })).stdout;
}

test('nbdsh: a write to a read-only export fails with EPERM and changes nothing', { skip }, async () => {
  const snap = pattern(SIZE, 51);
  await withServer({ live: pattern(SIZE, 52), snapshots: { s1: snap } }, async (s) => {
    const out = await nbdsh(
      `
h.set_strict_mode(0)
assert h.is_read_only()
try:
    h.pwrite(b"x" * 512, 0)
    print("no error")
except nbd.Error as e:
    print(e.errno)
`,
      ['-u', s.uri('snapshot/s1')],
    );
    assert.equal(out.trim(), 'EPERM');
    assertSameBytes(fs.readFileSync(path.join(s.dir, 'snap-s1.img')), snap, 'snapshot file');
    assertSameBytes(s.readLive(), s.liveData, 'live file');
  });
});

test('nbdsh: a read past the end fails with EINVAL and the connection goes on', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 53) }, async (s) => {
    const out = await nbdsh(
      `
h.set_strict_mode(0)
try:
    h.pread(512, h.get_size())
    print("no error")
except nbd.Error as e:
    print(e.errno)
try:
    h.pread(1024, h.get_size() - 512)
    print("no error")
except nbd.Error as e:
    print(e.errno)
open(${JSON.stringify(path.join(s.dir, 'tail.bin'))}, "wb").write(h.pread(4096, h.get_size() - 4096))
`,
      ['-u', s.uri()],
    );
    assert.equal(out, 'EINVAL\nEINVAL\n');
    assertSameBytes(fs.readFileSync(path.join(s.dir, 'tail.bin')), s.liveData.subarray(SIZE - 4096), 'last 4 KiB');
  });
});

test('nbdsh: without structured replies, reads and writes use simple replies correctly', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 54) }, async (s) => {
    const input = path.join(s.dir, 'in.bin');
    const data = pattern(100_000, 55, 12345);
    fs.writeFileSync(input, data);
    const out = path.join(s.dir, 'out.bin');
    await nbdsh(
      `
h.set_request_structured_replies(False)
h.connect_uri(${JSON.stringify(s.uri())})
assert not h.get_structured_replies_negotiated()
h.pwrite(open(${JSON.stringify(input)}, "rb").read(), 12345)
open(${JSON.stringify(out)}, "wb").write(h.pread(200_000, 0))
h.flush()
`,
    );
    const want = Buffer.from(s.liveData);
    data.copy(want, 12345);
    assertSameBytes(fs.readFileSync(out), want.subarray(0, 200_000), 'read back');
    assertSameBytes(s.readLive(), want, 'live file');
  });
});

test('nbdsh: plain newstyle (handshake flags 0) reaches the export through EXPORT_NAME', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 56), snapshots: { s1: pattern(SIZE, 57) } }, async (s) => {
    const out = path.join(s.dir, 'out.bin');
    const stdout = await nbdsh(
      `
h.set_handshake_flags(0)
h.connect_uri(${JSON.stringify(s.uri('snapshot/s1'))})
print(h.get_protocol(), h.get_size(), h.is_read_only())
open(${JSON.stringify(out)}, "wb").write(h.pread(65536, 1000))
`,
    );
    assert.equal(stdout.trim(), `newstyle ${SIZE} True`);
    assertSameBytes(fs.readFileSync(out), pattern(65536, 57, 1000), 'read through EXPORT_NAME');
  });
});

test('nbdsh: LIST returns every export name', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 58), snapshots: { nightly: pattern(SIZE, 59) } }, async (s) => {
    const out = await nbdsh(
      `
h.set_opt_mode(True)
h.connect_uri(${JSON.stringify(s.uri())})
names = []
h.opt_list(lambda name, desc: names.append(name))
h.opt_abort()
print(repr(names))
`,
    );
    assert.equal(out.trim(), `['', 'live', 'snapshot/nightly']`);
  });
});

test('nbdsh: an unknown export is refused and the server keeps serving', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 60) }, async (s) => {
    const out = await nbdsh(
      `
try:
    h.connect_uri(${JSON.stringify(s.uri('snapshot/nope'))})
    print("connected")
except nbd.Error as e:
    print("refused")
h2 = nbd.NBD()
h2.connect_uri(${JSON.stringify(s.uri('live'))})
print(h2.get_size())
`,
    );
    assert.equal(out.trim(), `refused\n${SIZE}`);
    await s.waitForLog((l) => /unknown export "snapshot\/nope"/.test(l) && /export "live"/.test(l));
  });
});

test('nbdsh: BLOCK_STATUS gives consecutive extents, and exactly one with REQ_ONE', { skip }, async () => {
  const live = patternWithZeroes(SIZE, 61, [[MiB, MiB]]);
  await withServer({ live }, async (s) => {
    const out = await nbdsh(
      `
import json
def collect(into):
    def cb(meta, offset, entries, err):
        into.append((meta, offset, list(entries)))
        return 0
    return cb
full = []
h.block_status(3 * 1024 * 1024, 512 * 1024, collect(full))
one = []
h.block_status(3 * 1024 * 1024, 512 * 1024, collect(one), nbd.CMD_FLAG_REQ_ONE)
print(json.dumps({"full": full, "one": one}))
`,
      ['--base-allocation', '-u', s.uri()],
    );
    const r = JSON.parse(out) as { full: Array<[string, number, number[]]>; one: Array<[string, number, number[]]> };
    assert.equal(r.full.length, 1);
    assert.equal(r.full[0][0], 'base:allocation');
    assert.equal(r.full[0][1], 512 * 1024);
    // [512K, 1M) data, [1M, 2M) zero, [2M, 3.5M) data: lengths and flags alternate in the array.
    assert.deepEqual(r.full[0][2], [512 * 1024, 0, MiB, 2, 1536 * 1024, 0]);
    assert.deepEqual(r.one[0][2], [512 * 1024, 0]);
  });
});

test('nbdsh: FAST_ZERO is refused with ENOTSUP without touching data; a plain zero works', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 62) }, async (s) => {
    const out = await nbdsh(
      `
try:
    h.zero(65536, 65536, nbd.CMD_FLAG_FAST_ZERO)
    print("no error")
except nbd.Error as e:
    print(e.errno)
h.zero(4096, 200000, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
`,
      ['-u', s.uri()],
    );
    assert.equal(out.trim(), 'ENOTSUP');
    const want = Buffer.from(s.liveData);
    want.fill(0, 200000, 204096);
    assertSameBytes(s.readLive(), want, 'live file');
  });
});

test('nbdsh: 64 writes and 64 reads in flight at once all complete with the right data', { skip }, async () => {
  await withServer({ live: pattern(SIZE, 63) }, async (s) => {
    const input = path.join(s.dir, 'in.bin');
    const out = path.join(s.dir, 'out.bin');
    const N = 64;
    const chunk = 65536 - 100; // unaligned, so neighbours share device blocks
    const data = pattern(N * chunk, 64);
    fs.writeFileSync(input, data);
    await nbdsh(
      `
N, C = ${N}, ${chunk}
data = open(${JSON.stringify(input)}, "rb").read()
def settle(cookies):
    assert h.aio_in_flight() == N
    while h.aio_in_flight() > 0:
        h.poll(-1)
    # Each call retires its command and raises if the command failed.
    assert all(h.aio_command_completed(c) for c in cookies)
settle([h.aio_pwrite(data[i*C:(i+1)*C], 7 + i*C) for i in range(N)])
h.flush()
bufs = [nbd.Buffer(C) for i in range(N)]
settle([h.aio_pread(bufs[i], 7 + i*C) for i in range(N)])
open(${JSON.stringify(out)}, "wb").write(b"".join(b.to_bytearray() for b in bufs))
`,
      ['-u', s.uri()],
    );
    assertSameBytes(fs.readFileSync(out), data, 'data read back');
    const want = Buffer.from(s.liveData);
    data.copy(want, 7);
    assertSameBytes(s.readLive(), want, 'live file');
  });
});
