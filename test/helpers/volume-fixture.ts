// A small test volume with deliberately awkward geometry: partitions that
// span files, extents in non-file order, and unmapped gaps in every backing
// file that vsnap must never touch. The model of the live volume is built by
// reading the backing files directly, never through vsnap.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

export interface FixtureExtent {
  file: string;
  offset: number;
  length: number;
}

export interface Fixture {
  dir: string;
  manifest: string;
  blockSize: number;
  size: number;
  partitions: { id: string; worker: number; extents: FixtureExtent[] }[];
  /** Initial contents of each backing file. */
  initial: Map<string, Buffer>;
}

export function makeFixture(dir: string, opts: { blockSize?: number; scale?: number; name?: string } = {}): Fixture {
  const bs = opts.blockSize ?? 4096;
  const k = opts.scale ?? 1; // blocks per unit
  const u = bs * k;
  // Three files with gaps: a is 10u, b is 9u, c is 7u.
  const files: Record<string, number> = { 'a.img': 10 * u, 'b.img': 9 * u, 'c.img': 7 * u };
  const partitions = [
    // p0: a[0,3u) — one extent.
    { id: 'p0', worker: 0, extents: [{ file: 'a.img', offset: 0, length: 3 * u }] },
    // p1: b[1u,4u) + a[4u,6u) — spans two files, not block aligned inside (512-byte multiples only).
    {
      id: 'p1',
      worker: 1,
      extents: [
        { file: 'b.img', offset: u, length: 3 * u - 512 * 3 },
        { file: 'a.img', offset: 4 * u, length: 2 * u + 512 * 3 },
      ],
    },
    // p2: c[0,2u) + b[5u,8u) + a[7u,9u) — three files.
    {
      id: 'p2',
      worker: 0,
      extents: [
        { file: 'c.img', offset: 0, length: 2 * u },
        { file: 'b.img', offset: 5 * u, length: 3 * u },
        { file: 'a.img', offset: 7 * u, length: 2 * u },
      ],
    },
    // p3: c[3u,6u) on a third worker.
    { id: 'p3', worker: 2, extents: [{ file: 'c.img', offset: 3 * u, length: 3 * u }] },
  ];
  const initial = new Map<string, Buffer>();
  for (const [f, size] of Object.entries(files)) {
    const b = randomBytes(size);
    fs.writeFileSync(path.join(dir, f), b);
    initial.set(f, b);
  }
  const manifest = path.join(dir, 'volume.json');
  fs.writeFileSync(manifest, JSON.stringify({ name: opts.name ?? 'model', blockSize: bs, partitions }, null, 2));
  const size = partitions.reduce((a, p) => a + p.extents.reduce((x, e) => x + e.length, 0), 0);
  return { dir, manifest, blockSize: bs, size, partitions, initial };
}

/** The live volume as the backing files hold it, by the manifest's mapping. */
export function liveFromFiles(f: Fixture): Buffer {
  const out = Buffer.alloc(f.size);
  let pos = 0;
  const cache = new Map<string, Buffer>();
  for (const p of f.partitions) {
    for (const e of p.extents) {
      let data = cache.get(e.file);
      if (!data) {
        data = fs.readFileSync(path.join(f.dir, e.file));
        cache.set(e.file, data);
      }
      data.copy(out, pos, e.offset, e.offset + e.length);
      pos += e.length;
    }
  }
  return out;
}

/** Bytes of the backing files outside every extent must equal the initial contents. */
export function checkGapsUntouched(f: Fixture): string | undefined {
  for (const [file, init] of f.initial) {
    const now = fs.readFileSync(path.join(f.dir, file));
    if (now.length !== init.length) return `${file} changed size ${init.length} -> ${now.length}`;
    const mapped = new Uint8Array(init.length);
    for (const p of f.partitions) for (const e of p.extents) if (e.file === file) mapped.fill(1, e.offset, e.offset + e.length);
    for (let i = 0; i < init.length; i++) {
      if (!mapped[i] && now[i] !== init[i]) return `${file} byte ${i} outside the mapping changed`;
    }
  }
  return undefined;
}

/** Deterministic PRNG (mulberry32) so a failing seed can be replayed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
