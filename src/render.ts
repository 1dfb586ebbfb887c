// Rendering of command results for people and pipes (tables and key/value
// blocks go to stdout where they are the result; see table.ts for the
// terminal/pipe/-H forms). Scripts that want every field use --json.
import path from 'node:path';
import { c, outputMode } from './ui.js';
import { OutputTable, keyValues, humanTables, type Column } from './table.js';
import { formatSize } from './size.js';
import type { PruneResult, SnapshotInfo, StatusReport } from './catalogue/catalogue.js';
import { MANUAL_REASON, WOULD_GO } from './prune/plan.js';
import type { LayoutReport } from './commands/validate.js';

export function table(head: (string | Column)[]): OutputTable {
  return new OutputTable(head);
}

/** "2026-11-29 16:44" (UTC, to the minute): the full instant is in --json. */
function shortTime(iso: string): string {
  return iso.replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, '');
}

export function renderSnapshotList(list: SnapshotInfo[]): string {
  if (list.length === 0) return '';
  // Scripts (piped or -H) get a fixed column set: a column that came and went
  // with the data would shift the ones after it. A terminal drops it when empty.
  const scripted = process.stdout.isTTY !== true || outputMode.scripted;
  const expiring = scripted || list.some((s) => s.expiresAt);
  const t = table([
    { title: 'id', right: true },
    { title: 'name', elide: true },
    'created (UTC)',
    { title: 'used', right: true },
    { title: 'changed', right: true },
    ...(expiring ? ['expires (UTC)'] : []),
    'kind',
    'held',
  ]);
  for (const s of list) {
    t.push([String(s.id), s.name, shortTime(s.createdAt), formatSize(s.usedBytes), formatSize(s.changedBytes), ...(expiring ? [s.expiresAt ? shortTime(s.expiresAt) : '-'] : []), s.manual ? 'manual' : 'auto', s.held ? 'held' : '-']);
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
  const dir = s.partitions[0] ? path.dirname(s.partitions[0].snapshotFile) : '-';
  const kv = keyValues([
    ['id', String(s.id)],
    ['name', s.name],
    ['created', s.createdAt],
    ['expires', s.expiresAt ?? '-'],
    ['kind', s.manual ? 'manual (prune leaves it unless --include-manual)' : 'automatic'],
    ['held', s.held ? 'yes (vsnap release frees it)' : 'no'],
    ['volume', `${formatSize(s.size)}, block size ${formatSize(s.blockSize)}`],
    ['froze writes', `${s.freezeMs.toFixed(1)} ms`],
    ['changed since', formatSize(s.changedBytes)],
    ['used', `${formatSize(s.usedBytes)} (its files in the store)`],
    ['directory', dir],
  ]);
  const t = table([{ title: 'partition', elide: true }, { title: 'worker', right: true }, { title: 'pid', right: true }, { title: 'snapshot file', elide: true }, { title: 'change log', elide: true }]);
  for (const p of s.partitions) t.push([p.id, String(p.worker), String(p.pid), path.basename(p.snapshotFile), path.basename(p.changeLogFile)]);
  return `${kv}\n\n${t.toString()}\n`;
}

export function renderStatus(s: StatusReport): string {
  const pairs: [string, string][] = [
    ['volume', `${s.name}, ${formatSize(s.size)}, block size ${formatSize(s.blockSize)}`],
    ['store', s.store],
    ['snapshots', `${s.snapshots}${s.latest ? `, latest ${s.latest.id} ${s.latest.name} (${s.latest.createdAt})` : ''}`],
    ['served', s.heldBy ? `by pid ${s.heldBy.pid} (${s.heldBy.command})` : 'no'],
    ['space', `${formatSize(s.space.storeBytes)} in the store (${formatSize(s.space.snapshotsBytes)} snapshots, ${formatSize(s.space.clonesBytes)} clones)`],
    ['free', `${formatSize(s.space.freeBytes)}${s.space.recentBytesPerHour !== null ? `; recent growth ${formatSize(s.space.recentBytesPerHour)}/hour` : ''}`],
  ];
  const t = table([{ title: 'partition', elide: true }, { title: 'worker', right: true }, { title: 'pid', right: true }, 'state', { title: 'logged blocks', right: true }, { title: 'stale snapshots', elide: true }]);
  for (const p of s.partitions) {
    t.push([p.id, String(p.worker), String(p.pid), !p.clean ? c.yellow('recovered after crash') : p.writing ? 'in use' : 'clean', String(p.loggedBlocks), p.stale.length ? c.red(p.stale.join(', ')) : '-']);
  }
  // Alarms as whole lines under the block (scripts grep for them).
  const alarm = humanTables() ? c.red : String;
  const alarms = [
    ...(s.syncFailure ? [alarm(`sync failed, every FLUSH fails until the server restarts: ${s.syncFailure}`)] : []),
    ...(s.space.warning ? [alarm(`warning: ${s.space.warning}`)] : []),
  ];
  return `${[keyValues(pairs), ...alarms].join('\n')}\n\n${t.toString()}\n`;
}

/** validate's result: the layout table (stdout), after a summary on stderr. */
export function renderLayout(r: LayoutReport): string {
  const t = table([{ title: 'partition', elide: true }, { title: 'worker', right: true }, { title: 'extents', elide: true }, 'volume range', { title: 'size', right: true }]);
  for (const p of r.partitions) {
    t.push([
      p.id,
      String(p.worker),
      p.extents.map((e) => `${e.file} @${e.offset} +${e.length}`).join('\n'),
      `${p.volumeOffset}-${p.volumeOffset + p.length - 1}`,
      formatSize(p.length),
    ]);
  }
  return `${t.toString()}\n`;
}

/** diff's ranges: volume ranges, then (--by-file) backing-file ranges, one table. */
export function renderDiff(r: { ranges: { offset: number; length: number }[]; files?: { file: string; offset: number; length: number }[] }): string {
  const byFile = r.files !== undefined;
  const t = table([...(byFile ? [{ title: 'file', elide: true }] : []), { title: 'offset', right: true }, { title: 'length', right: true }]);
  for (const x of r.ranges) t.push([...(byFile ? ['(volume)'] : []), String(x.offset), String(x.length)]);
  for (const f of r.files ?? []) t.push([f.file, String(f.offset), String(f.length)]);
  return t.length ? `${t.toString()}\n` : '';
}
