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
import type { RestoredPartition } from './restore.js';

export type { RestoredPartition };

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
  /** Writable clones the coordinator has opened (a restarted worker gets them again). */
  clones?: CloneSpec[];
}

/** A writable clone as a worker knows it: data frames name it by `handle` (coordinator-assigned, > 0). */
export interface CloneSpec {
  handle: number;
  name: string;
  /** Its base snapshot: reads of blocks not in the overlay take this snapshot's view. */
  snapshotId: number;
  /** The clone's directory (its overlays are <partition>.ovl/.ovm there). */
  dir: string;
  /** Base reads are not refused when the snapshot is reported stale (clone create --force). */
  force: boolean;
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

/** A bounded changed-blocks query over one partition range (worker/changed-range.ts). */
export interface ChangedRangeQuery {
  /** Snapshot id the changes are counted from. */
  from: number;
  /** Snapshot id they are counted up to, or null for the live volume. */
  to: number | null;
  /** Partition-relative block number where the range starts. */
  firstBlock: number;
  blockCount: number;
  /** Upper bound on hash lookups (log entries walked count a quarter). */
  maxProbes: number;
}

export interface ChangedRangeReply {
  /** Blocks from firstBlock the answer covers (at least 1 unless blockCount is 0). */
  scanned: number;
  /** Changed runs inside the scanned prefix as flat [start, end) pairs of block numbers. */
  runs: number[];
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
  /** dryRun: say per partition what would be written, change nothing; check: also read (crc-checked) every record it would copy (worker/restore.ts). */
  restore: { t: 'restore'; snapshotId: number; partitions: number[]; dryRun?: boolean; check?: boolean };
  changed: { t: 'changed'; from: number; to: number | null; exact: boolean };
  /** Changed blocks of one partition range, bounded (NBD qemu:dirty-bitmap contexts). */
  changedRange: { t: 'changedRange'; partition: number } & ChangedRangeQuery;
  /** sync: false, the caller fdatasyncs the outputs itself (worker/export.ts). */
  export: { t: 'export'; view: number; targets: ExportTarget[]; sparse: boolean; sync?: boolean };
  status: { t: 'status' };
  verify: VerifyRequest;
  /** Know a clone (idempotent); its overlays open at its first I/O. */
  cloneOpen: { t: 'cloneOpen'; clone: CloneSpec };
  /** Drain the clone's I/O and empty its overlays (clone reset). */
  cloneReset: { t: 'cloneReset'; handle: number };
  /** Open the clone's overlays of every partition here now (NBD_OPT_GO of its export): fails as its I/O would. */
  cloneCheck: { t: 'cloneCheck'; handle: number };
  /** Drain the clone's I/O and close its overlays; later I/O on the handle fails (clone delete). */
  cloneClose: { t: 'cloneClose'; handle: number };
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
  restore: { restoredBytes: number; partitions: RestoredPartition[] };
  changed: ChangedBlocks;
  changedRange: ChangedRangeReply;
  export: { bytes: number };
  status: WorkerStatus;
  verify: { problems: VerifyProblem[]; bytesRead: number };
  cloneOpen: null;
  cloneReset: null;
  cloneCheck: null;
  cloneClose: null;
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
  /** Reply: the view's allocation map from offset (encodeExtents); may end short. */
  BlockStatus = 5,
  Trim = 6,
}

export const FLAG_FUA = 1;
/** Zero: keep the range allocated (NBD NO_HOLE). */
export const FLAG_NO_HOLE = 2;
/** Zero: fail with ENOTSUP rather than copy or write data (NBD FAST_ZERO). */
export const FLAG_FAST = 4;

/** A BlockStatus reply: u32 length, u32 flags per extent (a request's length fits in u32). */
export function encodeExtents(extents: readonly { length: number; flags: number }[]): Buffer {
  const b = Buffer.allocUnsafe(8 * extents.length);
  extents.forEach((e, k) => {
    b.writeUInt32LE(e.length, 8 * k);
    b.writeUInt32LE(e.flags, 8 * k + 4);
  });
  return b;
}

export function decodeExtents(b: Buffer | undefined): { length: number; flags: number }[] {
  const out: { length: number; flags: number }[] = [];
  for (let k = 0; b && k + 8 <= b.length; k += 8) out.push({ length: b.readUInt32LE(k), flags: b.readUInt32LE(k + 4) });
  return out;
}

/**
 * Request frame, 32-byte header then payload (writes only):
 *   u32 frame length (header + payload), u8 op, u8 flags, u16 partition index,
 *   u32 request id, u32 view (snapshot id, 0 = live), f64 offset, u32 length,
 *   u32 clone handle (0 = none; else the request is on that clone, whose base snapshot is `view`).
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
  /** A clone's handle (CloneSpec.handle), or 0/absent for the live volume or a snapshot. */
  clone?: number;
  payload?: Buffer;
  /** The payload as a chunk list (views of the NBD socket's reads), sent instead of `payload` without joining it. */
  payloadParts?: readonly Buffer[];
}

/** reqId: the request's id when `r` carries none (the caller's counter, without a copy of `r` per request). */
export function encodeRequest(r: Omit<DataRequest, 'reqId'> & { reqId?: number }, reqId = r.reqId ?? 0): Buffer[] {
  const h = Buffer.allocUnsafe(REQ_HEADER);
  let payloadLen = r.payload ? r.payload.length : 0;
  if (r.payloadParts) for (const p of r.payloadParts) payloadLen += p.length;
  h.writeUInt32LE(REQ_HEADER + payloadLen, 0);
  h.writeUInt8(r.op, 4);
  h.writeUInt8(r.flags, 5);
  h.writeUInt16LE(r.partition, 6);
  h.writeUInt32LE(reqId, 8);
  h.writeUInt32LE(r.view, 12);
  h.writeDoubleLE(r.offset, 16);
  h.writeUInt32LE(r.length, 24);
  h.writeUInt32LE(r.clone ?? 0, 28);
  if (r.payloadParts) return [h, ...r.payloadParts];
  return r.payload ? [h, r.payload] : [h];
}

/**
 * A request frame as the link delivers it (frames.ts: the header is whole in
 * parts[0]), read in place (no header view, no object spread: this runs per
 * request). A frame that arrived in one read (every small request) carries
 * its payload as one view in `payload`; a longer one as the chunk list of
 * views in `payloadParts`, never joined here. At most one of them is set.
 */
export function decodeRequestParts(parts: readonly Buffer[]): DataRequest {
  const h = parts[0];
  let payload: Buffer | undefined;
  let payloadParts: Buffer[] | undefined;
  if (parts.length === 1) {
    if (h.length > REQ_HEADER) payload = h.subarray(REQ_HEADER);
  } else {
    payloadParts = h.length > REQ_HEADER ? [h.subarray(REQ_HEADER)] : [];
    for (let i = 1; i < parts.length; i++) payloadParts.push(parts[i]);
  }
  return {
    op: h.readUInt8(4) as DataOp,
    flags: h.readUInt8(5),
    partition: h.readUInt16LE(6),
    reqId: h.readUInt32LE(8),
    view: h.readUInt32LE(12),
    offset: h.readDoubleLE(16),
    length: h.readUInt32LE(24),
    clone: h.readUInt32LE(28),
    payload,
    payloadParts,
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
