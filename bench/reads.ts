// NBD reads (issue 11, design.md §10: reads of the live and snapshot exports
// >= qemu-nbd): fio's nbd engine, 1 MiB sequential reads of the whole volume
// at QD8 and a fixed set of 4 KiB random reads at QD32 (randrepeat: the same
// offsets for every server), against
//   - vsnap's live export, no snapshot;
//   - vsnap's snapshot export of a snapshot after which a quarter of the
//     volume was rewritten, so its reads mix change-log blocks and source
//     blocks as a snapshot kept for a while does;
//   - qemu-nbd -r on one raw file with the same bytes as both exports show.
// Reads change nothing, so each server's images are prepared once and the
// servers are restarted for every measurement, in an order rotated run by run.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { vsnap, have, spread, perRun, missing, type Goal, type Row } from './lib.js';
import { runFio, type FioJob, type FioResult } from './fio.js';
import { exportUri, freshCopy, makePristine, placeLabel, serveQemuNbd, serveVsnap, type Pristine, type Server } from './servers.js';

const MiB = 1 << 20;
const FILES = 2;
const FILE_SIZE = 512 * MiB;
const VOLUME = FILES * FILE_SIZE;
const SEQ_DEPTH = 8;
const RAND_BYTES = 256 * MiB;
const RAND_DEPTH = 32;
/** The share of the volume rewritten after the snapshot (whole 64 KiB blocks). */
export const LOGGED_SHARE = 0.25;

type Workload = 'seq' | 'rand';
type Target = 'vsnap-live' | 'vsnap-snap' | 'qemu-nbd';

const jobs: Record<Workload, FioJob> = {
  seq: { rw: 'read', bs: '1M', size: VOLUME, depth: SEQ_DEPTH },
  rand: { rw: 'randread', bs: '4k', size: VOLUME, ioSize: RAND_BYTES, depth: RAND_DEPTH },
};

/**
 * A copy of the pristine volume with snapshot `base`, then `share` of the
 * volume rewritten through the live export: distinct random 64 KiB blocks
 * (fio's random map never repeats a block), so that share of the snapshot's
 * blocks is read from the change log. Returns the manifest and what `vsnap
 * list --json` says changed since the snapshot (undefined if it does not say).
 */
export async function snapshotWithLog(pristine: Pristine, dir: string, volume: number, share: number): Promise<{ manifest: string; changed: number | undefined }> {
  await freshCopy(pristine.volDir, dir);
  const manifest = path.join(dir, 'volume.json');
  await vsnap(['create', manifest, '--name', 'base']);
  const srv = await serveVsnap(manifest);
  try {
    const bytes = Math.floor((volume * share) / (64 * 1024)) * 64 * 1024;
    await runFio({ rw: 'randwrite', bs: '64k', size: volume, ioSize: bytes, depth: 16, seed: 11 }, exportUri(srv.socket, 'live'), dir);
  } finally {
    await srv.stop();
  }
  const list = JSON.parse((await vsnap(['list', manifest, '--json'])).stdout) as { name: string; changedBytes?: number }[];
  return { manifest, changed: list.find((s) => s.name === 'base')?.changedBytes };
}

export function loggedNote(changed: number | undefined): string {
  return changed === undefined ? 'vsnap list gave no changedBytes' : `${(changed / MiB).toFixed(0)} MiB changed since the snapshot (vsnap list)`;
}

export async function benchReads(base: string, runs: number): Promise<Row[]> {
  const targets: Target[] = ['vsnap-live', 'vsnap-snap', 'qemu-nbd'];
  const qemuMissing = have('qemu-nbd') ? null : 'qemu-nbd not installed';
  if (!have('fio')) return targets.map((t) => missing('nbd-read', `fio nbd engine: ${t}`, 'fio not installed'));
  if (!fs.existsSync(base)) base = os.tmpdir();
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const where = placeLabel(base);
  const work = fs.mkdtempSync(path.join(base, 'vsnap-bench-read-'));
  const samples = new Map<string, FioResult[]>();
  let snapNote = '';
  try {
    log(`nbd-read: preparing 1 GiB of images in ${work}`);
    const pristine = await makePristine(work, FILES, FILE_SIZE);
    const liveDir = path.join(work, 'live');
    await freshCopy(pristine.volDir, liveDir);
    const snap = await snapshotWithLog(pristine, path.join(work, 'snap'), VOLUME, LOGGED_SHARE);
    snapNote = loggedNote(snap.changed);
    const start: Record<Target, () => Promise<Server>> = {
      'vsnap-live': async () => {
        const s = await serveVsnap(path.join(liveDir, 'volume.json'));
        return { ...s, uri: exportUri(s.socket, 'live') };
      },
      'vsnap-snap': async () => {
        const s = await serveVsnap(snap.manifest);
        return { ...s, uri: exportUri(s.socket, 'snapshot/base') };
      },
      // The snapshot's view is the pristine bytes, as is the live volume's.
      'qemu-nbd': () => serveQemuNbd(pristine.raw, path.join(work, 'qemu.sock'), { readOnly: true }),
    };
    const live = targets.filter((t) => t !== 'qemu-nbd' || !qemuMissing);
    for (let i = 0; i < runs; i++) {
      for (const w of ['seq', 'rand'] as Workload[]) {
        const order = live.map((_, k) => live[(k + i) % live.length]);
        for (const t of order) {
          const srv = await start[t]();
          let r: FioResult;
          try {
            r = await runFio(jobs[w], srv.uri, work);
          } finally {
            await srv.stop();
          }
          log(`nbd-read run ${i + 1}/${runs} ${w} ${t}: ${r.mibps.toFixed(0)} MiB/s, ${r.iops.toFixed(0)} IOPS`);
          samples.set(`${w}|${t}`, [...(samples.get(`${w}|${t}`) ?? []), r]);
        }
      }
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  return readRows(samples, where, runs, qemuMissing, snapNote);
}

function readRows(samples: Map<string, FioResult[]>, where: string, runs: number, qemuMissing: string | null, snapNote: string): Row[] {
  const suffix = runs === 1 ? `${where}, 1 run` : where;
  const goal: Goal | undefined = where === 'tmpfs' ? { op: '>=', target: 1.0 } : undefined;
  const ref = goal ? '' : 'for reference (the goal is on tmpfs)';
  const label: Record<Workload, string> = { seq: `1 MiB seq reads, QD${SEQ_DEPTH}`, rand: `4 KiB rand reads, QD${RAND_DEPTH}` };
  const names: Record<Target, string> = {
    'vsnap-live': 'vsnap live export, no snapshot',
    'vsnap-snap': `vsnap snapshot export, ${LOGGED_SHARE * 100}% of it logged`,
    'qemu-nbd': 'qemu-nbd -r -f raw',
  };
  const rows: Row[] = [];
  for (const w of ['seq', 'rand'] as Workload[]) {
    const pick = (r: FioResult) => (w === 'seq' ? r.mibps : r.iops);
    const get = (t: Target) => samples.get(`${w}|${t}`) ?? [];
    for (const t of ['vsnap-live', 'vsnap-snap', 'qemu-nbd'] as Target[]) {
      const what = `${label[w]}: ${names[t]} (${suffix})`;
      const s = get(t);
      if (!s.length) rows.push(missing('nbd-read', what, (t === 'qemu-nbd' && qemuMissing) || 'not run'));
      else rows.push({ group: 'nbd-read', what, ...spread(s.map(pick)), unit: w === 'seq' ? 'MiB/s' : 'IOPS', note: t === 'qemu-nbd' ? 'peer: one raw 1 GiB file' : t === 'vsnap-snap' ? snapNote : '2 files, 4 partitions, 2 workers' });
    }
    const ratio = (a: Target, b: Target, what: string, g: Goal | undefined, note: string) => {
      const label2 = `${label[w]}: ${what} (${suffix})`;
      if (!get(a).length || !get(b).length) rows.push(missing('nbd-read', label2, qemuMissing ?? 'not run', g));
      else rows.push({ group: 'nbd-read', what: label2, ...spread(perRun(get(a).map(pick), get(b).map(pick))), unit: 'ratio', goal: g, note });
    };
    ratio('vsnap-live', 'qemu-nbd', 'vsnap live / qemu-nbd', goal, ref);
    ratio('vsnap-snap', 'qemu-nbd', 'vsnap snapshot / qemu-nbd', goal, ref);
    ratio('vsnap-snap', 'vsnap-live', 'vsnap snapshot / vsnap live', undefined, 'cost of reading through the log');
  }
  return rows;
}
