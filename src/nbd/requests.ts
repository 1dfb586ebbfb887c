// Parsing and validating transmission requests. Every request is checked here,
// once, before any device sees it (style.md: bounds checked centrally), so the
// devices can trust offset + length <= size as block.ts promises them.

import type { BlockErrno } from '../block.js';
import { CMD, CMD_FLAG, MAX_PAYLOAD_ACCEPTED, MAX_PAYLOAD_ADVERTISED, REQUEST_MAGIC, TFLAG } from './constants.js';

export const REQUEST_HEADER_LENGTH = 28;

export interface Request {
  flags: number;
  type: number;
  cookie: bigint;
  /** Kept as BigInt: a client may send anything up to 2^64 - 1. */
  offset: bigint;
  length: number;
}

/** undefined when the magic is wrong: framing is lost and the connection must go. */
export function parseRequest(header: Buffer): Request | undefined {
  if (header.readUInt32BE(0) !== REQUEST_MAGIC) return undefined;
  return {
    flags: header.readUInt16BE(4),
    type: header.readUInt16BE(6),
    cookie: header.readBigUInt64BE(8),
    offset: header.readBigUInt64BE(16),
    length: header.readUInt32BE(24),
  };
}

/** What the connection negotiated for its export. */
export interface ExportState {
  size: number;
  /** Transmission flags as advertised (transmissionFlags()). */
  flags: number;
  structuredReplies: boolean;
  /** base:allocation was selected for this export. */
  metaContext: boolean;
}

export type Verdict = { ok: true; offset: number } | { ok: false; errno: BlockErrno; message: string };

const NAMES: Record<number, string> = {
  [CMD.READ]: 'READ',
  [CMD.WRITE]: 'WRITE',
  [CMD.DISC]: 'DISC',
  [CMD.FLUSH]: 'FLUSH',
  [CMD.TRIM]: 'TRIM',
  [CMD.CACHE]: 'CACHE',
  [CMD.WRITE_ZEROES]: 'WRITE_ZEROES',
  [CMD.BLOCK_STATUS]: 'BLOCK_STATUS',
};

export function commandName(type: number): string {
  return NAMES[type] ?? `command ${type}`;
}

/** The flag each optional command needs advertised before a client may send it. */
const NEEDS_FLAG: Record<number, number> = {
  [CMD.FLUSH]: TFLAG.SEND_FLUSH,
  [CMD.TRIM]: TFLAG.SEND_TRIM,
  [CMD.CACHE]: TFLAG.SEND_CACHE,
  [CMD.WRITE_ZEROES]: TFLAG.SEND_WRITE_ZEROES,
};

const ALL_CMD_FLAGS = CMD_FLAG.FUA | CMD_FLAG.NO_HOLE | CMD_FLAG.DF | CMD_FLAG.REQ_ONE | CMD_FLAG.FAST_ZERO;

function fail(errno: BlockErrno, message: string): Verdict {
  return { ok: false, errno, message };
}

/**
 * Decide whether a request may reach the device. DISC never gets here. The
 * order matters only for which errno a doubly-bad request gets; it follows
 * nbd-notes.md: writes to a read-only export are EPERM before anything else.
 */
export function checkRequest(req: Request, exp: ExportState): Verdict {
  const name = commandName(req.type);
  if (!(req.type in NAMES) || req.type === CMD.DISC) return fail('EINVAL', `unknown ${name}`);

  const writeish = req.type === CMD.WRITE || req.type === CMD.TRIM || req.type === CMD.WRITE_ZEROES;
  if (writeish && exp.flags & TFLAG.READ_ONLY) return fail('EPERM', `${name} on a read-only export`);
  const needed = NEEDS_FLAG[req.type];
  if (needed !== undefined && !(exp.flags & needed)) return fail('EINVAL', `${name} was not advertised`);
  if (req.type === CMD.BLOCK_STATUS && !(exp.structuredReplies && exp.metaContext)) {
    return fail('EINVAL', 'BLOCK_STATUS without a selected metadata context');
  }

  const f = req.flags;
  if (f & ~ALL_CMD_FLAGS) return fail('EINVAL', `${name}: unknown flags 0x${f.toString(16)}`);
  if (f & CMD_FLAG.FUA && !(exp.flags & TFLAG.SEND_FUA)) return fail('EINVAL', `${name}: FUA was not advertised`);
  if (f & CMD_FLAG.NO_HOLE && req.type !== CMD.WRITE_ZEROES) return fail('EINVAL', `${name}: NO_HOLE is only for WRITE_ZEROES`);
  if (f & CMD_FLAG.FAST_ZERO && !(req.type === CMD.WRITE_ZEROES && exp.flags & TFLAG.SEND_FAST_ZERO)) {
    return fail('EINVAL', `${name}: FAST_ZERO is only for WRITE_ZEROES`);
  }
  if (f & CMD_FLAG.DF && !(req.type === CMD.READ && exp.flags & TFLAG.SEND_DF)) return fail('EINVAL', `${name}: DF is only for READ`);
  if (f & CMD_FLAG.REQ_ONE && req.type !== CMD.BLOCK_STATUS) return fail('EINVAL', `${name}: REQ_ONE is only for BLOCK_STATUS`);

  if (req.type === CMD.FLUSH) {
    if (req.offset !== 0n || req.length !== 0) return fail('EINVAL', 'FLUSH with a nonzero offset or length');
    return { ok: true, offset: 0 };
  }

  if ((req.type === CMD.READ || req.type === CMD.WRITE) && req.length > MAX_PAYLOAD_ACCEPTED) {
    return fail('EOVERFLOW', `${name} of ${req.length} bytes exceeds the ${MAX_PAYLOAD_ACCEPTED}-byte limit`);
  }
  // DF asks for the data in one chunk, and no chunk may exceed the advertised maximum.
  if (f & CMD_FLAG.DF && req.length > MAX_PAYLOAD_ADVERTISED) {
    return fail('EOVERFLOW', `READ with DF of ${req.length} bytes cannot be sent in one chunk`);
  }
  if (req.type === CMD.BLOCK_STATUS && req.length === 0) return fail('EINVAL', 'BLOCK_STATUS of zero length');

  const end = req.offset + BigInt(req.length);
  if (end > BigInt(exp.size)) {
    const errno = req.type === CMD.WRITE || req.type === CMD.WRITE_ZEROES ? 'ENOSPC' : 'EINVAL';
    return fail(errno, `${name} at ${req.offset} length ${req.length} is beyond the end (${exp.size})`);
  }
  return { ok: true, offset: Number(req.offset) };
}
