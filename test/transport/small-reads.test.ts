// Small socket reads are staged: a client that trickles its bytes (one per
// read) must not make the server keep a buffer object per read (adversary
// D1: ~300 bytes of memory per payload byte, so the 256 MiB payload budget
// allowed tens of GiB). ChunkQueue copies reads under 4 KiB into a shared
// 64 KiB staging buffer; these tests check the bytes against a model (views
// handed out earlier must never change when later bytes are staged), the
// number of buffers held, and the real server's memory under a trickle.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { ChunkQueue } from '../../src/transport/chunk-queue.js';
import { tmpdir } from '../helpers/cli.js';
import { makeFixture, liveFromFiles } from '../helpers/volume-fixture.js';
import { CMD, RawClient } from '../nbd/raw-client.js';
import { startServe } from '../serve/harness.js';

function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

test('ChunkQueue with small and large reads mixed gives back exactly the bytes pushed, and earlier views never change', () => {
  for (let seed = 1; seed <= 30; seed++) {
    const rnd = prng(seed);
    const q = new ChunkQueue({ stageSmallReads: true });
    const model: number[] = [];
    let next = 0;
    const handed: { view: Buffer; copy: Buffer }[] = [];
    for (let step = 0; step < 3000; step++) {
      const r = rnd();
      if (r < 0.55) {
        const size = rnd() < 0.8 ? 1 + Math.floor(rnd() * 300) : 4000 + Math.floor(rnd() * 9000);
        const b = Buffer.alloc(size);
        for (let i = 0; i < size; i++) model.push((b[i] = (next++ * 7 + seed) & 0xff));
        q.push(b);
      } else if (q.length > 0) {
        const n = 1 + Math.floor(rnd() * Math.min(q.length, 20000));
        const want = Buffer.from(model.splice(0, n));
        const kind = rnd();
        if (kind < 0.4) {
          const got = q.take(n);
          assert.deepEqual(got, want, `seed ${seed} step ${step}: take(${n})`);
          handed.push({ view: got, copy: Buffer.from(got) });
        } else if (kind < 0.8) {
          const parts = q.takeParts(n);
          assert.deepEqual(Buffer.concat(parts), want, `seed ${seed} step ${step}: takeParts(${n})`);
          for (const p of parts) handed.push({ view: p, copy: Buffer.from(p) });
        } else if (kind < 0.9) {
          q.gather(Math.min(n, 32));
          model.unshift(...want); // nothing consumed: put the bytes back
          assert.ok(q.contiguous >= Math.min(n, 32));
        } else {
          q.drop(n);
        }
      }
      assert.equal(q.length, model.length, `seed ${seed} step ${step}: length`);
    }
    for (const h of handed) assert.deepEqual(h.view, h.copy, `seed ${seed}: a view handed out earlier changed`);
  }
});

test('a million one-byte reads are held in a few buffers, not a million', () => {
  const q = new ChunkQueue({ stageSmallReads: true });
  const n = 1_000_000;
  for (let i = 0; i < n; i++) q.push(Buffer.of(i & 0xff));
  const parts = q.takeParts(n);
  assert.ok(parts.length <= Math.ceil(n / 65536) + 1, `${parts.length} buffers held for ${n} one-byte reads`);
  const all = Buffer.concat(parts);
  for (let i = 0; i < n; i += 9973) assert.equal(all[i], i & 0xff);
});

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

test('vsnap serve under a client trickling a WRITE payload one byte per send stays near the payload in memory', { timeout: 180_000 }, async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: 65536, scale: 16 });
  const srv = await startServe(fx.manifest, []);
  try {
    const pid = srv.proc.pid!;
    const c = await RawClient.connect(srv.socket);
    await c.handshake();
    const LEN = 512 * 1024;
    const payload = Buffer.alloc(LEN);
    for (let i = 0; i < LEN; i++) payload[i] = (i * 13 + 5) & 0xff;
    c.socket.setNoDelay?.(true);
    c.request(CMD.WRITE, { cookie: 1n, offset: 65536, length: LEN });
    const before = rssMiB(pid);
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 20);
    // One byte per write call, each waiting for the last to reach the kernel:
    // a server that keeps up reads them one at a time.
    for (let i = 0; i < LEN; i++) {
      await new Promise<void>((resolve, reject) => c.socket.write(payload.subarray(i, i + 1), (err) => (err ? reject(err) : resolve())));
    }
    const reply = await c.simpleReply();
    clearInterval(sampler);
    peak = Math.max(peak, rssMiB(pid));
    assert.equal(reply.error, 0);
    // Unstaged, each one-byte read held ~300 bytes: ~150 MiB for this payload.
    assert.ok(peak - before < 40, `server RSS grew ${(peak - before).toFixed(1)} MiB for a ${LEN >> 10} KiB trickled payload`);
    c.socket.destroy();
    const live = liveFromFiles(fx);
    assert.deepEqual(live.subarray(65536, 65536 + LEN), payload, 'the trickled payload is in the backing files');
  } finally {
    srv.proc.kill('SIGKILL');
    t.cleanup();
  }
});
