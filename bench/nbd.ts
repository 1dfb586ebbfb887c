// NBD benchmarks (design.md §10): fio's nbd engine against `vsnap serve`
// (no snapshot, and with a snapshot active) and its peers nbdkit's file
// plugin, nbdkit's cow filter over the file plugin, and qemu-nbd, all on
// unix sockets, each on a fresh copy of the same bytes. Images live on tmpfs
// (the goal is stated there: it takes the disk out and leaves the servers'
// own costs), plus one run on disk to show what fdatasync and the page cache
// do to each.
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { VSNAP, must, run, vsnap, have, median, type Row } from './lib.js';

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
const FIO_TIMEOUT_S = 300;

type Workload = 'seq' | 'rand';
type ServerKey = 'vsnap' | 'vsnap-snap' | 'nbdkit-file' | 'nbdkit-cow' | 'qemu-nbd';

interface Server {
  uri: string;
  stop(): Promise<void>;
}

interface Peer {
  key: ServerKey;
  label: string;
  note: string;
  /** Why it cannot run here, or null. */
  missing: string | null;
  /** Start it on a fresh copy of the pristine images inside `dir`. */
  start(pristine: Pristine, dir: string): Promise<Server>;
}

interface Pristine {
  /** Directory holding volume.json and disk-*.img for vsnap. */
  volDir: string;
  /** One raw file with the same bytes, for the peers. */
  raw: string;
}

interface Result {
  mibps: number;
  iops: number;
}

function fsType(dir: string): string {
  const r = spawnSync('findmnt', ['-no', 'FSTYPE', '-T', dir], { encoding: 'utf8' });
  // Stacked mounts (two tmpfs on /dev/shm here) print one line each; take the first.
  return r.status === 0 ? r.stdout.trim().split('\n')[0] : 'unknown';
}

function placeLabel(dir: string): string {
  const t = fsType(dir);
  return t === 'tmpfs' ? 'tmpfs' : `disk, ${t}`;
}

/** Deterministic non-zero filler: 4 MiB of xorshift output, each 4 KiB stamped with its offset so no two blocks are equal. */
export function fillImage(file: string, size: number, seed: number): void {
  const chunk = Buffer.allocUnsafe(4 * MiB);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < chunk.length; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    chunk.writeUInt32LE(x, i);
  }
  const fd = fs.openSync(file, 'w');
  try {
    for (let off = 0; off < size; off += chunk.length) {
      for (let b = 0; b < chunk.length; b += 4096) chunk.writeDoubleLE(off + b + seed * 0.5, b);
      fs.writeSync(fd, chunk, 0, Math.min(chunk.length, size - off), off);
    }
  } finally {
    fs.closeSync(fd);
  }
}

async function makePristine(dir: string): Promise<Pristine> {
  const volDir = path.join(dir, 'pristine-vol');
  await vsnap(['init', volDir, '--files', String(FILES), '--file-size', `${FILE_SIZE / MiB}MiB`, '--partitions', '4', '--workers', '2']);
  // Real data in the images: a first write after the snapshot then copies real
  // old bytes, and tmpfs pages already exist, for vsnap and peers alike.
  for (let i = 0; i < FILES; i++) fillImage(path.join(volDir, `disk-${i}.img`), FILE_SIZE, i + 1);
  const raw = path.join(dir, 'pristine-peer.img');
  await must('sh', ['-c', 'cat "$@" > "$0"', raw, ...Array.from({ length: FILES }, (_, i) => path.join(volDir, `disk-${i}.img`))]);
  if (fs.statSync(raw).size !== VOLUME) throw new Error(`peer image is ${fs.statSync(raw).size} bytes, want ${VOLUME}`);
  return { volDir, raw };
}

/** A real copy (no reflink, no holes), then the filesystem synced so dirty pages of the copy do not flush during the measurement. */
async function freshCopy(src: string, dest: string): Promise<void> {
  const isDir = fs.statSync(src).isDirectory();
  await must('cp', ['-r', '--sparse=never', '--reflink=never', isDir ? `${src}/.` : src, dest]);
  await must('sync', ['-f', isDir ? dest : path.dirname(dest)]);
}

function waitExit(child: ChildProcess, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | 'timeout'> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve('timeout'), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal });
    });
  });
}

/** SIGTERM, then insist that it exits by itself (a server that needs SIGKILL is reported). */
async function stopChild(child: ChildProcess, name: string, stderr: () => string, wantZero: boolean): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited early (${child.exitCode ?? child.signalCode}): ${stderr().slice(-1500)}`);
  child.kill('SIGTERM');
  const r = await waitExit(child, 20_000);
  if (r === 'timeout') {
    child.kill('SIGKILL');
    await waitExit(child, 5_000);
    throw new Error(`${name} did not exit within 20 s of SIGTERM: ${stderr().slice(-1500)}`);
  }
  if (wantZero && r.code !== 0) throw new Error(`${name} exited ${r.code ?? r.signal} after SIGTERM: ${stderr().slice(-1500)}`);
}

function spawnServer(cmd: string, args: string[], env: Record<string, string> = {}): { child: ChildProcess; out: () => string; err: () => string } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', ...env } });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (err += d));
  return { child, out: () => out, err: () => err };
}

/** Poll until the socket accepts a connection (nbdkit, qemu-nbd -t: a probe that hangs up is harmless). */
async function waitForSocket(sock: string, child: ChildProcess, name: string, err: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited before listening: ${err().slice(-1500)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(sock);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${name} did not listen on ${sock} within 30 s`);
}

async function startVsnap(pristine: Pristine, dir: string, snapshot: boolean): Promise<Server> {
  await freshCopy(pristine.volDir, dir);
  const manifest = path.join(dir, 'volume.json');
  if (snapshot) await vsnap(['create', manifest, '--name', 'base']);
  const s = spawnServer(process.execPath, [VSNAP, 'serve', manifest]);
  // Without --run, serve prints its URI on stdout once it is listening.
  const deadline = Date.now() + 30_000;
  while (!/^nbd/m.test(s.out())) {
    if (s.child.exitCode !== null) throw new Error(`vsnap serve exited ${s.child.exitCode}: ${s.err().slice(-1500)}`);
    if (Date.now() > deadline) {
      s.child.kill('SIGKILL');
      throw new Error('vsnap serve printed no URI within 30 s');
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const uri = s.out().split('\n').find((l) => l.startsWith('nbd'))!.trim();
  return { uri, stop: () => stopChild(s.child, 'vsnap serve', s.err, true) };
}

async function startNbdkit(pristine: Pristine, dir: string, cow: boolean): Promise<Server> {
  const img = path.join(dir, 'peer.img');
  await freshCopy(pristine.raw, img);
  const sock = path.join(dir, 'nbd.sock');
  // -f: stay in the foreground so SIGTERM reaches it; --exit-with-parent: no
  // stray server if the bench dies. The cow overlay goes to $TMPDIR
  // (/var/tmp by default): point it at the same filesystem as the images,
  // like vsnap's change logs beside its volume.
  const args = ['-U', sock, '-f', '--exit-with-parent', ...(cow ? ['--filter=cow'] : []), 'file', `file=${img}`];
  const s = spawnServer('nbdkit', args, cow ? { TMPDIR: dir } : {});
  try {
    await waitForSocket(sock, s.child, 'nbdkit', s.err);
  } catch (e) {
    s.child.kill('SIGKILL');
    throw e;
  }
  return { uri: `nbd+unix:///?socket=${sock}`, stop: () => stopChild(s.child, 'nbdkit', s.err, true) };
}

async function startQemuNbd(pristine: Pristine, dir: string): Promise<Server> {
  const img = path.join(dir, 'peer.img');
  await freshCopy(pristine.raw, img);
  const sock = path.join(dir, 'nbd.sock');
  // -t (persistent): without it qemu-nbd exits when the first client (our
  // readiness probe) hangs up. Default cache mode (writeback), like nbdkit.
  const s = spawnServer('qemu-nbd', ['-k', sock, '-f', 'raw', '-t', img]);
  try {
    await waitForSocket(sock, s.child, 'qemu-nbd', s.err);
  } catch (e) {
    s.child.kill('SIGKILL');
    throw e;
  }
  return { uri: `nbd+unix:///?socket=${sock}`, stop: () => stopChild(s.child, 'qemu-nbd', s.err, true) };
}

function cowFilterMissing(): string | null {
  if (!have('nbdkit')) return 'nbdkit not installed';
  const r = spawnSync('nbdkit', ['--filter=cow', 'file', '--dump-plugin'], { stdio: 'ignore' });
  return r.status === 0 ? null : 'nbdkit cow filter not installed';
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

function fioArgs(w: Workload, uri: string): string[] {
  const common = ['--name=bench', '--ioengine=nbd', `--uri=${uri}`, '--output-format=json'];
  if (w === 'seq') return [...common, '--rw=write', '--bs=1M', `--size=${VOLUME}`, `--iodepth=${SEQ_DEPTH}`];
  return [...common, '--rw=randwrite', '--bs=4k', `--size=${VOLUME}`, `--io_size=${RAND_BYTES}`, `--iodepth=${RAND_DEPTH}`, '--randrepeat=1'];
}

async function runFio(w: Workload, uri: string, cwd: string): Promise<Result> {
  // timeout(1): a server that stops answering must not hang the bench.
  const r = await run('timeout', [String(FIO_TIMEOUT_S), 'fio', ...fioArgs(w, uri)], { cwd });
  if (r.code !== 0) throw new Error(`fio (${w}) on ${uri} exited ${r.code}: ${(r.stderr + r.stdout).slice(-2000)}`);
  // The nbd engine prints "fio: connected to NBD server" before the JSON.
  const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: { error: number; write: { io_bytes: number; bw_bytes: number; iops: number } }[] };
  const job = j.jobs[0];
  const want = w === 'seq' ? VOLUME : RAND_BYTES;
  if (job.error !== 0 || job.write.io_bytes !== want) throw new Error(`fio (${w}) on ${uri}: error ${job.error}, wrote ${job.write.io_bytes} of ${want} bytes`);
  return { mibps: job.write.bw_bytes / MiB, iops: job.write.iops };
}

type Samples = Map<string, Result[]>;

async function measure(base: string, runs: number, list: Peer[], samples: Samples, tag: string, log: (s: string) => void): Promise<void> {
  const work = fs.mkdtempSync(path.join(base, 'vsnap-bench-nbd-'));
  try {
    log(`nbd: preparing 1 GiB of images in ${work}`);
    const pristine = await makePristine(work);
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
            res = await runFio(w, srv.uri, dir);
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
  // §10 states the goal for images on tmpfs; elsewhere the ratio is context.
  const goal = where === 'tmpfs' ? 'goal >= 1.0' : 'for reference (goal is on tmpfs)';
  const rows: Row[] = [];
  const med = (w: Workload, key: ServerKey): Result | undefined => {
    const s = samples.get(`${tag}|${w}|${key}`);
    return s?.length ? { mibps: median(s.map((x) => x.mibps)), iops: median(s.map((x) => x.iops)) } : undefined;
  };
  const suffix = runs === 1 ? `${where}, 1 run` : where;
  const wl: Record<Workload, string> = {
    seq: `1 MiB seq first writes, QD${SEQ_DEPTH}`,
    rand: `4 KiB rand writes, QD${RAND_DEPTH}`,
  };
  for (const w of ['seq', 'rand'] as Workload[]) {
    for (const p of list) {
      const r = med(w, p.key);
      const what = `${wl[w]}: ${p.label} (${suffix})`;
      if (!r) {
        rows.push({ group: 'nbd', what, value: NaN, unit: 'missing', note: p.missing ?? 'not run' });
        continue;
      }
      // One number in the value column, the other in the note: MiB/s for
      // the streaming workload, IOPS for the random one.
      if (w === 'seq') rows.push({ group: 'nbd', what, value: r.mibps, unit: 'MiB/s', note: `${r.iops.toFixed(0)} IOPS; ${p.note}` });
      else rows.push({ group: 'nbd', what, value: r.iops, unit: 'IOPS', note: `${r.mibps.toFixed(1)} MiB/s; ${p.note}` });
    }
    const snap = med(w, 'vsnap-snap');
    const ratio = (key: ServerKey, what: string, note: string) => {
      const o = med(w, key);
      if (!snap || !o) rows.push({ group: 'nbd', what: `${wl[w]}: ${what} (${suffix})`, value: NaN, unit: 'missing', note: list.find((p) => p.key === key)?.missing ?? 'not run' });
      else rows.push({ group: 'nbd', what: `${wl[w]}: ${what} (${suffix})`, value: snap.mibps / o.mibps, unit: 'ratio', note });
    };
    ratio('nbdkit-cow', 'vsnap+snapshot / nbdkit-cow', goal);
    ratio('nbdkit-file', 'vsnap+snapshot / nbdkit-file', 'distance to the ceiling');
    ratio('vsnap', 'vsnap+snapshot / vsnap no snapshot', 'cost of the snapshot');
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
    return list.map((p) => ({ group: 'nbd', what: `fio nbd engine: ${p.label}`, value: NaN, unit: 'missing', note: 'fio not installed' }));
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
