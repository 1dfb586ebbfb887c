// What restore (restore.ts, restore-newest.ts) needs of a partition engine
// and what it answers: types only, so those modules and partition.ts form no
// import cycle.
import type { ChangeLog } from '../formats/changelog.js';
import type { ExtentIO, HandleCache } from './extent-io.js';
import type { WriteGate } from '../gate.js';

export interface RestoreOptions {
  /** Say what would be written; write nothing (not even the partition state). */
  dryRun?: boolean;
  /** Read every record the restore would copy, checking its crc; write nothing. */
  check?: boolean;
  /** Bytes restored and durable since the last call. */
  onProgress?: (bytes: number) => void;
}

export interface RestoredPartition {
  partition: string;
  /** Blocks written (or, with dryRun, that would be). */
  blocks: number;
  bytes: number;
  /** The newest snapshot was restored and its change log cut to its header. */
  cut: boolean;
  /** Set when the blocks were restored but cutting the log failed (the restore still holds). */
  cutError?: string;
}

export interface ViewLogs {
  logs: readonly { id: number; log: ChangeLog }[];
  from: number;
}

/** What restore needs of a partition engine (partition.ts). */
export interface RestorableEngine {
  readonly spec: { id: string };
  readonly blockSize: number;
  readonly io: ExtentIO;
  readonly reading: Set<Promise<unknown>>;
  readonly ctx: { gate: WriteGate; handles: HandleCache; mutating(): Promise<void>; recordCut?(partition: string, snapshotId: number, length: number): Promise<void> };
  viewOf(view: number): ViewLogs;
  checkFresh(view: number): void;
  track<T>(p: Promise<T>): Promise<T>;
  readView(v: ViewLogs, off: number, len: number, out: Buffer, outOff: number): Promise<void>;
  write(off: number, data: Buffer, fua: boolean): Promise<void>;
}
