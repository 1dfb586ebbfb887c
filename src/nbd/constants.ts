// Wire constants of the NBD protocol (fixed newstyle, structured replies,
// base:allocation), named as in the spec (NetworkBlockDevice/nbd doc/proto.md)
// minus the NBD_ prefix. Everything on the wire is big-endian.

import type { BlockErrno } from '../block.js';

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x0003e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags the server offers. */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;

/** Client flags. */
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  /** 64-bit request and reply headers (refused: see handshake.ts). */
  EXTENDED_HEADERS: 11,
} as const;

export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_PLATFORM: 0x80000004,
  ERR_TLS_REQD: 0x80000005,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_BLOCK_SIZE_REQD: 0x80000008,
  ERR_TOO_BIG: 0x80000009,
} as const;

export const INFO = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** Transmission flags (per export, sent with EXPORT_NAME / INFO_EXPORT). */
export const TFLAG = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const CMD_FLAG = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

export const REPLY_FLAG_DONE = 1;

export const REPLY_TYPE = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 0x8001,
  ERROR_OFFSET: 0x8002,
} as const;

/** base:allocation extent flags. */
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;

export const BASE_ALLOCATION = 'base:allocation';
/** Context id handed out by SET_META_CONTEXT; any nonzero value works, LIST uses 0. Other contexts get 2, 3, ... */
export const BASE_ALLOCATION_ID = 1;
/** Prefix of QEMU's changed-block contexts (docs/interop/nbd.rst); one flag, bit 0 = dirty (coordinator/changed-extents.ts). */
export const DIRTY_BITMAP_PREFIX = 'qemu:dirty-bitmap:';

/** errno values as the protocol numbers them (Linux values, fixed by the spec). */
export const ERRNO: Record<BlockErrno, number> = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
};

export const KIB = 1024;
export const MIB = 1024 * KIB;

/** Largest payload advertised (INFO_BLOCK_SIZE maximum) and largest data chunk ever sent. */
export const MAX_PAYLOAD_ADVERTISED = 32 * MIB;
/** Largest READ/WRITE payload accepted: twice the advertised maximum, as nbdkit does, for clients that ignore it. */
export const MAX_PAYLOAD_ACCEPTED = 64 * MIB;
/** Strings (export names, queries, messages) longer than this are invalid per the spec. */
export const MAX_STRING = 4096;
/** Option data beyond this is not a plausible client: the connection is dropped rather than drained. */
export const MAX_OPTION_LENGTH = 64 * KIB;
