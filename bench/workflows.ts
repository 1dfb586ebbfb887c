// Workflow benchmarks (design.md §10): `vsnap restore` after 1% of a 4 GiB
// volume changed, against copying pristine images back with cp; and `vsnap
// export` of a snapshot, against `qemu-img convert -f raw -O raw` of the same
// raw images. Both sides are timed until their output is durable (vsnap
// fsyncs before it exits; the peers get a `sync -d` of what they wrote), and
// the images hold real non-zero data so every copy moves real bytes.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { vsnap, must, have, median, mbps, alternate, spread, perRun, missing, type Row } from './lib.js';
import { fillImage } from './servers.js';

const MiB = 1 << 20;
const GiB = 1 << 30;
const FILES = 4;
const FILE_SIZE = GiB;
const VOLUME = FILES * FILE_SIZE;

interface Volume {
  manifest: string;
  images: string[];
  /** Copies of the images as they were before any change: cp's source. */
  pristine: string[];
}

// restore and export share one volume when both run (building it writes 8 GiB).
const volumes = new Map<string, Promise<Volume>>();

function volumeIn(dir: string): Promise<Volume> {
  let v = volumes.get(dir);
  if (!v) {
    v = buildVolume(dir);
    volumes.set(dir, v);
  }
  return v;
}

async function buildVolume(dir: string): Promise<Volume> {
  const volDir = path.join(dir, 'wf-vol');
  await vsnap(['init', volDir, '--files', String(FILES), '--file-size', '1GiB', '--partitions', '4', '--workers', '2']);
  const images = Array.from({ length: FILES }, (_, i) => path.join(volDir, `disk-${i}.img`));
  // Non-zero data before the first snapshot (no vsnap state yet, so writing
  // the files directly is not a write behind vsnap's back). Sparse images
  // would make cp and qemu-img skip holes and measure nothing.
  images.forEach((f, i) => fillImage(f, FILE_SIZE, 101 + i));
  const pdir = path.join(dir, 'wf-pristine');
  fs.mkdirSync(pdir);
  const pristine = images.map((f) => path.join(pdir, path.basename(f)));
  await must('cp', ['--sparse=never', '--reflink=never', ...images, pdir]);
  await must('sync', ['-f', pdir]);
  return { manifest: path.join(volDir, 'volume.json'), images, pristine };
}

/** Seeded PRNG (mulberry32), so each run's change set is reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * At least 1% of the volume in chunks of 64 KiB..1 MiB (4 KiB steps, so most chunks
 * start and end inside a 64 KiB copy-on-write block), one chunk placed at a
 * random spot in each of n equal slots: scattered over every file and
 * partition, never overlapping.
 */
function changeSet(seed: number): { offset: number; length: number }[] {
  const rnd = prng(seed);
  const target = Math.ceil(VOLUME / 100);
  const sizes: number[] = [];
  // Whole chunks until at least 1%: the total ends up a little over 1%.
  for (let total = 0; total < target; ) {
    const len = 64 * 1024 + Math.floor(rnd() * 241) * 4096;
    sizes.push(len);
    total += len;
  }
  const slot = Math.floor(VOLUME / sizes.length / 4096) * 4096;
  return sizes.map((len, i) => ({ offset: i * slot + Math.floor(rnd() * ((slot - len) / 4096)) * 4096, length: len }));
}

/**
 * Read files through the page cache, untimed. This VM reclaims cold page
 * cache proactively (kdamond), so images written minutes ago may have to come
 * back from disk; warming both sides' sources right before timing measures
 * the copies, not who happened to find its source cached.
 */
async function warm(files: string[]): Promise<void> {
  await must('sh', ['-c', 'cat "$@" > /dev/null', 'warm', ...files]);
}

/**
 * Cold mode: empty the page cache (root only) so both sides read from disk,
 * as they do when the images are larger than memory or long unused.
 */
async function dropCaches(): Promise<void> {
  await must('sync', []);
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
}

async function syncFiles(files: string[]): Promise<number> {
  return (await must('sync', ['-d', ...files])).ms;
}

export async function benchRestore(dir: string, runs: number, cold = false): Promise<Row[]> {
  const prepare = (files: string[]) => (cold ? dropCaches() : warm(files));
  const label = cold ? ' (cold cache)' : '';
  const v = await volumeIn(dir);
  const peerDir = path.join(dir, 'wf-cp');
  fs.mkdirSync(peerDir, { recursive: true });
  const t = { restore: [] as number[], cp: [] as number[], cpOnly: [] as number[], cpSync: [] as number[] };
  let restored = 0;
  let changed = 0;
  let chunks = 0;
  let prev: string | undefined;
  for (let i = 0; i < runs; i++) {
    // A fresh snapshot each run, so its change log holds only this run's 1%.
    if (prev) await vsnap(['delete', v.manifest, prev]);
    const snap = `restore-${cold ? "cold" : "warm"}-${i}`;
    await vsnap(['create', v.manifest, '--name', snap]);
    prev = snap;
    const set = changeSet(7 + i);
    chunks = set.length;
    changed = set.reduce((a, c) => a + c.length, 0);
    for (const c of set) await vsnap(['write', v.manifest, '--offset', String(c.offset)], { input: randomBytes(c.length) });
    await must('sync', ['-f', path.dirname(v.manifest)]);
    const peer = async () => {
      for (const f of fs.readdirSync(peerDir)) fs.rmSync(path.join(peerDir, f));
      await must('sync', ['-f', peerDir]);
      await prepare(v.pristine);
      // --sparse=never: write every byte (the data has no zero runs anyway);
      // --reflink=never: a real copy even where the filesystem could share.
      const c = await must('cp', ['--sparse=never', '--reflink=never', ...v.pristine, peerDir]);
      const sync = await syncFiles(v.pristine.map((f) => path.join(peerDir, path.basename(f))));
      t.cp.push(c.ms + sync);
      t.cpOnly.push(c.ms);
      t.cpSync.push(sync);
    };
    const ours = async () => {
      await prepare(v.images);
      const r = await vsnap(['restore', v.manifest, snap, '--json']);
      t.restore.push(r.ms);
      restored = (JSON.parse(r.stdout) as { restoredBytes: number }).restoredBytes;
    };
    await alternate(i, ours, peer);
  }
  fs.rmSync(peerDir, { recursive: true, force: true });
  return [
    { group: 'restore', what: `vsnap restore, ${(changed / MiB).toFixed(1)} MiB of 4 GiB changed (${chunks} chunks)${label}`, ...spread(t.restore), unit: 'ms', note: `whole CLI run; restored ${(restored / MiB).toFixed(1)} MiB (whole 64 KiB blocks)` },
    { group: 'restore', what: `cp --sparse=never of 4 x 1 GiB pristine images + sync -d${label}`, ...spread(t.cp), unit: 'ms', note: `peer: cp ${median(t.cpOnly).toFixed(0)} ms + sync ${median(t.cpSync).toFixed(0)} ms, source ${cold ? 'read from disk' : 'cached'}` },
    { group: 'restore', what: `cp time / vsnap restore time${label}`, ...spread(perRun(t.cp, t.restore)), unit: 'ratio', goal: { op: '>=', target: 20 } },
  ];
}

export async function benchExport(dir: string, runs: number): Promise<Row[]> {
  const v = await volumeIn(dir);
  // A fresh snapshot: its view reads every block from the images, the same
  // bytes qemu-img reads.
  await vsnap(['create', v.manifest, '--name', 'export-bench']);
  const out = path.join(dir, 'wf-export.raw');
  const t = { vsnap: [] as number[], qemu: [] as number[] };
  const qemu = have('qemu-img');
  const fresh = async () => {
    fs.rmSync(out, { force: true });
    await must('sync', ['-f', dir]);
  };
  for (let i = 0; i < runs; i++) {
    const ours = async () => {
      await fresh();
      await warm(v.images);
      const r = await vsnap(['export', v.manifest, 'export-bench', '--output', out]);
      t.vsnap.push(r.ms + (await syncFiles([out])));
      if (fs.statSync(out).size !== VOLUME) throw new Error(`vsnap export wrote ${fs.statSync(out).size} bytes, want ${VOLUME}`);
    };
    const peer = async () => {
      if (!qemu) return;
      await fresh();
      await warm(v.images);
      // Several sources are concatenated into one output, like the volume.
      const r = await must('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', ...v.images, out]);
      t.qemu.push(r.ms + (await syncFiles([out])));
      if (fs.statSync(out).size !== VOLUME) throw new Error(`qemu-img convert wrote ${fs.statSync(out).size} bytes, want ${VOLUME}`);
    };
    await alternate(i, ours, peer);
  }
  fs.rmSync(out, { force: true });
  await vsnap(['delete', v.manifest, 'export-bench']);
  const rate = (ms: number[]) => ms.map((x) => mbps(VOLUME, x));
  const rows: Row[] = [{ group: 'export', what: 'vsnap export <snap> --output, 4 GiB of data', ...spread(rate(t.vsnap)), unit: 'MiB/s', note: 'whole CLI run + sync -d of the output' }];
  const goal = { op: '>=', target: 1.0 } as const;
  if (!qemu) {
    rows.push(missing('export', 'qemu-img convert -f raw -O raw, 4 x 1 GiB', 'qemu-img not installed'));
    rows.push(missing('export', 'vsnap export / qemu-img convert', 'qemu-img not installed', goal));
    return rows;
  }
  rows.push(
    { group: 'export', what: 'qemu-img convert -f raw -O raw, 4 x 1 GiB -> 1 file', ...spread(rate(t.qemu)), unit: 'MiB/s', note: 'peer, + sync -d of the output' },
    { group: 'export', what: 'vsnap export / qemu-img convert', ...spread(perRun(rate(t.vsnap), rate(t.qemu))), unit: 'ratio', goal },
  );
  return rows;
}

/**
 * The CI loop of design §5: `pristine` taken once, then rounds of "a test
 * writes, restore pristine". Each restore of the newest snapshot should cost
 * what its round wrote, so the last rounds cost what the first did (before
 * the restored blocks left the log, round k rewrote all k rounds' blocks).
 */
export async function benchRestoreLoop(dir: string, rounds = 20): Promise<Row[]> {
  const vdir = path.join(dir, 'restore-loop');
  fs.rmSync(vdir, { recursive: true, force: true });
  await vsnap(['init', vdir, '--files', '4', '--file-size', '256MiB', '--partitions', '4', '--workers', '2']);
  const manifest = path.join(vdir, 'volume.json');
  await vsnap(['create', manifest, '--name', 'pristine']);
  const rnd = prng(99);
  const bytes: number[] = [];
  const ms: number[] = [];
  for (let i = 0; i < rounds; i++) {
    // Each round writes 4 MiB: four 1 MiB chunks at random 4 KiB-aligned places.
    for (let k = 0; k < 4; k++) {
      const off = Math.floor(rnd() * ((GiB - MiB) / 4096)) * 4096;
      await vsnap(['write', manifest, '--offset', String(off)], { input: randomBytes(MiB) });
    }
    const r = await vsnap(['restore', manifest, 'pristine', '--json']);
    ms.push(r.ms);
    bytes.push((JSON.parse(r.stdout) as { restoredBytes: number }).restoredBytes);
  }
  fs.rmSync(vdir, { recursive: true, force: true });
  const first = median(ms.slice(0, 5));
  const last = median(ms.slice(-5));
  return [
    { group: 'restore-loop', what: `restoredBytes per round, rounds 1 / ${rounds} / max (4 MiB written per round)`, value: bytes[rounds - 1] / MiB, unit: 'MiB', note: `round 1 ${(bytes[0] / MiB).toFixed(2)} MiB, max ${(Math.max(...bytes) / MiB).toFixed(2)} MiB: flat means O(this test)` },
    { group: 'restore-loop', what: `restore wall time, median of rounds 1-5 vs ${rounds - 4}-${rounds}`, value: last, min: Math.min(...ms), max: Math.max(...ms), unit: 'ms', note: `first rounds ${first.toFixed(0)} ms; min/max of all rounds` },
    { group: 'restore-loop', what: 'last rounds / first rounds restore time', value: last / first, unit: 'ratio', note: 'goal ~1.0 (flat)' },
  ];
}
