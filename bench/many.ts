// Many snapshots (design.md §10): cron keeps hundreds. Reading the oldest of
// 200 snapshots must run at >= 0.5x the speed of reading the newest; a read
// never costs a file read per snapshot per block. In-process (the coordinator
// API the CLI uses, with its forked workers) so 200 creates take seconds.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { vsnap, median, mbps, type Row } from './lib.js';
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
      tNew.push(await readAll(newest));
      tOld.push(await readAll(oldest));
    }
    const st = await cluster.status();
    const logged = st.reduce((a, s) => a + s.partitions.reduce((x, p) => x + p.loggedBlocks, 0), 0);
    const oldRate = mbps(size, median(tOld));
    const newRate = mbps(size, median(tNew));
    return [
      { group: 'many', what: `in-process create with ${count} snapshots (median)`, value: median(tCreate), unit: 'ms', note: 'freeze, prepare, commit, thaw' },
      { group: 'many', what: `read whole ${size >> 20} MiB volume as the newest of ${count}`, value: newRate, unit: 'MiB/s', note: `${logged} logged blocks in all` },
      { group: 'many', what: `read whole ${size >> 20} MiB volume as the oldest of ${count}`, value: oldRate, unit: 'MiB/s' },
      { group: 'many', what: 'oldest / newest', value: oldRate / newRate, unit: 'ratio', note: 'goal >= 0.5' },
    ];
  } finally {
    await cluster.close();
    store.release();
    fs.rmSync(d, { recursive: true, force: true });
  }
}
