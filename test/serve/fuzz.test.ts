// Hostile NBD input against `vsnap serve`: fast-check generates sessions of
// valid requests mixed with malformed ones. Whatever arrives, the server
// answers with an error or drops that one connection, never crashes, and no
// byte of the volume changes except by a write it acknowledged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import { tmpdir } from '../helpers/cli.js';
import { makeFixture, liveFromFiles } from '../helpers/volume-fixture.js';
import { startServe } from './harness.js';

const REQ_MAGIC = 0x25609513;
const REPLY_MAGIC = 0x67446698;

/** A minimal blocking client: EXPORT_NAME handshake, simple replies only. */
class Conn {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;
  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (const w of this.waiters.splice(0)) w();
    });
    const end = () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    };
    sock.on('close', end);
    sock.on('error', end);
  }

  static async open(path: string): Promise<Conn> {
    const sock = net.createConnection(path);
    await new Promise<void>((r, j) => sock.once('connect', r).once('error', j));
    const c = new Conn(sock);
    const greet = await c.read(18);
    assert.equal(greet.subarray(0, 8).toString(), 'NBDMAGIC');
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(3); // FIXED_NEWSTYLE | NO_ZEROES
    const opt = Buffer.alloc(16);
    opt.write('IHAVEOPT', 0);
    opt.writeUInt32BE(1, 8); // EXPORT_NAME, empty name: the live volume
    opt.writeUInt32BE(0, 12);
    sock.write(Buffer.concat([flags, opt]));
    await c.read(10);
    return c;
  }

  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.closed) throw new Error('closed');
      if (Date.now() > deadline) throw new Error('timeout');
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  request(type: number, offset: bigint, length: number, payload?: Buffer, flags = 0, magic = REQ_MAGIC): void {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(magic, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(0x1234n, 8);
    h.writeBigUInt64BE(offset, 16);
    h.writeUInt32BE(length >>> 0, 24);
    this.sock.write(payload ? Buffer.concat([h, payload]) : h);
  }

  async reply(dataLen = 0): Promise<{ error: number; data: Buffer }> {
    const r = await this.read(16);
    assert.equal(r.readUInt32BE(0), REPLY_MAGIC);
    const error = r.readUInt32BE(4);
    const data = error === 0 && dataLen ? await this.read(dataLen) : Buffer.alloc(0);
    return { error, data };
  }

  close(): void {
    this.sock.destroy();
  }
}

type Op =
  | { k: 'write'; off: number; len: number; byte: number }
  | { k: 'read'; off: number; len: number }
  | { k: 'pastEnd'; write: boolean; len: number }
  | { k: 'badCmd'; type: number }
  | { k: 'badFlags'; flags: number }
  | { k: 'garbage'; bytes: Uint8Array }
  | { k: 'badMagic' }
  | { k: 'truncated'; n: number };

test('random and malformed NBD requests never crash vsnap serve or change unacknowledged bytes', async () => {
  const t = tmpdir();
  const fx = makeFixture(t.dir, { blockSize: 4096, scale: 4 });
  const srv = await startServe(fx.manifest);
  const size = fx.size;
  const model = liveFromFiles(fx);
  let episodes = 0;
  try {
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ k: fc.constant('write' as const), off: fc.nat(size - 1), len: fc.integer({ min: 1, max: 20000 }), byte: fc.integer({ min: 0, max: 255 }) }) },
      { weight: 4, arbitrary: fc.record({ k: fc.constant('read' as const), off: fc.nat(size - 1), len: fc.integer({ min: 0, max: 20000 }) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('pastEnd' as const), write: fc.boolean(), len: fc.integer({ min: 1, max: 9000 }) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('badCmd' as const), type: fc.integer({ min: 8, max: 65535 }) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('badFlags' as const), flags: fc.integer({ min: 32, max: 65535 }) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('garbage' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 200 }) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('badMagic' as const) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('truncated' as const), n: fc.integer({ min: 1, max: 27 }) }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
        episodes++;
        let c = await Conn.open(srv.socket);
        try {
          for (const op of ops) {
            if (c.closed) c = await Conn.open(srv.socket);
            switch (op.k) {
              case 'write': {
                const len = Math.min(op.len, size - op.off);
                const data = Buffer.alloc(len, op.byte);
                c.request(1, BigInt(op.off), len, data);
                const r = await c.reply();
                assert.equal(r.error, 0, 'a valid write succeeds');
                data.copy(model, op.off);
                break;
              }
              case 'read': {
                const len = Math.min(op.len, size - op.off);
                c.request(0, BigInt(op.off), len);
                const r = await c.reply(len);
                assert.equal(r.error, 0);
                assert.ok(r.data.equals(model.subarray(op.off, op.off + len)), 'reads return the acknowledged data');
                break;
              }
              case 'pastEnd': {
                if (op.write) c.request(1, BigInt(size - 10), op.len + 10, Buffer.alloc(op.len + 10, 0xee));
                else c.request(0, BigInt(size - 10), op.len + 10);
                const r = await c.reply();
                assert.equal(r.error, op.write ? 28 : 22, 'ENOSPC for writes, EINVAL for reads past the end');
                break;
              }
              case 'badCmd': {
                c.request(op.type, 0n, 512);
                assert.equal((await c.reply()).error, 22);
                break;
              }
              case 'badFlags': {
                c.request(0, 0n, 512, undefined, op.flags);
                assert.equal((await c.reply()).error, 22);
                break;
              }
              case 'garbage': {
                const g = Buffer.from(op.bytes);
                if (g.length >= 4 && g.readUInt32BE(0) === REQ_MAGIC) g[0] ^= 0xff;
                c.sock.write(g);
                // The server may wait for more bytes or drop us; either way this connection is done.
                c.close();
                c = await Conn.open(srv.socket);
                break;
              }
              case 'badMagic': {
                c.request(1, 0n, 512, Buffer.alloc(512, 0xdd), 0, 0xdeadbeef);
                c.close();
                c = await Conn.open(srv.socket);
                break;
              }
              case 'truncated': {
                const h = Buffer.alloc(28);
                h.writeUInt32BE(REQ_MAGIC, 0);
                h.writeUInt16BE(1, 6);
                h.writeUInt32BE(4096, 24);
                c.sock.write(h.subarray(0, op.n));
                c.close();
                c = await Conn.open(srv.socket);
                break;
              }
            }
          }
          // Flush, then the backing files must equal the model exactly.
          c.request(3, 0n, 0);
          assert.equal((await c.reply()).error, 0);
        } finally {
          c.close();
        }
        assert.ok(liveFromFiles(fx).equals(model), 'backing files equal the acknowledged writes');
      }),
      { numRuns: Number(process.env.VSNAP_FUZZ_RUNS ?? 60), endOnFailure: true },
    );
    assert.equal(srv.proc.exitCode, null, 'the server is still running');
  } finally {
    await srv.stop();
    t.cleanup();
  }
  assert.ok(episodes >= 10);
});
