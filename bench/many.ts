// Many snapshots (design.md §10): cron keeps hundreds. Reading the oldest of
// 200 snapshots must run at >= 0.8x the speed of reading the newest; a read
// never costs a file read per snapshot per block.
// - many: in-process (the coordinator API the CLI uses, with its forked
//   workers) so 200 creates take seconds; always this build's src/.
// - many-read: the same through `vsnap serve` and the snapshot exports (fio's
//   nbd engine), the volume built with the CLI under test (--vsnap), so an
//   older build can be measured too. Slower to build: 200 CLI creates.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { vsnap, have, mbps, spread, perRun, missing, type Row } from './lib.js';
import { runFio, type FioJob } from './fio.js';
import { exportUri, fillImage, placeLabel, serveVsnap } from './servers.js';
import { loadManifest } from '../src/manifest/load.js';
import { Store } from '../src/store/store.js';
import { Cluster } from '../src/coordinator/cluster.js';

export async function benchMany(dir: string, runs: number, count = 200): Promise<Row[]> {
  const d = path.join(dir, 'many');
  await vsnap(['init', d, '--files', '2', '--file-size', '128MiB', '--partitions', '4', '--workers', '2']);
  const store = await Store.open(loadManifest(path.join(d, 'volume.json')), { command: 'bench', create: true });
  const cluster = await Cluster.start(store);
  try {
    const size = store.volume.size;
    // Fill once so reads move real data, then between snapshots change 1 MiB
    // in scattered 64 KiB pieces, so every log holds blocks all over the volume.
    for (let off = 0; off < size; off += 8 << 20) await cluster.write(off, randomBytes(8 << 20));
    const tCreate: number[] = [];
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      await cluster.createSnapshot(`m${i}`, null);
      tCreate.push(performance.now() - t0);
      for (let k = 0; k < 16; k++) await cluster.write(Math.floor(Math.random() * (size / 65536)) * 65536, randomBytes(65536));
    }
    const ids = store.snapshots.map((s) => s.id);
    const oldest = ids[0];
    const newest = ids[ids.length - 1];
    const readAll = async (view: number) => {
      const t0 = performance.now();
      for (let off = 0; off < size; off += 8 << 20) await cluster.read(view, off, Math.min(8 << 20, size - off));
      return performance.now() - t0;
    };
    const tOld: number[] = [];
    const tNew: number[] = [];
    for (let r = 0; r < runs; r++) {
      // Alternate who goes first, run by run.
      if (r % 2) tOld.push(await readAll(oldest));
      tNew.push(await readAll(newest));
      if (!(r % 2)) tOld.push(await readAll(oldest));
    }
    const st = await cluster.status();
    const logged = st.reduce((a, s) => a + s.partitions.reduce((x, p) => x + p.loggedBlocks, 0), 0);
    const oldRate = tOld.map((t) => mbps(size, t));
    const newRate = tNew.map((t) => mbps(size, t));
    return [
      { group: 'many', what: `in-process create with ${count} snapshots`, ...spread(tCreate), unit: 'ms', note: 'freeze, prepare, commit, thaw; this build' },
      { group: 'many', what: `read whole ${size >> 20} MiB volume as the newest of ${count}`, ...spread(newRate), unit: 'MiB/s', note: `${logged} logged blocks in all; in-process` },
      { group: 'many', what: `read whole ${size >> 20} MiB volume as the oldest of ${count}`, ...spread(oldRate), unit: 'MiB/s', note: 'in-process' },
      { group: 'many', what: 'oldest / newest', ...spread(perRun(oldRate, newRate)), unit: 'ratio', goal: { op: '>=', target: 0.8 } },
    ];
  } finally {
    await cluster.close();
    store.release();
    fs.rmSync(d, { recursive: true, force: true });
  }
}

const MANY_FILE = 128 << 20;
const MANY_VOLUME = 2 * MANY_FILE;

/** 200 snapshots through `vsnap serve`, 16 scattered 64 KiB blocks rewritten between each two; then oldest vs newest read through their exports. */
export async function benchManyRead(base: string, runs: number, count = 200): Promise<Row[]> {
  if (!have('fio')) return [missing('many-read', `oldest / newest of ${count} snapshots`, 'fio not installed', { op: '>=', target: 0.8 })];
  if (!fs.existsSync(base)) base = os.tmpdir();
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const where = placeLabel(base);
  const work = fs.mkdtempSync(path.join(base, 'vsnap-bench-many-'));
  const jobs: Record<'seq' | 'rand', FioJob> = {
    seq: { rw: 'read', bs: '1M', size: MANY_VOLUME, depth: 8 },
    rand: { rw: 'randread', bs: '4k', size: MANY_VOLUME, ioSize: 64 << 20, depth: 32 },
  };
  const t = new Map<string, number[]>();
  try {
    const d = path.join(work, 'vol');
    await vsnap(['init', d, '--files', '2', '--file-size', `${MANY_FILE >> 20}MiB`, '--partitions', '4', '--workers', '2']);
    for (let i = 0; i < 2; i++) fillImage(path.join(d, `disk-${i}.img`), MANY_FILE, 21 + i);
    const manifest = path.join(d, 'volume.json');
    log(`many-read: building ${count} snapshots in ${d}`);
    let srv = await serveVsnap(manifest);
    try {
      for (let i = 0; i < count; i++) {
        // create goes to the running server over its control socket.
        await vsnap(['create', manifest, '--name', `m${i}`]);
        // 16 distinct 64 KiB blocks (fio's random map), a different set each time.
        await runFio({ rw: 'randwrite', bs: '64k', size: MANY_VOLUME, ioSize: 1 << 20, depth: 4, seed: 1000 + i }, exportUri(srv.socket, 'live'), work);
        if ((i + 1) % 50 === 0) log(`many-read: ${i + 1}/${count} snapshots`);
      }
    } finally {
      await srv.stop();
    }
    // A fresh server: reads see the catalogue as a restarted server loads it.
    srv = await serveVsnap(manifest);
    try {
      const ends = { oldest: 'snapshot/m0', newest: `snapshot/m${count - 1}` };
      for (let r = 0; r < runs; r++) {
        for (const w of ['seq', 'rand'] as const) {
          for (const e of (r % 2 ? ['oldest', 'newest'] : ['newest', 'oldest']) as (keyof typeof ends)[]) {
            const res = await runFio(jobs[w], exportUri(srv.socket, ends[e]), work);
            const v = w === 'seq' ? res.mibps : res.iops;
            log(`many-read run ${r + 1}/${runs} ${w} ${e}: ${v.toFixed(0)} ${w === 'seq' ? 'MiB/s' : 'IOPS'}`);
            t.set(`${w}|${e}`, [...(t.get(`${w}|${e}`) ?? []), v]);
          }
        }
      }
    } finally {
      await srv.stop();
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const suffix = runs === 1 ? `${where}, 1 run` : where;
  const rows: Row[] = [];
  const label = { seq: `1 MiB seq reads of the whole ${MANY_VOLUME >> 20} MiB, QD8`, rand: '4 KiB rand reads (64 MiB, fixed set), QD32' };
  for (const w of ['seq', 'rand'] as const) {
    const unit = w === 'seq' ? 'MiB/s' : 'IOPS';
    const newest = t.get(`${w}|newest`)!;
    const oldest = t.get(`${w}|oldest`)!;
    rows.push({ group: 'many-read', what: `${label[w]}: newest of ${count} snapshots (${suffix})`, ...spread(newest), unit, note: 'snapshot export through vsnap serve' });
    rows.push({ group: 'many-read', what: `${label[w]}: oldest of ${count} snapshots (${suffix})`, ...spread(oldest), unit });
    rows.push({ group: 'many-read', what: `${label[w]}: oldest / newest (${suffix})`, ...spread(perRun(oldest, newest)), unit: 'ratio', goal: { op: '>=', target: 0.8 } });
  }
  return rows;
}
