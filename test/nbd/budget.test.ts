// The byte accounting and reply backpressure of the NBD server, unit by unit:
// the shared budget, a connection's ledger, and the reply writer over a fake
// socket whose client takes bytes only when the test says so.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionLedger, SharedBudget } from '../../src/nbd/budget.js';
import { HANDOFF_BYTES, ReplyWriter, SLICE_BYTES, type ReplySocket } from '../../src/nbd/reply-writer.js';
import { DEFAULT_LIMITS, resolveLimits } from '../../src/nbd/limits.js';

const MiB = 1024 * 1024;

/** A socket whose kernel takes nothing until take() is called; corked writes count as queued, as in Node. */
class FakeSocket implements ReplySocket {
  destroyed = false;
  writableEnded = false;
  corks = 0;
  /** Every chunk handed over, in order, with its callback. */
  readonly written: Array<{ chunk: Buffer; cb: (err?: Error | null) => void; done: boolean }> = [];
  get writableLength(): number {
    return this.written.filter((w) => !w.done).reduce((a, w) => a + w.chunk.length, 0);
  }
  write(chunk: Buffer, cb: (err?: Error | null) => void): boolean {
    if (this.destroyed) throw new Error('write after destroy');
    this.written.push({ chunk, cb, done: false });
    return this.writableLength < 16384;
  }
  cork(): void {
    this.corks++;
  }
  uncork(): void {
    this.corks--;
  }
  /** The client takes the oldest n chunks. */
  take(n = Infinity): number {
    let bytes = 0;
    for (const w of this.written) {
      if (n <= 0) break;
      if (w.done) continue;
      w.done = true;
      bytes += w.chunk.length;
      n--;
      w.cb(null);
    }
    return bytes;
  }
  destroy(): void {
    this.destroyed = true;
    for (const w of this.written) {
      if (w.done) continue;
      w.done = true;
      w.cb(new Error('ERR_STREAM_DESTROYED'));
    }
  }
  /** All bytes handed over so far, in order. */
  stream(): Buffer {
    return Buffer.concat(this.written.map((w) => w.chunk));
  }
}

const tick = () => new Promise((r) => process.nextTick(r));

test('the shared budget hands out bytes in arrival order, and lets one request of any size through when nothing is held', async () => {
  const b = new SharedBudget(10 * MiB);
  assert.equal(b.tryTake(64 * MiB), true, 'nothing held: an oversized request runs alone');
  assert.equal(b.tryTake(1), false);
  const big = b.wait(8 * MiB);
  const small = b.wait(1 * MiB);
  assert.equal(b.tryTake(1), false, 'a newcomer does not overtake waiters');
  const order: string[] = [];
  void big.taken.then((ok) => order.push(`big ${ok}`));
  void small.taken.then((ok) => order.push(`small ${ok}`));
  b.release(64 * MiB);
  await tick();
  assert.deepEqual(order, ['big true', 'small true']);
  assert.equal(b.used, 9 * MiB);
  // Cancelling a waiter gives it nothing and lets the next one in.
  const huge = b.wait(5 * MiB);
  const tiny = b.wait(1);
  assert.equal(b.waiting, 2);
  huge.cancel();
  assert.equal(await huge.taken, false);
  assert.equal(await tiny.taken, true);
  assert.equal(b.used, 9 * MiB + 1);
  b.force(4 * MiB);
  assert.equal(b.used, 13 * MiB + 1, 'forced bytes are counted even over the limit');
  b.release(13 * MiB + 1);
  assert.equal(b.used, 0);
  assert.throws(() => b.release(1), /negative/);
});

test('a connection ledger caps its request bytes but always lets one request run alone', () => {
  const shared = new SharedBudget(100 * MiB);
  const l = new ConnectionLedger(shared, 8 * MiB);
  assert.equal(l.fits(32 * MiB), true, 'nothing held: one request of any size');
  assert.ok(shared.tryTake(6 * MiB));
  l.reserved(6 * MiB);
  assert.equal(l.fits(2 * MiB), true);
  assert.equal(l.fits(2 * MiB + 1), false);
  // A READ answered: its reservation becomes reply bytes until the client takes them.
  l.replyQueued(6 * MiB + 16);
  l.done(6 * MiB);
  assert.equal(l.requestBytes, 0);
  assert.equal(l.replyBytes, 6 * MiB + 16);
  assert.equal(shared.used, 6 * MiB + 16);
  l.replyTaken(16);
  // The socket goes: queued replies are dropped, a request still running keeps its bytes until done.
  assert.ok(shared.tryTake(MiB));
  l.reserved(MiB);
  l.close();
  assert.equal(shared.used, MiB);
  l.replyTaken(6 * MiB);
  l.replyQueued(5);
  assert.equal(shared.used, MiB, 'after close, reply accounting changes nothing');
  l.done(MiB);
  assert.equal(shared.used, 0);
});

test('the reply writer hands the socket at most about a MiB, counts the rest as waiting, and never copies read data', async () => {
  const shared = new SharedBudget(100 * MiB);
  const ledger = new ConnectionLedger(shared, 8 * MiB);
  const s = new FakeSocket();
  let now = 1000;
  let wakes = 0;
  const w = new ReplyWriter(s, ledger, () => wakes++, () => now);
  const data = Buffer.alloc(3 * MiB, 7);
  const header = Buffer.from('header');
  w.send([header, data]);
  w.send([Buffer.from('second reply')]);
  assert.equal(w.backlog, 3 * MiB + 6 + 12);
  assert.equal(shared.used, w.backlog, 'reply bytes are counted in the shared budget');
  assert.ok(s.writableLength <= HANDOFF_BYTES + SLICE_BYTES, `handed over ${s.writableLength}`);
  assert.ok(s.written.every((x) => x.chunk.length <= SLICE_BYTES), 'large pieces go in slices');
  assert.equal(s.written[1].chunk.buffer, data.buffer, 'a slice is a view of the read data, not a copy');
  assert.equal(s.corks, 1, 'writes of one tick are corked together');
  await tick();
  assert.equal(s.corks, 0);

  // No bytes taken: the stall clock runs from when the backlog began.
  now += 5000;
  assert.equal(w.stalledFor(), 5000);
  const taken = s.take(2);
  assert.equal(w.backlog, 3 * MiB + 18 - taken);
  assert.equal(w.stalledFor(), 0, 'taking bytes is progress');
  assert.ok(wakes > 0, 'the transmission is told the backlog shrank');
  now += 100;
  assert.equal(w.stalledFor(), 100);

  // The client takes everything: the stream is the two replies, whole and in order.
  while (s.take() > 0) await tick();
  assert.equal(w.backlog, 0);
  assert.equal(w.stalledFor(), 0, 'no backlog, no stall');
  assert.equal(shared.used, 0);
  assert.deepEqual(s.stream(), Buffer.concat([header, data, Buffer.from('second reply')]));
});

test('a destroyed socket drops the queued replies and gives their bytes back', async () => {
  const shared = new SharedBudget(100 * MiB);
  const ledger = new ConnectionLedger(shared, 8 * MiB);
  const s = new FakeSocket();
  const w = new ReplyWriter(s, ledger);
  for (let i = 0; i < 8; i++) w.send([Buffer.alloc(MiB)]);
  assert.equal(shared.used, 8 * MiB);
  s.destroy();
  // What the socket held comes back through its callbacks; what never reached it on the next send or close.
  w.send([Buffer.alloc(10)]);
  ledger.close();
  await tick();
  assert.equal(shared.used, 0);
  assert.equal(w.backlog, 0);
});

test('flush() hands everything queued to the socket, whatever its length', async () => {
  const shared = new SharedBudget(100 * MiB);
  const ledger = new ConnectionLedger(shared, 8 * MiB);
  const s = new FakeSocket();
  const w = new ReplyWriter(s, ledger);
  for (let i = 0; i < 6; i++) w.send([Buffer.alloc(MiB, i)]);
  assert.ok(s.writableLength < 6 * MiB);
  w.flush();
  assert.equal(s.writableLength, 6 * MiB);
  assert.equal(s.corks, 0, 'flush uncorks at once: the socket is ended right after');
});

test('limits: defaults, overrides, and refusal of nonsense', () => {
  const l = resolveLimits({ stallTimeoutMs: 500 });
  assert.equal(l.stallTimeoutMs, 500);
  assert.equal(l.totalBytes, DEFAULT_LIMITS.totalBytes);
  assert.throws(() => resolveLimits({ maxConnections: 0 }), /maxConnections must be a positive integer, got 0/);
  assert.throws(() => resolveLimits({ totalBytes: 1.5 }), /totalBytes/);
  const saved = process.env.VSNAP_NBD_STALL_MS;
  try {
    process.env.VSNAP_NBD_STALL_MS = '1234';
    assert.equal(resolveLimits().stallTimeoutMs, 1234);
    assert.equal(resolveLimits({ stallTimeoutMs: 99 }).stallTimeoutMs, 99, 'an explicit option beats the environment');
    process.env.VSNAP_NBD_STALL_MS = 'soon';
    assert.throws(() => resolveLimits(), /stallTimeoutMs .*VSNAP_NBD_STALL_MS/);
  } finally {
    if (saved === undefined) delete process.env.VSNAP_NBD_STALL_MS;
    else process.env.VSNAP_NBD_STALL_MS = saved;
  }
});
