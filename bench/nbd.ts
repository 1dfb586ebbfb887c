// NBD benchmarks (design.md §10): fio's nbd engine against `vsnap serve`
// (no snapshot, and with a snapshot active) and its peers nbdkit's file
// plugin, nbdkit's cow filter over the file plugin, and qemu-nbd, all on
// unix sockets, each on a fresh copy of the same bytes. Images live on tmpfs
// (the goal is stated there: it takes the disk out and leaves the servers'
// own costs), plus one run on disk to show what fdatasync and the page cache
// do to each. Goals (issue 11): with a snapshot active >= nbdkit-cow, with
// none >= qemu-nbd, on both workloads; ratios to nbdkit's file plugin are
// the distance to the ceiling.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { vsnap, have, spread, perRun, missing, type Goal, type Row } from './lib.js';
import { runFio, type FioJob, type FioResult } from './fio.js';
import { cowFilterMissing, freshCopy, makePristine, placeLabel, serveNbdkit, serveQemuNbd, serveVsnap, type Pristine, type Server } from './servers.js';

const MiB = 1 << 20;
// The vsnap volume: 2 files x 512 MiB, 4 partitions, 2 workers (1 GiB). The
// peers serve one raw file holding the same 1 GiB (the two files end to end).
const FILES = 2;
const FILE_SIZE = 512 * MiB;
const VOLUME = FILES * FILE_SIZE;
// Sequential: every 1 MiB of the volume written once, in order, so every
// copy-on-write block sees its first write after the snapshot. Depth 8 is
// what `qemu-img convert` keeps in flight by default (-m 8), the typical
// client that streams a whole image into an export.
const SEQ_DEPTH = 8;
// Random: a fixed amount of work, not a fixed time. With randrepeat the 65536
// offsets are the same for every server, so each does the same number of
// first writes (about 16k of 64 KiB copy-on-write blocks get their first
// write, ~25% of the writes) and the same number of later ones. A time-based
// run would let a faster server spend more of its run on cheap already-copied
// blocks, and the ratio would reward it twice. 256 MiB keeps the slowest
// servers at several seconds (steady on 2 cores) and the whole group inside
// its time budget.
const RAND_BYTES = 256 * MiB;
const RAND_DEPTH = 32;

type Workload = 'seq' | 'rand';
type ServerKey = 'vsnap' | 'vsnap-snap' | 'nbdkit-file' | 'nbdkit-cow' | 'qemu-nbd';

interface Peer {
  key: ServerKey;
  label: string;
  note: string;
  /** Why it cannot run here, or null. */
  missing: string | null;
  /** Start it on a fresh copy of the pristine images inside `dir`. */
  start(pristine: Pristine, dir: string): Promise<Server>;
}

type Result = FioResult;

async function startVsnap(pristine: Pristine, dir: string, snapshot: boolean): Promise<Server> {
  await freshCopy(pristine.volDir, dir);
  const manifest = path.join(dir, 'volume.json');
  if (snapshot) await vsnap(['create', manifest, '--name', 'base']);
  return serveVsnap(manifest);
}

async function startNbdkit(pristine: Pristine, dir: string, cow: boolean): Promise<Server> {
  const img = path.join(dir, 'peer.img');
  await freshCopy(pristine.raw, img);
  return serveNbdkit(img, path.join(dir, 'nbd.sock'), cow, dir);
}

async function startQemuNbd(pristine: Pristine, dir: string): Promise<Server> {
  const img = path.join(dir, 'peer.img');
  await freshCopy(pristine.raw, img);
  return serveQemuNbd(img, path.join(dir, 'nbd.sock'));
}

function peers(): Peer[] {
  const raw = 'peer: one raw 1 GiB file';
  return [
    { key: 'vsnap', label: 'vsnap serve, no snapshot', note: '2 files, 4 partitions, 2 workers', missing: null, start: (p, d) => startVsnap(p, d, false) },
    { key: 'vsnap-snap', label: 'vsnap serve, snapshot active', note: 'vsnap create before serving', missing: null, start: (p, d) => startVsnap(p, d, true) },
    { key: 'nbdkit-file', label: 'nbdkit file', note: `${raw}, no COW (ceiling)`, missing: have('nbdkit') ? null : 'nbdkit not installed', start: (p, d) => startNbdkit(p, d, false) },
    { key: 'nbdkit-cow', label: 'nbdkit --filter=cow file', note: `${raw}, 64 KiB COW overlay`, missing: cowFilterMissing(), start: (p, d) => startNbdkit(p, d, true) },
    { key: 'qemu-nbd', label: 'qemu-nbd -f raw', note: raw, missing: have('qemu-nbd') ? null : 'qemu-nbd not installed', start: (p, d) => startQemuNbd(p, d) },
  ];
}

function job(w: Workload): FioJob {
  if (w === 'seq') return { rw: 'write', bs: '1M', size: VOLUME, depth: SEQ_DEPTH };
  return { rw: 'randwrite', bs: '4k', size: VOLUME, ioSize: RAND_BYTES, depth: RAND_DEPTH };
}

type Samples = Map<string, Result[]>;

async function measure(base: string, runs: number, list: Peer[], samples: Samples, tag: string, log: (s: string) => void): Promise<void> {
  const work = fs.mkdtempSync(path.join(base, 'vsnap-bench-nbd-'));
  try {
    log(`nbd: preparing 1 GiB of images in ${work}`);
    const pristine = await makePristine(work, FILES, FILE_SIZE);
    const live = list.filter((p) => !p.missing);
    for (let i = 0; i < runs; i++) {
      for (const w of ['seq', 'rand'] as Workload[]) {
        // Rotate the order run by run so no server always goes first or
        // always follows the same neighbour (page cache, CPU frequency).
        const order = live.map((_, k) => live[(k + i) % live.length]);
        for (const p of order) {
          const dir = path.join(work, `${p.key}-${w}-${i}`);
          fs.mkdirSync(dir);
          const srv = await p.start(pristine, dir);
          let res: Result;
          try {
            res = await runFio(job(w), srv.uri, dir);
          } finally {
            await srv.stop();
          }
          log(`nbd ${tag} run ${i + 1}/${runs} ${w} ${p.key}: ${res.mibps.toFixed(0)} MiB/s, ${res.iops.toFixed(0)} IOPS`);
          const k = `${tag}|${w}|${p.key}`;
          samples.set(k, [...(samples.get(k) ?? []), res]);
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function rowsFor(tag: string, where: string, runs: number, list: Peer[], samples: Samples): Row[] {
  // §10 states the goals for images on tmpfs; elsewhere the ratio is context.
  const onTmpfs = where === 'tmpfs';
  const goal: Goal | undefined = onTmpfs ? { op: '>=', target: 1.0 } : undefined;
  const ref = onTmpfs ? '' : 'for reference (the goal is on tmpfs)';
  const rows: Row[] = [];
  const suffix = runs === 1 ? `${where}, 1 run` : where;
  const wl: Record<Workload, string> = {
    seq: `1 MiB seq first writes, QD${SEQ_DEPTH}`,
    rand: `4 KiB rand writes, QD${RAND_DEPTH}`,
  };
  for (const w of ['seq', 'rand'] as Workload[]) {
    // One number in the value column: MiB/s for the streaming workload,
    // IOPS for the random one; the other in the note (medians).
    const pick = (r: Result) => (w === 'seq' ? r.mibps : r.iops);
    const get = (key: ServerKey) => samples.get(`${tag}|${w}|${key}`) ?? [];
    for (const p of list) {
      const s = get(p.key);
      const what = `${wl[w]}: ${p.label} (${suffix})`;
      if (!s.length) {
        rows.push(missing('nbd', what, p.missing ?? 'not run'));
        continue;
      }
      const other = spread(s.map((r) => (w === 'seq' ? r.iops : r.mibps))).value;
      const otherText = w === 'seq' ? `${other.toFixed(0)} IOPS` : `${other.toFixed(1)} MiB/s`;
      rows.push({ group: 'nbd', what, ...spread(s.map(pick)), unit: w === 'seq' ? 'MiB/s' : 'IOPS', note: `${otherText}; ${p.note}` });
    }
    const ratio = (ours: ServerKey, theirs: ServerKey, what: string, g: Goal | undefined, note: string) => {
      const a = get(ours);
      const b = get(theirs);
      const label = `${wl[w]}: ${what} (${suffix})`;
      if (!a.length || !b.length) rows.push(missing('nbd', label, list.find((p) => p.key === (a.length ? theirs : ours))?.missing ?? 'not run', g));
      else rows.push({ group: 'nbd', what: label, ...spread(perRun(a.map(pick), b.map(pick))), unit: 'ratio', goal: g, note });
    };
    ratio('vsnap-snap', 'nbdkit-cow', 'vsnap+snapshot / nbdkit-cow', goal, ref);
    ratio('vsnap', 'qemu-nbd', 'vsnap no snapshot / qemu-nbd', goal, ref);
    ratio('vsnap-snap', 'nbdkit-file', 'vsnap+snapshot / nbdkit-file', undefined, 'distance to the ceiling');
    ratio('vsnap', 'nbdkit-file', 'vsnap no snapshot / nbdkit-file', undefined, 'distance to the ceiling');
    ratio('vsnap-snap', 'vsnap', 'vsnap+snapshot / vsnap no snapshot', undefined, 'cost of the snapshot');
  }
  return rows;
}

/**
 * `base`: where the tmpfs runs go (run.ts passes --dir, else /dev/shm). One
 * more run goes to os.tmpdir() on disk, unless that is the same filesystem.
 */
export async function benchNbd(base: string, runs: number): Promise<Row[]> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const list = peers();
  if (!have('fio')) {
    return list.map((p) => missing('nbd', `fio nbd engine: ${p.label}`, 'fio not installed'));
  }
  if (!fs.existsSync(base)) base = os.tmpdir();
  const samples: Samples = new Map();
  await measure(base, runs, list, samples, 'main', log);
  const rows = rowsFor('main', placeLabel(base), runs, list, samples);
  // The disk run, unless --dir already put the main runs on that filesystem.
  const disk = os.tmpdir();
  if (fs.statSync(disk).dev !== fs.statSync(base).dev) {
    await measure(disk, 1, list, samples, 'disk', log);
    rows.push(...rowsFor('disk', placeLabel(disk), 1, list, samples));
  }
  return rows;
}
