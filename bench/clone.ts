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
import { spawn, type ChildProcess } from 'node:child_process';
import { VSNAP, have, must, median, run, vsnap, type Row } from './lib.js';
import { fillImage } from './nbd.js';

const MiB = 1 << 20;
const FILES = 2;
const FILE_SIZE = 256 * MiB;
const VOLUME = FILES * FILE_SIZE;
const RAND_BYTES = 64 * MiB;

type Workload = 'randwrite' | 'seqread';
type Target = 'live' | 'clone';

function fioArgs(w: Workload, uri: string): string[] {
  const common = ['--name=bench', '--ioengine=nbd', `--uri=${uri}`, '--output-format=json', `--size=${VOLUME}`];
  if (w === 'randwrite') return [...common, '--rw=randwrite', '--bs=4k', `--io_size=${RAND_BYTES}`, '--iodepth=32', '--randrepeat=1'];
  return [...common, '--rw=read', '--bs=1M', '--iodepth=8'];
}

async function fio(w: Workload, uri: string, cwd: string): Promise<{ mibps: number; iops: number }> {
  const r = await run('timeout', ['300', 'fio', ...fioArgs(w, uri)], { cwd });
  if (r.code !== 0) throw new Error(`fio (${w}) on ${uri} exited ${r.code}: ${(r.stderr + r.stdout).slice(-2000)}`);
  const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: { error: number; read: { bw_bytes: number; iops: number }; write: { bw_bytes: number; iops: number } }[] };
  const side = w === 'randwrite' ? j.jobs[0].write : j.jobs[0].read;
  if (j.jobs[0].error !== 0) throw new Error(`fio (${w}) on ${uri}: error ${j.jobs[0].error}`);
  return { mibps: side.bw_bytes / MiB, iops: side.iops };
}

/** Serve a fresh copy with snapshot `base` and clone `bench`; resolves with the export URI asked for. */
async function serveCopy(pristine: string, dir: string, target: Target): Promise<{ uri: string; stop: () => Promise<void> }> {
  await must('cp', ['-r', '--sparse=never', '--reflink=never', `${pristine}/.`, dir]);
  await must('sync', ['-f', dir]);
  const manifest = path.join(dir, 'volume.json');
  await vsnap(['create', manifest, '--name', 'base']);
  await vsnap(['clone', 'create', manifest, 'base', 'bench']);
  const child: ChildProcess = spawn(process.execPath, [VSNAP, 'serve', manifest], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (err += d));
  const deadline = Date.now() + 30_000;
  while (!/^nbd/m.test(out)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`vsnap serve did not start: ${err.slice(-1500)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const socket = /socket=(\S+)/.exec(out)![1];
  const uri = target === 'live' ? `nbd+unix:///live?socket=${socket}` : `nbd+unix:///clone/bench?socket=${socket}`;
  return {
    uri,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      if (child.exitCode !== 0) throw new Error(`vsnap serve exited ${child.exitCode}: ${err.slice(-1500)}`);
    },
  };
}

export async function benchClone(base: string, runs: number): Promise<Row[]> {
  if (!have('fio')) return [{ group: 'clone', what: 'fio nbd engine: clone vs live', value: NaN, unit: 'missing', note: 'fio not installed' }];
  if (!fs.existsSync(base)) base = os.tmpdir();
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const work = fs.mkdtempSync(path.join(base, 'vsnap-bench-clone-'));
  const samples = new Map<string, { mibps: number; iops: number }[]>();
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
            r = await fio(w, srv.uri, dir);
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
  const where = base.startsWith('/dev/shm') ? 'tmpfs' : 'disk';
  const rows: Row[] = [];
  const label: Record<Workload, string> = { randwrite: '4 KiB rand writes, QD32', seqread: '1 MiB seq reads, QD8' };
  for (const w of ['randwrite', 'seqread'] as Workload[]) {
    const med = (t: Target) => {
      const s = samples.get(`${w}|${t}`)!;
      return { mibps: median(s.map((x) => x.mibps)), iops: median(s.map((x) => x.iops)) };
    };
    const live = med('live');
    const clone = med('clone');
    const unit = w === 'randwrite' ? 'IOPS' : 'MiB/s';
    const v = (r: { mibps: number; iops: number }) => (w === 'randwrite' ? r.iops : r.mibps);
    rows.push({ group: 'clone', what: `${label[w]}: live export, snapshot active (${where})`, value: v(live), unit });
    rows.push({ group: 'clone', what: `${label[w]}: clone export (${where})`, value: v(clone), unit });
    rows.push({ group: 'clone', what: `${label[w]}: clone / live (${where})`, value: clone.mibps / live.mibps, unit: 'ratio', note: 'goal >= 0.9' });
  }
  return rows;
}
