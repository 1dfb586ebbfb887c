// Rendering of command results for people (stderr tables go to stdout only
// where the table is the result). Scripts use --json instead.
import { c } from './ui.js';
import { OutputTable } from './table.js';
import { formatSize } from './size.js';
import type { PruneResult, SnapshotInfo, StatusReport } from './catalogue/catalogue.js';
import { MANUAL_REASON, WOULD_GO } from './prune/plan.js';

export function table(head: string[]): OutputTable {
  return new OutputTable(head);
}

export function renderSnapshotList(list: SnapshotInfo[]): string {
  if (list.length === 0) return 'no snapshots\n';
  const t = table(['id', 'name', 'created (UTC)', 'changed since', 'expires', 'kind', 'held']);
  for (const s of list) {
    t.push([String(s.id), s.name, s.createdAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'), formatSize(s.changedBytes), s.expiresAt ?? '-', s.manual ? 'manual' : 'auto', s.held ? 'held' : '-']);
  }
  return `${t.toString()}\n`;
}

/**
 * prune for people: the deletions are the result (stdout), and only they,
 * so a cron job that deleted nothing prints nothing there; the summary and
 * what protections kept are notes for stderr (info(), silenced by -q).
 */
export function renderPrune(r: PruneResult): { result: string; notes: string[] } {
  const verb = r.dryRun ? 'would delete' : 'deleted';
  const result = r.delete.map((d) => `${verb} ${d.id} ${d.name} (${d.reasons.join('; ')})\n`).join('');
  // Protected snapshots are named only where the protection made a difference.
  const saved = r.keep.filter((k) => k.reasons.some((x) => x.startsWith(WOULD_GO)));
  const notes = saved.map((k) => `kept ${k.id} ${k.name}: ${k.reasons.join('; ')}${k.protectedBy.includes('held') ? ' (vsnap release frees it)' : ''}`);
  const manual = r.keep.filter((k) => k.reasons.includes(MANUAL_REASON)).length;
  notes.push(`${r.keep.length} kept, ${r.delete.length} ${r.dryRun ? 'to delete' : 'deleted'}${manual ? ` (${manual} manual left alone: --include-manual lets the rules consider them)` : ''}`);
  return { result, notes };
}

export function renderSnapshot(s: SnapshotInfo): string {
  const lines = [
    `snapshot ${c.bold(String(s.id))} ${s.name}`,
    `  created   ${s.createdAt}${s.expiresAt ? `, expires ${s.expiresAt}` : ''}, ${s.manual ? 'manual' : 'automatic'}${s.held ? ', held (vsnap release frees it)' : ''}`,
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
