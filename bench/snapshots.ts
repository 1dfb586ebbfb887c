// Snapshot benchmarks (issue 3): create time flat in volume size beside
// qemu-img's internal qcow2 snapshots, vsnap write throughput with no
// snapshot / first overwrite / second overwrite beside dd, and a worker's
// peak RSS while logging a whole volume.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { vsnap, must, have, mbps, spread, perRun, type Row } from './lib.js';
import { loadManifest } from '../src/manifest/load.js';
import { Store } from '../src/store/store.js';
import { Cluster } from '../src/coordinator/cluster.js';

export async function benchCreate(dir: string, runs: number): Promise<Row[]> {
  const rows: Row[] = [];
  const sizes: [string, string][] = [
    ['1 GiB', '256MiB'],
    ['1 TiB', '256GiB'],
  ];
  const vs: Record<string, number[]> = {};
  const qs: Record<string, number[]> = {};
  const vols: Record<string, string> = {};
  const qcows: Record<string, string> = {};
  for (const [label, fileSize] of sizes) {
    const d = path.join(dir, `create-${label.replace(' ', '')}`);
    await vsnap(['init', d, '--files', '4', '--file-size', fileSize, '--partitions', '4', '--workers', '2']);
    vols[label] = path.join(d, 'volume.json');
    vs[label] = [];
    qs[label] = [];
    if (have('qemu-img')) {
      qcows[label] = path.join(d, 'peer.qcow2');
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', qcows[label], label === '1 GiB' ? '1G' : '1T']);
    }
  }
  // Alternate sizes and tools run by run.
  for (let i = 0; i < runs; i++) {
    for (const [label] of sizes) {
      vs[label].push((await vsnap(['create', vols[label], '--name', `b${i}`])).ms);
      if (qcows[label]) qs[label].push((await must('qemu-img', ['snapshot', '-c', `b${i}`, qcows[label]])).ms);
    }
  }
  for (const [label] of sizes) {
    rows.push({ group: 'create', what: `vsnap create, ${label} sparse volume`, ...spread(vs[label]), unit: 'ms', note: 'whole CLI run (fork workers, commit, exit)' });
    if (qcows[label]) rows.push({ group: 'create', what: `qemu-img snapshot -c, ${label} qcow2`, ...spread(qs[label]), unit: 'ms', note: 'peer' });
  }
  rows.push({ group: 'create', what: 'vsnap 1 TiB / 1 GiB', ...spread(perRun(vs['1 TiB'], vs['1 GiB'])), unit: 'ratio', goal: { op: '<=', target: 1.5 } });
  if (qcows['1 GiB']) rows.push({ group: 'create', what: 'qemu-img 1 TiB / 1 GiB', ...spread(perRun(qs['1 TiB'], qs['1 GiB'])), unit: 'ratio', note: 'peer' });
  const storeBytes = dirBytes(path.join(path.dirname(vols['1 TiB']), '.vsnap'));
  rows.push({ group: 'create', what: `store size after ${runs} snapshots of 1 TiB`, value: storeBytes / 1024, unit: 'KiB', note: 'no data copied' });
  return rows;
}

function dirBytes(d: string): number {
  let n = 0;
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    n += e.isDirectory() ? dirBytes(p) : fs.statSync(p).blocks * 512;
  }
  return n;
}

export async function benchWrite(dir: string, runs: number, mib: number): Promise<Row[]> {
  const bytes = mib << 20;
  const input = path.join(dir, 'write-input.bin');
  fs.writeFileSync(input, randomBytes(bytes));
  const t = { none: [] as number[], first: [] as number[], second: [] as number[], dd: [] as number[] };
  for (let i = 0; i < runs; i++) {
    const d = path.join(dir, `write-${i}`);
    // Files as large as the write, so one write covers a whole partition set.
    await vsnap(['init', d, '--files', '2', '--file-size', `${mib}MiB`, '--partitions', '4', '--workers', '2']);
    const m = path.join(d, 'volume.json');
    // Pre-fill so every run overwrites allocated blocks, like the dd peer.
    await vsnap(['write', m, '--offset', '0', '--input', input]);
    t.none.push((await vsnap(['write', m, '--offset', '0', '--input', input])).ms);
    await vsnap(['create', m, '--name', 'base']);
    t.first.push((await vsnap(['write', m, '--offset', '0', '--input', input])).ms);
    t.second.push((await vsnap(['write', m, '--offset', '0', '--input', input])).ms);
    if (have('dd')) {
      t.dd.push((await must('dd', [`if=${input}`, `of=${path.join(d, 'disk-0.img')}`, 'bs=8M', 'conv=notrunc,fdatasync', 'status=none'])).ms);
    }
    fs.rmSync(d, { recursive: true, force: true });
  }
  const rate = (ms: number[]) => ms.map((x) => mbps(bytes, x));
  const rows: Row[] = [
    { group: 'write', what: `vsnap write ${mib} MiB, no snapshot`, ...spread(rate(t.none)), unit: 'MiB/s', note: 'whole CLI run incl. flush' },
    { group: 'write', what: `vsnap write ${mib} MiB, first overwrite after snapshot`, ...spread(rate(t.first)), unit: 'MiB/s' },
    { group: 'write', what: `vsnap write ${mib} MiB, second overwrite`, ...spread(rate(t.second)), unit: 'MiB/s' },
    { group: 'write', what: 'first overwrite / no snapshot', ...spread(perRun(rate(t.first), rate(t.none))), unit: 'ratio', goal: { op: '>=', target: 0.5 } },
    { group: 'write', what: 'second overwrite / no snapshot', ...spread(perRun(rate(t.second), rate(t.none))), unit: 'ratio', goal: { op: '>=', target: 0.9 } },
  ];
  if (t.dd.length) rows.push({ group: 'write', what: `dd ${mib} MiB into one raw image (fdatasync)`, ...spread(rate(t.dd)), unit: 'MiB/s', note: 'peer: no COW, no workers' });
  fs.rmSync(input, { force: true });
  return rows;
}

export async function benchRss(dir: string, mib: number): Promise<Row[]> {
  const d = path.join(dir, 'rss');
  await vsnap(['init', d, '--files', '2', '--file-size', `${mib / 2}MiB`, '--partitions', '2', '--workers', '1', '--block-size', '4KiB']);
  const store = await Store.open(loadManifest(path.join(d, 'volume.json')), { command: 'bench', create: true });
  const cluster = await Cluster.start(store);
  try {
    await cluster.createSnapshot('base', null);
    const chunk = Buffer.alloc(8 << 20, 0x5a);
    for (let off = 0; off < store.volume.size; off += chunk.length) await cluster.write(off, chunk);
    const st = await cluster.status();
    const blocks = st.reduce((a, s) => a + s.partitions.reduce((x, p) => x + p.loggedBlocks, 0), 0);
    const maxRss = Math.max(...st.map((s) => s.maxRss));
    return [
      { group: 'memory', what: `worker peak RSS after logging ${blocks} blocks (${mib} MiB, 4 KiB blocks)`, value: maxRss / (1 << 20), unit: 'MiB', goal: { op: '<=', target: Number((150 + (16 * blocks) / (1 << 20)).toFixed(1)) }, note: '150 MiB + 16 bytes per logged block; one run, in-process (this build)' },
    ];
  } finally {
    await cluster.close();
    store.release();
    fs.rmSync(d, { recursive: true, force: true });
  }
}
