// Fixed-newstyle negotiation: from the greeting to the moment a client picks
// an export (GO or EXPORT_NAME), or leaves. Options are answered one at a time
// in the order received, as the protocol requires.

import type { Socket } from 'node:net';
import type { BlockDevice, ExportProvider } from '../block.js';
import type { ByteReader } from './byte-reader.js';
import {
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  INFO,
  MAX_OPTION_LENGTH,
  MAX_STRING,
  NBDMAGIC,
  OPT,
  REP,
} from './constants.js';
import { blockSizes, transmissionFlags } from './export-info.js';
import { lengthPrefixed, metaContextReply, optionError, optionReply } from './replies.js';
import { listContexts, rebindContexts, selectContexts, type SelectedContext } from './meta-contexts.js';

export interface Negotiated {
  name: string;
  device: BlockDevice;
  structuredReplies: boolean;
  /** Metadata contexts selected for this export (base:allocation, dirty bitmaps), in the client's order. */
  contexts: SelectedContext[];
  flags: number;
}

/** Why negotiation ended without an export; 'abort' is the client's polite goodbye. */
export type NegotiationEnd = { ended: 'abort' | 'dropped'; reason: string };

export interface HandshakeOptions {
  maxOptions: number;
  log: (msg: string) => void;
}

/** A string field that is not valid UTF-8 or is too long. */
class BadOption extends Error {}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Option replies not yet taken by the client before the next option is read.
 * A client that sends options without reading the answers (a LIST of
 * thousands of snapshots each) otherwise makes the server queue them all.
 */
const MAX_UNSENT_OPTION_REPLIES = 64 * 1024;

/** Resolves once the socket has sent what it queued, or has closed. */
function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

/** Cursor over an option's data that throws BadOption on any overrun. */
class Fields {
  private at = 0;
  constructor(private readonly data: Buffer) {}
  u16(): number {
    this.need(2);
    const v = this.data.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.data.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  string(length: number): string {
    if (length > MAX_STRING) throw new BadOption(`string of ${length} bytes exceeds ${MAX_STRING}`);
    this.need(length);
    const s = decodeName(this.data.subarray(this.at, this.at + length));
    this.at += length;
    return s;
  }
  end(): void {
    if (this.at !== this.data.length) throw new BadOption(`${this.data.length - this.at} unexpected trailing bytes`);
  }
  private need(n: number): void {
    if (this.at + n > this.data.length) throw new BadOption('option data too short');
  }
}

function decodeName(b: Buffer): string {
  if (b.length > MAX_STRING) throw new BadOption(`string of ${b.length} bytes exceeds ${MAX_STRING}`);
  try {
    return utf8.decode(b);
  } catch {
    throw new BadOption('string is not valid UTF-8');
  }
}

function greeting(): Buffer {
  const b = Buffer.allocUnsafe(18);
  b.writeBigUInt64BE(NBDMAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
  return b;
}

/** Meta-context selection as the last SET_META_CONTEXT left it. */
interface Selection {
  exportName: string;
  selected: { id: number; name: string }[];
}

export async function negotiate(
  socket: Socket,
  reader: ByteReader,
  provider: ExportProvider,
  opts: HandshakeOptions,
): Promise<Negotiated | NegotiationEnd> {
  const send = (b: Buffer) => {
    if (!socket.destroyed) socket.write(b);
  };
  send(greeting());
  const clientFlags = (await reader.read(4)).readUInt32BE(0);
  if (clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) {
    return { ended: 'dropped', reason: `client flags 0x${clientFlags.toString(16)} include bits the server did not offer` };
  }
  const fixed = (clientFlags & FLAG_C_FIXED_NEWSTYLE) !== 0;
  const noZeroes = (clientFlags & FLAG_C_NO_ZEROES) !== 0;

  let structuredReplies = false;
  let selection: Selection | undefined;

  for (let count = 1; ; count++) {
    // Above the socket's high-water mark, so 'drain' is sure to come once the client reads.
    if (socket.writableLength > MAX_UNSENT_OPTION_REPLIES && !socket.destroyed) await drained(socket);
    const header = await reader.read(16);
    if (header.readBigUInt64BE(0) !== IHAVEOPT) return { ended: 'dropped', reason: 'bad option magic' };
    const option = header.readUInt32BE(8);
    const length = header.readUInt32BE(12);
    if (count > opts.maxOptions) {
      if (fixed && option !== OPT.EXPORT_NAME) send(optionError(option, REP.ERR_POLICY, 'too many options'));
      return { ended: 'dropped', reason: `more than ${opts.maxOptions} options` };
    }
    if (length > MAX_OPTION_LENGTH) {
      if (fixed && option !== OPT.EXPORT_NAME) send(optionError(option, REP.ERR_TOO_BIG, 'option data too long'));
      return { ended: 'dropped', reason: `option ${option} carries ${length} bytes` };
    }
    const data = await reader.read(length);

    if (option === OPT.EXPORT_NAME) {
      let name: string;
      try {
        name = decodeName(data);
      } catch (err) {
        return { ended: 'dropped', reason: `EXPORT_NAME: ${(err as Error).message}` };
      }
      const device = provider.open(name);
      // EXPORT_NAME has no way to report an error: closing is the only answer.
      if (!device) return { ended: 'dropped', reason: `EXPORT_NAME: unknown export ${JSON.stringify(name)}` };
      const unusable = await notReady(device);
      if (unusable) return { ended: 'dropped', reason: `EXPORT_NAME: export ${JSON.stringify(name)} is not available: ${unusable}` };
      const flags = transmissionFlags(device, structuredReplies);
      const reply = Buffer.alloc(10 + (noZeroes ? 0 : 124));
      reply.writeBigUInt64BE(BigInt(device.size), 0);
      reply.writeUInt16BE(flags, 8);
      send(reply);
      return { name, device, structuredReplies, contexts: contextsFor(selection, name, device, structuredReplies), flags };
    }

    if (!fixed) {
      // Plain newstyle knows only EXPORT_NAME (nbd-notes.md).
      send(optionError(option, REP.ERR_INVALID, 'only EXPORT_NAME is valid without fixed newstyle'));
      continue;
    }

    try {
      switch (option) {
        case OPT.ABORT:
          send(optionReply(option, REP.ACK));
          return { ended: 'abort', reason: 'client sent ABORT' };

        case OPT.LIST: {
          if (length !== 0) {
            send(optionError(option, REP.ERR_INVALID, 'LIST takes no data'));
            break;
          }
          const parts = provider.list().map((n) => optionReply(option, REP.SERVER, lengthPrefixed(n)));
          parts.push(optionReply(option, REP.ACK));
          send(Buffer.concat(parts));
          break;
        }

        case OPT.STARTTLS:
          send(optionError(option, REP.ERR_UNSUP, 'TLS is not supported by this server'));
          break;

        case OPT.STRUCTURED_REPLY:
          if (length !== 0) {
            send(optionError(option, REP.ERR_INVALID, 'STRUCTURED_REPLY takes no data'));
            break;
          }
          structuredReplies = true;
          send(optionReply(option, REP.ACK));
          break;

        case OPT.INFO:
        case OPT.GO: {
          const f = new Fields(data);
          const name = f.string(f.u32());
          const n = f.u16();
          const requests: number[] = [];
          for (let i = 0; i < n; i++) requests.push(f.u16());
          f.end();
          const device = provider.open(name);
          if (!device) {
            opts.log(`${option === OPT.GO ? 'GO' : 'INFO'}: unknown export ${JSON.stringify(name)}`);
            send(optionError(option, REP.ERR_UNKNOWN, `unknown export ${JSON.stringify(name)}`));
            break;
          }
          const unusable = await notReady(device);
          if (unusable) {
            opts.log(`${option === OPT.GO ? 'GO' : 'INFO'}: export ${JSON.stringify(name)} is not available: ${unusable}`);
            send(optionError(option, REP.ERR_UNKNOWN, `export ${JSON.stringify(name)} is not available: ${unusable}`));
            break;
          }
          const flags = transmissionFlags(device, structuredReplies);
          send(Buffer.concat([...infoReplies(option, name, device, flags, requests), optionReply(option, REP.ACK)]));
          if (option === OPT.GO) {
            return { name, device, structuredReplies, contexts: contextsFor(selection, name, device, structuredReplies), flags };
          }
          break;
        }

        case OPT.LIST_META_CONTEXT:
        case OPT.SET_META_CONTEXT: {
          if (option === OPT.SET_META_CONTEXT && !structuredReplies) {
            send(optionError(option, REP.ERR_INVALID, 'SET_META_CONTEXT needs structured replies first'));
            break;
          }
          const f = new Fields(data);
          const exportName = f.string(f.u32());
          const nq = f.u32();
          const queries: string[] = [];
          for (let i = 0; i < nq; i++) queries.push(f.string(f.u32()));
          f.end();
          // Which contexts exist depends on the export (its snapshots), so it must be one.
          const device = provider.open(exportName);
          if (!device) {
            if (option === OPT.SET_META_CONTEXT) selection = undefined;
            send(optionError(option, REP.ERR_UNKNOWN, `unknown export ${JSON.stringify(exportName)}`));
            break;
          }
          const parts: Buffer[] = [];
          if (option === OPT.LIST_META_CONTEXT) {
            // LIST hands out no ids: 0, as the spec suggests.
            for (const n of listContexts(device, queries)) parts.push(metaContextReply(option, 0, n));
          } else {
            const chosen = selectContexts(device, queries);
            selection = { exportName, selected: chosen.map(({ id, name }) => ({ id, name })) };
            for (const c of chosen) parts.push(metaContextReply(option, c.id, c.name));
          }
          parts.push(optionReply(option, REP.ACK));
          send(Buffer.concat(parts));
          break;
        }

        case OPT.EXTENDED_HEADERS:
          // Refused so that clients which ask first (libnbd >= 1.18, QEMU >= 8.2) fall back to
          // the compact headers every client speaks; BLOCK_STATUS here never needs 64-bit lengths.
          send(optionError(option, REP.ERR_UNSUP, 'extended headers are not supported; use the compact headers'));
          break;

        default:
          send(optionError(option, REP.ERR_UNSUP, `option ${option} is not supported`));
      }
    } catch (err) {
      if (!(err instanceof BadOption)) throw err;
      send(optionError(option, REP.ERR_INVALID, err.message));
    }
  }
}

/** Why a device cannot be opened now (BlockDevice.ready), or undefined. */
async function notReady(device: BlockDevice): Promise<string | undefined> {
  try {
    await device.ready?.();
    return undefined;
  } catch (err) {
    return (err as Error)?.message ?? String(err);
  }
}

/** The SET selection, if it named the export being opened and structured replies were negotiated. */
function contextsFor(selection: Selection | undefined, name: string, device: BlockDevice, structuredReplies: boolean): SelectedContext[] {
  if (!selection || selection.exportName !== name || !structuredReplies) return [];
  return rebindContexts(device, selection.selected);
}

function infoReplies(option: number, name: string, device: BlockDevice, flags: number, requests: number[]): Buffer[] {
  // INFO_EXPORT goes out whether asked or not: QEMU fails without it.
  const exp = Buffer.allocUnsafe(12);
  exp.writeUInt16BE(INFO.EXPORT, 0);
  exp.writeBigUInt64BE(BigInt(device.size), 2);
  exp.writeUInt16BE(flags, 10);
  const out = [optionReply(option, REP.INFO, exp)];
  if (requests.includes(INFO.NAME)) {
    const n = Buffer.from(name, 'utf8');
    const b = Buffer.allocUnsafe(2 + n.length);
    b.writeUInt16BE(INFO.NAME, 0);
    n.copy(b, 2);
    out.push(optionReply(option, REP.INFO, b));
  }
  if (requests.includes(INFO.BLOCK_SIZE)) {
    const s = blockSizes(device);
    const b = Buffer.allocUnsafe(14);
    b.writeUInt16BE(INFO.BLOCK_SIZE, 0);
    b.writeUInt32BE(s.minimum, 2);
    b.writeUInt32BE(s.preferred, 6);
    b.writeUInt32BE(s.maximum, 10);
    out.push(optionReply(option, REP.INFO, b));
  }
  return out;
}
