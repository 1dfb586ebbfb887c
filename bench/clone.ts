// Clone export vs live export (design.md §10: clone exports >= 0.9x the
// live export), fio's nbd engine against one `vsnap serve` per measurement,
// each on a fresh copy of the same images with a snapshot `base` and a clone
// of it: 4 KiB random writes at QD32 (a fixed amount of work, the same
// offsets for both: randrepeat) and 1 MiB sequential reads at QD8 of the
// whole volume. The live side has the snapshot active too (a clone needs
// one), so both pay for their first writes: copy-on-write into the change
// log for live, a base-block copy into the overlay for a clone.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { have, missing, perRun, spread, vsnap, type Row } from './lib.js';
import { runFio, type FioJob, type FioResult } from './fio.js';
import { exportUri, fillImage, freshCopy, placeLabel, serveVsnap, type Server } from './servers.js';

const MiB = 1 << 20;
const FILES = 2;
const FILE_SIZE = 256 * MiB;
const VOLUME = FILES * FILE_SIZE;
const RAND_BYTES = 64 * MiB;

type Workload = 'randwrite' | 'seqread';
type Target = 'live' | 'clone';

function job(w: Workload): FioJob {
  if (w === 'randwrite') return { rw: 'randwrite', bs: '4k', size: VOLUME, ioSize: RAND_BYTES, depth: 32 };
  return { rw: 'read', bs: '1M', size: VOLUME, depth: 8 };
}

/** Serve a fresh copy with snapshot `base` and clone `bench`; resolves with the export URI asked for. */
async function serveCopy(pristine: string, dir: string, target: Target): Promise<Server> {
  await freshCopy(pristine, dir);
  const manifest = path.join(dir, 'volume.json');
  await vsnap(['create', manifest, '--name', 'base']);
  await vsnap(['clone', 'create', manifest, 'base', 'bench']);
  const srv = await serveVsnap(manifest);
  return { ...srv, uri: exportUri(srv.socket, target === 'live' ? 'live' : 'clone/bench') };
}

export async function benchClone(base: string, runs: number): Promise<Row[]> {
  if (!have('fio')) return [missing('clone', 'fio nbd engine: clone vs live', 'fio not installed')];
  if (!fs.existsSync(base)) base = os.tmpdir();
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const work = fs.mkdtempSync(path.join(base, 'vsnap-bench-clone-'));
  const samples = new Map<string, FioResult[]>();
  try {
    const pristine = path.join(work, 'pristine');
    await vsnap(['init', pristine, '--files', String(FILES), '--file-size', `${FILE_SIZE / MiB}MiB`, '--partitions', '4', '--workers', '2']);
    for (let i = 0; i < FILES; i++) fillImage(path.join(pristine, `disk-${i}.img`), FILE_SIZE, i + 1);
    for (let i = 0; i < runs; i++) {
      for (const w of ['randwrite', 'seqread'] as Workload[]) {
        // Alternate who goes first, run by run.
        for (const target of (i % 2 ? ['clone', 'live'] : ['live', 'clone']) as Target[]) {
          const dir = path.join(work, `${target}-${w}-${i}`);
          fs.mkdirSync(dir);
          const srv = await serveCopy(pristine, dir, target);
          let r;
          try {
            r = await runFio(job(w), srv.uri, dir);
          } finally {
            await srv.stop();
          }
          log(`clone run ${i + 1}/${runs} ${w} ${target}: ${r.mibps.toFixed(0)} MiB/s, ${r.iops.toFixed(0)} IOPS`);
          samples.set(`${w}|${target}`, [...(samples.get(`${w}|${target}`) ?? []), r]);
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const where = runs === 1 ? `${placeLabel(base)}, 1 run` : placeLabel(base);
  const rows: Row[] = [];
  const label: Record<Workload, string> = { randwrite: '4 KiB rand writes, QD32', seqread: '1 MiB seq reads, QD8' };
  for (const w of ['randwrite', 'seqread'] as Workload[]) {
    const unit = w === 'randwrite' ? 'IOPS' : 'MiB/s';
    const v = (t: Target) => samples.get(`${w}|${t}`)!.map((r) => (w === 'randwrite' ? r.iops : r.mibps));
    rows.push({ group: 'clone', what: `${label[w]}: live export, snapshot active (${where})`, ...spread(v('live')), unit });
    rows.push({ group: 'clone', what: `${label[w]}: clone export (${where})`, ...spread(v('clone')), unit });
    rows.push({ group: 'clone', what: `${label[w]}: clone / live (${where})`, ...spread(perRun(v('clone'), v('live'))), unit: 'ratio', goal: { op: '>=', target: 0.9 } });
  }
  return rows;
}
