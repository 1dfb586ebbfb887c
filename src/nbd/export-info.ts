// What the server tells a client about one export: its transmission flags and
// block-size constraints. Pure functions of the device and the negotiation.

import type { BlockDevice } from '../block.js';
import { MAX_PAYLOAD_ADVERTISED, TFLAG } from './constants.js';

/**
 * Transmission flags for a device. CAN_MULTI_CONN is always set: every
 * BlockDevice's flush() covers everything acknowledged on any connection
 * (block.ts), which is what the flag promises. FAST_ZERO is advertised although
 * the answer is always ENOTSUP (see transmission.ts): that is a valid answer,
 * and it lets qemu-img and nbdcopy ask instead of guessing.
 */
export function transmissionFlags(device: Pick<BlockDevice, 'readOnly'>, structuredReplies: boolean): number {
  let flags = TFLAG.HAS_FLAGS | TFLAG.SEND_FLUSH | TFLAG.CAN_MULTI_CONN | TFLAG.SEND_CACHE;
  // DF is meaningful only with structured replies, and the spec forbids it otherwise.
  if (structuredReplies) flags |= TFLAG.SEND_DF;
  if (device.readOnly) flags |= TFLAG.READ_ONLY;
  else flags |= TFLAG.SEND_FUA | TFLAG.SEND_TRIM | TFLAG.SEND_WRITE_ZEROES | TFLAG.SEND_FAST_ZERO;
  return flags;
}

export interface BlockSizes {
  minimum: number;
  preferred: number;
  maximum: number;
}

/**
 * INFO_BLOCK_SIZE values. Minimum 1: every vsnap layer handles unaligned I/O
 * (design.md §5), and QEMU rejects an export whose size is not a multiple of
 * the minimum, which 1 always satisfies. Preferred is the device's block size
 * brought to a power of two in [512, max], because QEMU checks that too.
 */
export function blockSizes(device: Pick<BlockDevice, 'preferredBlockSize'>): BlockSizes {
  const p = device.preferredBlockSize;
  let preferred = 4096;
  if (Number.isFinite(p) && p > 0) {
    preferred = 512;
    while (preferred < p && preferred < MAX_PAYLOAD_ADVERTISED) preferred *= 2;
  }
  return { minimum: 1, preferred, maximum: MAX_PAYLOAD_ADVERTISED };
}
