// The per-partition state file (docs/formats.md): whether the last worker
// closed cleanly, the change-log lengths it left, and the identity of the
// backing files at that moment, so the next open can tell a torn log tail
// from corruption and notice writers that bypassed vsnap.
import fs from 'node:fs';
import path from 'node:path';
import { readRecord, writeRecord } from '../formats/record-json.js';

export const STATE_KIND = 'vsnap-partition-state';

export interface BackingIdentity {
  path: string;
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface PartitionState {
  clean: boolean;
  pid: number;
  updatedAt: string;
  backing: BackingIdentity[];
  /** Change-log byte lengths at the last clean close, by snapshot id. */
  logs: Record<string, number>;
  /** Snapshot ids whose view of this partition a foreign writer may have changed. */
  stale: number[];
}

export function statePath(storeDir: string, partitionId: string): string {
  return path.join(storeDir, 'state', `${partitionId}.json`);
}

export async function readState(storeDir: string, partitionId: string): Promise<PartitionState | undefined> {
  const p = statePath(storeDir, partitionId);
  if (!fs.existsSync(p)) return undefined;
  return readRecord<PartitionState>(p, STATE_KIND);
}

export async function writeState(storeDir: string, partitionId: string, s: PartitionState): Promise<void> {
  await writeRecord(statePath(storeDir, partitionId), STATE_KIND, { ...s });
}

export async function backingIdentity(paths: string[]): Promise<BackingIdentity[]> {
  const uniq = [...new Set(paths)];
  return Promise.all(
    uniq.map(async (p) => {
      const st = await fs.promises.stat(p);
      return { path: p, dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
    }),
  );
}

/** Names the first difference, or undefined when the files are as recorded. */
export function identityChange(before: BackingIdentity[], now: BackingIdentity[]): string | undefined {
  for (const b of before) {
    const n = now.find((x) => x.path === b.path);
    if (!n) continue;
    if (n.dev !== b.dev || n.ino !== b.ino) return `${b.path} was replaced by another file`;
    if (n.size !== b.size) return `${b.path} changed size from ${b.size} to ${n.size}`;
    if (n.mtimeMs !== b.mtimeMs || n.ctimeMs !== b.ctimeMs) return `${b.path} was modified at ${new Date(Math.max(n.mtimeMs, n.ctimeMs)).toISOString()}`;
  }
  return undefined;
}
