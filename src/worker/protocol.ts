// The whole coordinator <-> worker protocol in one place, typed in both
// directions: each control request kind K has one reply type
// ControlReplies[K], and each request carries everything the worker needs
// to act on it (no state remembered from an earlier message).
//
// Control messages (open, freeze, prepare, confirm, thaw, delete, restore,
// ...) are small structured values; bulk data (reads and writes of partition
// bytes) moves as binary frames. What carries them is a Link
// (src/transport/): today the fork IPC channel plus a dedicated pipe.
import type { SerializedError } from '../errors.js';

export { FrameReader } from '../transport/frames.js';

// ---------- control channel ----------

export interface PartitionSpec {
  index: number;
  id: string;
  length: number;
  extents: { file: string; path: string; offset: number; length: number }[];
}

export interface OpenRequest {
  t: 'open';
  storeDir: string;
  fingerprint: string;
  blockSize: number;
  worker: number;
  partitions: PartitionSpec[];
  /** Committed snapshot ids, ascending, as the store holds them on disk. */
  snapshots: number[];
  /** Reads of stale snapshots are allowed. */
  force: boolean;
  /** Snapshots a foreign writer made stale, per partition id (decided by the coordinator). */
  stale: { partition: string; snapshots: number[]; reason: string }[];
}

export interface PartitionSnapshotReply {
  partition: string;
  snapshotFile: string;
  changeLogFile: string;
  snapshotBytes: number;
  snapshotChecksum: string;
  changeLogHeaderCrc: number;
}

/**
 * The end of a create, as the coordinator decided it from the disk: the
 * snapshot committed in `dir` (the workers switch to its logs there), or
 * aborted (the workers drop what they prepared). A THAW after a delete or a
 * plain freeze carries no snapshot.
 */
export type ThawOutcome = { snapshotId: number; committed: true; dir: string } | { snapshotId: number; committed: false } | null;

export interface VerifyRequest {
  t: 'verify';
  storeDir: string;
  fingerprint: string;
  blockSize: number;
  partitions: PartitionSpec[];
  snapshots: {
    id: number;
    partitions: { id: string; snapshotFile: string; changeLogFile: string; snapshotChecksum: string; changeLogHeaderCrc: number }[];
  }[];
}

export interface VerifyProblem {
  snapshot: number | null;
  partition: string | null;
  file: string | null;
  message: string;
}

/** A piece of a partition to copy into an output file (an image or a split backing file). */
export interface ExportTarget {
  partition: number;
  partOffset: number;
  length: number;
  output: string;
  outputOffset: number;
}

export interface WorkerStatus {
  pid: number;
  rss: number;
  /** Peak resident set size of the worker so far, bytes. */
  maxRss: number;
  /** clean: no write since the last orderly close; recovered: this worker's open found its predecessor's state unclean (a crash). */
  partitions: { id: string; clean: boolean; recovered: boolean; loggedBlocks: number }[];
}

/** Partition-relative block lists per partition, for diff. */
export interface ChangedBlocks {
  partitions: { index: number; blocks: number[] }[];
}

/** Every control request, by kind. */
export interface ControlRequests {
  open: OpenRequest;
  /** Stop starting writes, finish those in flight, flush (design §6 step 1). */
  freeze: { t: 'freeze' };
  /** Write partition snapshots and empty change logs into tmpDir, durably (step 2). */
  prepare: { t: 'prepare'; snapshotId: number; tmpDir: string; createdAt: string };
  /** Just before the commit point: the worker still holds what it prepared for snapshotId. */
  confirm: { t: 'confirm'; snapshotId: number };
  /** Go on writing (step 4), after switching to the new logs when the create committed. */
  thaw: { t: 'thaw'; outcome: ThawOutcome };
  delete: { t: 'delete'; snapshotId: number };
  restore: { t: 'restore'; snapshotId: number; partitions: number[] };
  changed: { t: 'changed'; from: number; to: number | null; exact: boolean };
  export: { t: 'export'; view: number; targets: ExportTarget[]; sparse: boolean };
  status: { t: 'status' };
  verify: VerifyRequest;
  close: { t: 'close' };
}

/** The reply to each control request kind. */
export interface ControlReplies {
  open: { pid: number };
  freeze: null;
  prepare: PartitionSnapshotReply[];
  confirm: null;
  thaw: null;
  /** Blocks moved into the predecessor's logs. */
  delete: { moved: number };
  restore: { restoredBytes: number };
  changed: ChangedBlocks;
  export: { bytes: number };
  status: WorkerStatus;
  verify: { problems: VerifyProblem[]; bytesRead: number };
  close: null;
}

export type ControlKind = keyof ControlRequests & keyof ControlReplies;
export type ControlRequest = ControlRequests[ControlKind];
export type ControlRequestWithId = ControlRequest & { reqId: number };

export type WorkerMessage =
  | { t: 'ready'; pid: number }
  /** Bytes done since the last progress message of a long request (restore, export). */
  | { t: 'progress'; reqId: number; bytes: number }
  | { t: 'reply'; reqId: number; ok: true; value: ControlReplies[ControlKind] }
  | { t: 'reply'; reqId: number; ok: false; error: SerializedError };

// ---------- data channel ----------

export const enum DataOp {
  Read = 1,
  Write = 2,
  Zero = 3,
  Flush = 4,
}

export const FLAG_FUA = 1;

/**
 * Request frame, 32-byte header then payload (writes only):
 *   u32 frame length (header + payload), u8 op, u8 flags, u16 partition index,
 *   u32 request id, u32 view (snapshot id, 0 = live), f64 offset, u32 length, u32 reserved.
 * Reply frame, 16-byte header then payload:
 *   u32 frame length, u8 status (0 ok, 1 error), u8 0, u16 0, u32 request id, u32 reserved;
 *   payload: data for a read, JSON SerializedError for an error.
 * Offsets are below 2^53, so a double carries them exactly. Byte 4 (op or
 * status) stays below 0x80: a StreamLink marks control frames there.
 */
export const REQ_HEADER = 32;
export const REPLY_HEADER = 16;

export interface DataRequest {
  op: DataOp;
  flags: number;
  partition: number;
  reqId: number;
  view: number;
  offset: number;
  length: number;
  payload?: Buffer;
}

export function encodeRequest(r: DataRequest): Buffer[] {
  const h = Buffer.allocUnsafe(REQ_HEADER);
  const payloadLen = r.payload ? r.payload.length : 0;
  h.writeUInt32LE(REQ_HEADER + payloadLen, 0);
  h.writeUInt8(r.op, 4);
  h.writeUInt8(r.flags, 5);
  h.writeUInt16LE(r.partition, 6);
  h.writeUInt32LE(r.reqId, 8);
  h.writeUInt32LE(r.view, 12);
  h.writeDoubleLE(r.offset, 16);
  h.writeUInt32LE(r.length, 24);
  h.writeUInt32LE(0, 28);
  return r.payload ? [h, r.payload] : [h];
}

export function decodeRequest(frame: Buffer): DataRequest {
  return {
    op: frame.readUInt8(4) as DataOp,
    flags: frame.readUInt8(5),
    partition: frame.readUInt16LE(6),
    reqId: frame.readUInt32LE(8),
    view: frame.readUInt32LE(12),
    offset: frame.readDoubleLE(16),
    length: frame.readUInt32LE(24),
    payload: frame.length > REQ_HEADER ? frame.subarray(REQ_HEADER) : undefined,
  };
}

export function encodeReply(reqId: number, ok: boolean, payload?: Buffer): Buffer[] {
  const h = Buffer.allocUnsafe(REPLY_HEADER);
  h.writeUInt32LE(REPLY_HEADER + (payload ? payload.length : 0), 0);
  h.writeUInt8(ok ? 0 : 1, 4);
  h.writeUInt8(0, 5);
  h.writeUInt16LE(0, 6);
  h.writeUInt32LE(reqId, 8);
  h.writeUInt32LE(0, 12);
  return payload ? [h, payload] : [h];
}
