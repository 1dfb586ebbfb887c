// Rendering of command results for people (stderr tables go to stdout only
// where the table is the result). Scripts use --json instead.
import { c } from './ui.js';
import { OutputTable } from './table.js';
import { formatSize } from './size.js';
import type { SnapshotInfo, StatusReport } from './catalogue/catalogue.js';

export function table(head: string[]): OutputTable {
  return new OutputTable(head);
}

export function renderSnapshotList(list: SnapshotInfo[]): string {
  if (list.length === 0) return 'no snapshots\n';
  const t = table(['id', 'name', 'created (UTC)', 'changed since', 'expires']);
  for (const s of list) t.push([String(s.id), s.name, s.createdAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'), formatSize(s.changedBytes), s.expiresAt ?? '-']);
  return `${t.toString()}\n`;
}

export function renderSnapshot(s: SnapshotInfo): string {
  const lines = [
    `snapshot ${c.bold(String(s.id))} ${s.name}`,
    `  created   ${s.createdAt}${s.expiresAt ? `, expires ${s.expiresAt}` : ''}`,
    `  volume    ${formatSize(s.size)}, block size ${formatSize(s.blockSize)}, froze writes for ${s.freezeMs.toFixed(1)} ms`,
    `  changed   ${formatSize(s.changedBytes)} logged since`,
  ];
  const t = table(['partition', 'worker', 'pid', 'snapshot file', 'change log']);
  for (const p of s.partitions) t.push([p.id, String(p.worker), String(p.pid), p.snapshotFile, p.changeLogFile]);
  return `${lines.join('\n')}\n${t.toString()}\n`;
}

export function renderStatus(s: StatusReport): string {
  const lines = [
    `volume ${c.bold(s.name)}: ${formatSize(s.size)}, block size ${formatSize(s.blockSize)}`,
    `store ${s.store}`,
    `snapshots ${s.snapshots}${s.latest ? `, latest ${s.latest.id} ${s.latest.name} (${s.latest.createdAt})` : ''}`,
    s.heldBy ? `held by pid ${s.heldBy.pid} (${s.heldBy.command})` : 'not served',
    ...(s.syncFailure ? [c.red(`sync failed, every FLUSH fails until the server restarts: ${s.syncFailure}`)] : []),
  ];
  const t = table(['partition', 'worker', 'pid', 'state', 'logged blocks', 'stale snapshots']);
  for (const p of s.partitions) {
    t.push([p.id, String(p.worker), String(p.pid), p.clean ? 'clean' : c.yellow('recovered after crash'), String(p.loggedBlocks), p.stale.length ? c.red(p.stale.join(', ')) : '-']);
  }
  return `${lines.join('\n')}\n${t.toString()}\n`;
}
