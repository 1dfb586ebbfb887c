// A minimal NBD client speaking raw bytes, for tests that must send what no
// real client would: bad magic, truncated packets, lies about lengths.

import net from 'node:net';
import { ByteReader } from '../../src/nbd/byte-reader.js';

export const OPT = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED_REPLY: 8, LIST_META: 9, SET_META: 10 };
export const REP = { ACK: 1, SERVER: 2, INFO: 3, META_CONTEXT: 4, ERR_UNSUP: 0x80000001, ERR_POLICY: 0x80000002, ERR_INVALID: 0x80000003, ERR_UNKNOWN: 0x80000006, ERR_TOO_BIG: 0x80000009 };
export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7 };
export const FLAG = { FUA: 1, NO_HOLE: 2, DF: 4, REQ_ONE: 8, FAST_ZERO: 16 };
export const ERR = { EPERM: 1, EIO: 5, EINVAL: 22, ENOSPC: 28, EOVERFLOW: 75, ENOTSUP: 95 };
const IHAVEOPT = 0x49484156454f5054n;

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

export interface Chunk {
  flags: number;
  type: number;
  cookie: bigint;
  payload: Buffer;
}

export class RawClient {
  readonly reader: ByteReader;
  readonly closed: Promise<void>;
  private isClosed = false;

  private constructor(readonly socket: net.Socket) {
    this.reader = new ByteReader(socket);
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        resolve();
      }),
    );
  }

  static connect(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ path });
      s.once('connect', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  static connectTcp(host: string, port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port });
      s.once('connect', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  get hasClosed(): boolean {
    return this.isClosed;
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  read(n: number): Promise<Buffer> {
    return this.reader.read(n);
  }

  /** True if the server closed the connection within ms, reading and discarding anything it sent. */
  async closesWithin(ms: number): Promise<boolean> {
    const timer = new Promise<boolean>((r) => setTimeout(() => r(false), ms));
    const drained = (async () => {
      try {
        for (;;) await this.reader.read(1);
      } catch {
        return true;
      }
    })();
    return Promise.race([drained, timer]);
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Reads the greeting; returns the handshake flags. */
  async greeting(): Promise<number> {
    const g = await this.read(18);
    if (g.toString('latin1', 0, 8) !== 'NBDMAGIC' || g.readBigUInt64BE(8) !== IHAVEOPT) throw new Error('bad greeting');
    return g.readUInt16BE(16);
  }

  clientFlags(flags: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(flags);
    this.write(b);
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0), lengthOverride?: number): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(IHAVEOPT, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(lengthOverride ?? data.length, 12);
    this.write(Buffer.concat([h, data]));
  }

  async optionReply(): Promise<OptionReply> {
    const h = await this.read(20);
    if (h.readBigUInt64BE(0) !== 0x0003e889045565a9n) throw new Error('bad option reply magic');
    const len = h.readUInt32BE(16);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await this.read(len) };
  }

  /** Fixed newstyle with NO_ZEROES, optional structured replies and base:allocation, then GO. Returns size and flags. */
  async handshake(name = '', opts: { structured?: boolean; meta?: boolean } = {}): Promise<{ size: bigint; flags: number }> {
    await this.greeting();
    this.clientFlags(3);
    if (opts.structured) {
      this.sendOption(OPT.STRUCTURED_REPLY);
      expectType(await this.optionReply(), REP.ACK);
    }
    if (opts.meta) {
      this.sendOption(OPT.SET_META, metaData(name, ['base:allocation']));
      expectType(await this.optionReply(), REP.META_CONTEXT);
      expectType(await this.optionReply(), REP.ACK);
    }
    this.sendOption(OPT.GO, infoData(name, []));
    let size = -1n;
    let flags = -1;
    for (;;) {
      const r = await this.optionReply();
      if (r.type === REP.ACK) break;
      expectType(r, REP.INFO);
      if (r.data.readUInt16BE(0) === 0) {
        size = r.data.readBigUInt64BE(2);
        flags = r.data.readUInt16BE(10);
      }
    }
    return { size, flags };
  }

  request(type: number, r: { flags?: number; cookie?: bigint; offset?: bigint | number; length?: number; payload?: Buffer } = {}): void {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(0x25609513, 0);
    h.writeUInt16BE(r.flags ?? 0, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(r.cookie ?? 1n, 8);
    h.writeBigUInt64BE(BigInt(r.offset ?? 0), 16);
    h.writeUInt32BE(r.length ?? r.payload?.length ?? 0, 24);
    this.write(r.payload ? Buffer.concat([h, r.payload]) : h);
  }

  /** A simple reply's header; a successful READ's data follows and is the caller's to read. */
  async simpleReply(): Promise<{ error: number; cookie: bigint }> {
    const h = await this.read(16);
    if (h.readUInt32BE(0) !== 0x67446698) throw new Error(`expected a simple reply, magic 0x${h.readUInt32BE(0).toString(16)}`);
    return { error: h.readUInt32BE(4), cookie: h.readBigUInt64BE(8) };
  }

  async chunk(): Promise<Chunk> {
    const h = await this.read(20);
    if (h.readUInt32BE(0) !== 0x668e33ef) throw new Error(`expected a structured chunk, magic 0x${h.readUInt32BE(0).toString(16)}`);
    return { flags: h.readUInt16BE(4), type: h.readUInt16BE(6), cookie: h.readBigUInt64BE(8), payload: await this.read(h.readUInt32BE(16)) };
  }
}

export function expectType(r: OptionReply, type: number): OptionReply {
  if (r.type !== type) throw new Error(`option ${r.option}: expected reply type 0x${type.toString(16)}, got 0x${r.type.toString(16)} ${r.data.toString()}`);
  return r;
}

export function str32(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const l = Buffer.alloc(4);
  l.writeUInt32BE(b.length);
  return Buffer.concat([l, b]);
}

export function infoData(name: string, infos: number[]): Buffer {
  const n = Buffer.alloc(2 + 2 * infos.length);
  n.writeUInt16BE(infos.length, 0);
  infos.forEach((t, i) => n.writeUInt16BE(t, 2 + 2 * i));
  return Buffer.concat([str32(name), n]);
}

export function metaData(name: string, queries: string[]): Buffer {
  const n = Buffer.alloc(4);
  n.writeUInt32BE(queries.length);
  return Buffer.concat([str32(name), n, ...queries.map(str32)]);
}
