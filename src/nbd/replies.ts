// Encoders for everything the server sends. Each function returns one Buffer
// holding a whole message (or a whole reply of several chunks), or, for READ
// data, the list of pieces of one reply, which the reply writer keeps together.

import {
  MAX_PAYLOAD_ADVERTISED,
  MAX_STRING,
  OPTION_REPLY_MAGIC,
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  REP,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
} from './constants.js';
import type { BlockExtent } from '../block.js';

/** UTF-8 bytes of a message, cut at a character boundary to the spec's 4096-byte string limit. */
export function limitedUtf8(msg: string, max = MAX_STRING): Buffer {
  const b = Buffer.from(msg, 'utf8');
  if (b.length <= max) return b;
  let end = max;
  // Step back over continuation bytes (10xxxxxx) so no character is split.
  while (end > 0 && (b[end] & 0xc0) === 0x80) end--;
  return b.subarray(0, end);
}

export function optionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(20 + data.length);
  out.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  out.writeUInt32BE(option, 8);
  out.writeUInt32BE(type, 12);
  out.writeUInt32BE(data.length, 16);
  data.copy(out, 20);
  return out;
}

export function optionError(option: number, type: number, msg: string): Buffer {
  return optionReply(option, type, limitedUtf8(msg));
}

/** A REP_META_CONTEXT reply: u32 context id, then the name. */
export function metaContextReply(option: number, id: number, name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const data = Buffer.allocUnsafe(4 + n.length);
  data.writeUInt32BE(id, 0);
  n.copy(data, 4);
  return optionReply(option, REP.META_CONTEXT, data);
}

/** Data of REP_SERVER / NBD_INFO_NAME style answers: u32 length + name. */
export function lengthPrefixed(s: string): Buffer {
  const name = Buffer.from(s, 'utf8');
  const out = Buffer.allocUnsafe(4 + name.length);
  out.writeUInt32BE(name.length, 0);
  name.copy(out, 4);
  return out;
}

export function simpleReply(cookie: bigint, error: number, data?: Buffer): Buffer {
  const out = Buffer.allocUnsafe(16 + (data?.length ?? 0));
  writeSimpleHeader(out, cookie, error);
  data?.copy(out, 16);
  return out;
}

/** A successful simple READ reply as its header and the data itself (not copied). */
export function simpleReadPieces(cookie: bigint, data: Buffer): Buffer[] {
  const h = Buffer.allocUnsafe(16);
  writeSimpleHeader(h, cookie, 0);
  return [h, data];
}

function writeSimpleHeader(out: Buffer, cookie: bigint, error: number): void {
  out.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  out.writeUInt32BE(error, 4);
  out.writeBigUInt64BE(cookie, 8);
}

function chunkHeader(out: Buffer, at: number, flags: number, type: number, cookie: bigint, length: number): void {
  out.writeUInt32BE(STRUCTURED_REPLY_MAGIC, at);
  out.writeUInt16BE(flags, at + 4);
  out.writeUInt16BE(type, at + 6);
  out.writeBigUInt64BE(cookie, at + 8);
  out.writeUInt32BE(length, at + 16);
}

/** A chunk with no payload and DONE: the answer to a zero-length READ. */
export function noneChunk(cookie: bigint): Buffer {
  const out = Buffer.allocUnsafe(20);
  chunkHeader(out, 0, REPLY_FLAG_DONE, REPLY_TYPE.NONE, cookie, 0);
  return out;
}

/** A READ's data as OFFSET_DATA chunks of at most chunkMax bytes each; only the last carries DONE. */
export function readChunks(cookie: bigint, offset: number, data: Buffer, chunkMax = MAX_PAYLOAD_ADVERTISED): Buffer {
  return Buffer.concat(readChunkPieces(cookie, offset, data, chunkMax));
}

/**
 * readChunks as a list of chunk headers and views of `data`, to be written in
 * order: the data is not copied, so a READ costs its length once, not twice.
 */
export function readChunkPieces(cookie: bigint, offset: number, data: Buffer, chunkMax = MAX_PAYLOAD_ADVERTISED): Buffer[] {
  if (data.length === 0) return [noneChunk(cookie)];
  const count = Math.ceil(data.length / chunkMax);
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const start = i * chunkMax;
    const len = Math.min(chunkMax, data.length - start);
    const h = Buffer.allocUnsafe(28);
    chunkHeader(h, 0, i === count - 1 ? REPLY_FLAG_DONE : 0, REPLY_TYPE.OFFSET_DATA, cookie, 8 + len);
    h.writeBigUInt64BE(BigInt(offset + start), 20);
    out.push(h, data.subarray(start, start + len));
  }
  return out;
}

/**
 * readChunkPieces of data held as a chunk list: one OFFSET_DATA chunk whose
 * payload is the list itself (so at most chunkMax bytes), or a simple reply.
 */
export function readReplyParts(cookie: bigint, offset: number, parts: readonly Buffer[], length: number, structured: boolean): Buffer[] {
  if (!structured) return [simpleReply(cookie, 0), ...parts];
  if (length === 0) return [noneChunk(cookie)];
  const h = Buffer.allocUnsafe(28);
  chunkHeader(h, 0, REPLY_FLAG_DONE, REPLY_TYPE.OFFSET_DATA, cookie, 8 + length);
  h.writeBigUInt64BE(BigInt(offset), 20);
  return [h, ...parts];
}

export function errorChunk(cookie: bigint, error: number, msg: string): Buffer {
  const text = limitedUtf8(msg);
  const out = Buffer.allocUnsafe(20 + 6 + text.length);
  chunkHeader(out, 0, REPLY_FLAG_DONE, REPLY_TYPE.ERROR, cookie, 6 + text.length);
  out.writeUInt32BE(error, 20);
  out.writeUInt16BE(text.length, 24);
  text.copy(out, 26);
  return out;
}

/** One context's BLOCK_STATUS chunk; `done` on the last chunk of the reply only. */
export function blockStatusChunk(cookie: bigint, contextId: number, extents: readonly BlockExtent[], done = true): Buffer {
  const out = Buffer.allocUnsafe(20 + 4 + 8 * extents.length);
  chunkHeader(out, 0, done ? REPLY_FLAG_DONE : 0, REPLY_TYPE.BLOCK_STATUS, cookie, 4 + 8 * extents.length);
  out.writeUInt32BE(contextId, 20);
  let at = 24;
  for (const e of extents) {
    out.writeUInt32BE(e.length, at);
    out.writeUInt32BE(e.flags, at + 4);
    at += 8;
  }
  return out;
}
