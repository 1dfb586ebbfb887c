// The per-partition state file (docs/formats.md): whether the last worker
// closed cleanly and the change-log lengths it left, so the next open can
// tell a torn log tail (after a crash) from corruption (after a clean close).
import fs from 'node:fs';
import { readRecord, writeRecord } from '../formats/record-json.js';
import { partitionStateFile } from './layout.js';

/** A backing file as fstat saw it: what stale detection compares (store/backing.ts). */
export interface BackingIdentity {
  path: string;
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

export const STATE_KIND = 'vsnap-partition-state';

export interface PartitionState {
  clean: boolean;
  pid: number;
  updatedAt: string;
  /** Change-log byte lengths at the last clean close, by snapshot id. */
  logs: Record<string, number>;
  /** Backing files this worker wrote, as its last own write left them (docs/formats.md). */
  backing?: BackingIdentity[];
  /** Snapshot ids whose log may hold a failed append's tail beyond its `logs` length (dropped at open). */
  dropTail?: string[];
}

export function statePath(storeDir: string, partitionId: string): string {
  return partitionStateFile(storeDir, partitionId);
}

export async function readState(storeDir: string, partitionId: string): Promise<PartitionState | undefined> {
  const p = statePath(storeDir, partitionId);
  if (!fs.existsSync(p)) return undefined;
  return readRecord<PartitionState>(p, STATE_KIND);
}

export async function writeState(storeDir: string, partitionId: string, s: PartitionState): Promise<void> {
  await writeRecord(statePath(storeDir, partitionId), STATE_KIND, { ...s });
}


/**
 * Lower one log's recorded length before the log is cut to it (restore of
 * the newest snapshot, docs/formats.md "The cut"), so that the recorded
 * length is never more than the file holds, at every instant of the cut.
 * Only while the state is unclean: a crash then reopens with torn-tail
 * recovery, for which the recorded length is a floor.
 */
export async function recordCut(storeDir: string, partitionId: string, s: PartitionState, snapshotId: number, length: number): Promise<void> {
  if (s.clean) throw new Error(`recordCut(${partitionId}): the partition state must be marked unclean first`);
  s.logs[String(snapshotId)] = length;
  await writeState(storeDir, partitionId, s);
}
