// Model-based tests of the address arithmetic in src/volume-map.ts. The model
// answers "where does volume byte x live?" one byte at a time by walking every
// partition and extent in order: slow and obviously right. Small layouts are
// compared byte by byte over whole ranges; layouts near 2^53 bytes are checked
// by sampling the ends and the middle of every piece and the bytes on either
// side of every cut, in BigInt so the model itself cannot lose precision.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  mapVolumeRange,
  mapPartitionRange,
  blockSpan,
  mergeRanges,
  extentStarts,
  volumeSize,
  type MapPartition,
  type MapExtent,
  type PartitionSegment,
  type FileSegment,
} from '../src/volume-map.js';

const MAX = Number.MAX_SAFE_INTEGER;

/** Partitions laid end to end from per-partition extent lengths. */
function build(lengths: number[][], workers: number[] = []): MapPartition[] {
  let at = 0;
  let fileNo = 0;
  return lengths.map((ls, i) => {
    // Varied file offsets, but offset + length stays within 2^53-1 as the manifest rules demand.
    const extents: MapExtent[] = ls.map((len) => ({ path: `f${fileNo++}`, offset: Math.min(512 * (fileNo % 7), MAX - len), length: len }));
    const length = ls.reduce((a, b) => a + b, 0);
    const p = { index: i, worker: workers[i] ?? i % 3, volumeOffset: at, length, extents };
    at += length;
    return p;
  });
}

interface ByteHome {
  partition: number;
  partOffset: number;
  extent: number;
  path: string;
  fileOffset: bigint;
}

/** The model: walk everything in order until volume byte x is found. */
function home(parts: readonly MapPartition[], x: bigint): ByteHome {
  let base = 0n;
  for (const p of parts) {
    let pbase = 0n;
    for (const [ei, e] of p.extents.entries()) {
      const len = BigInt(e.length);
      if (x < base + pbase + len) {
        const within = x - base - pbase;
        return { partition: p.index, partOffset: Number(pbase + within), extent: ei, path: e.path, fileOffset: BigInt(e.offset) + within };
      }
      pbase += len;
    }
    base += pbase;
  }
  throw new Error(`model: byte ${x} is past the end`);
}

/** Offsets inside a piece worth checking: both ends, the middle, and every byte when it is small. */
function samples(length: number): number[] {
  if (length <= 64) return Array.from({ length }, (_, i) => i);
  return [0, 1, Math.floor(length / 2), length - 2, length - 1];
}

/** Pieces must tile the request exactly, in order, with nothing empty. */
function assertTiles(pieces: { rangeOffset: number; length: number }[], length: number): void {
  let at = 0;
  for (const s of pieces) {
    assert.equal(s.rangeOffset, at);
    assert.ok(s.length > 0, 'empty piece');
    at += s.length;
  }
  assert.equal(at, length);
}

function checkVolumeRange(parts: MapPartition[], offset: number, length: number): PartitionSegment[] {
  const segs = mapVolumeRange(parts, offset, length);
  assertTiles(segs, length);
  for (const [i, s] of segs.entries()) {
    const p = parts[s.partition];
    assert.equal(s.worker, p.worker);
    for (const k of samples(s.length)) {
      const h = home(parts, BigInt(offset) + BigInt(s.rangeOffset + k));
      assert.equal(h.partition, s.partition);
      assert.equal(h.partOffset, s.partOffset + k);
    }
    // Pieces are maximal: the byte after a cut belongs to another partition.
    const next = segs[i + 1];
    if (next) assert.notEqual(next.partition, s.partition);
  }
  return segs;
}

function checkPartitionRange(p: MapPartition, partOffset: number, length: number): FileSegment[] {
  const segs = mapPartitionRange(p.extents, partOffset, length);
  assert.deepEqual(mapPartitionRange(p.extents, partOffset, length, extentStarts(p.extents)), segs);
  assertTiles(segs, length);
  for (const [i, s] of segs.entries()) {
    for (const k of samples(s.length)) {
      const h = home([{ ...p, index: 0, volumeOffset: 0 }], BigInt(partOffset) + BigInt(s.rangeOffset + k));
      assert.equal(h.extent, s.extent);
      assert.equal(h.path, s.path);
      assert.equal(h.fileOffset, BigInt(s.fileOffset) + BigInt(k));
    }
    const next = segs[i + 1];
    if (next) assert.notEqual(next.extent, s.extent);
  }
  return segs;
}

/** A layout and a range inside it. */
function layoutAndRange(layout: fc.Arbitrary<MapPartition[]>): fc.Arbitrary<{ parts: MapPartition[]; offset: number; length: number }> {
  return layout.chain((parts) => {
    const size = volumeSize(parts);
    // Bias towards cuts: ranges starting just before a partition or extent boundary.
    const cuts = parts.flatMap((p) => extentStarts(p.extents).map((s) => p.volumeOffset + s));
    const start = fc.oneof(
      fc.integer({ min: 0, max: size }),
      fc.constantFrom(...cuts).chain((c) => fc.integer({ min: Math.max(0, c - 3), max: Math.min(size, c + 3) })),
      fc.integer({ min: Math.max(0, size - 4096), max: size }),
    );
    return start.chain((offset) =>
      fc.oneof(fc.integer({ min: 0, max: size - offset }), fc.integer({ min: 0, max: Math.min(8, size - offset) })).map((length) => ({
        parts,
        offset,
        length,
      })),
    );
  });
}

/** Many small partitions of odd-sized extents (every byte can be checked). */
const smallLayout = fc
  .array(fc.array(fc.integer({ min: 1, max: 37 }), { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 24 })
  .map((ls) => build(ls));

/**
 * Big partitions, the volume ending within a few KiB of 2^53-1: the last
 * partition takes up what the others leave.
 */
const hugeLayout = fc
  .tuple(
    fc.array(fc.array(fc.integer({ min: 1, max: 2 ** 47 }), { minLength: 1, maxLength: 4 }), { minLength: 0, maxLength: 12 }),
    fc.array(fc.integer({ min: 1, max: 2 ** 40 }), { minLength: 0, maxLength: 3 }),
    fc.integer({ min: 0, max: 4096 }),
  )
  .map(([ls, lastHead, slack]) => {
    const used = ls.flat().reduce((a, b) => a + b, 0) + lastHead.reduce((a, b) => a + b, 0);
    return build([...ls, [...lastHead, MAX - used - slack]]);
  });

test('mapVolumeRange matches the byte model on small layouts, every byte', () => {
  fc.assert(
    fc.property(layoutAndRange(smallLayout), ({ parts, offset, length }) => {
      const segs = mapVolumeRange(parts, offset, length);
      // Materialise every byte both ways and compare.
      const got: string[] = [];
      for (const s of segs) for (let k = 0; k < s.length; k++) got.push(`${s.partition}:${s.partOffset + k}`);
      const want: string[] = [];
      for (let x = offset; x < offset + length; x++) {
        const h = home(parts, BigInt(x));
        want.push(`${h.partition}:${h.partOffset}`);
      }
      assert.deepEqual(got, want);
      checkVolumeRange(parts, offset, length);
    }),
    { numRuns: 400 },
  );
});

test('mapVolumeRange matches the byte model near 2^53 (sampled)', () => {
  fc.assert(
    fc.property(layoutAndRange(hugeLayout), ({ parts, offset, length }) => {
      assert.ok(volumeSize(parts) > MAX - 5000 && volumeSize(parts) <= MAX);
      checkVolumeRange(parts, offset, length);
    }),
    { numRuns: 400 },
  );
});

test('volume range -> partition range -> file range lands on the model byte', () => {
  for (const layout of [smallLayout, hugeLayout]) {
    fc.assert(
      fc.property(layoutAndRange(layout), ({ parts, offset, length }) => {
        for (const s of checkVolumeRange(parts, offset, length)) {
          const p = parts[s.partition];
          for (const f of checkPartitionRange(p, s.partOffset, s.length)) {
            for (const k of samples(f.length)) {
              const h = home(parts, BigInt(offset) + BigInt(s.rangeOffset + f.rangeOffset + k));
              assert.equal(h.path, f.path);
              assert.equal(h.fileOffset, BigInt(f.fileOffset + k));
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  }
});

test('mapPartitionRange matches the byte model, whole partitions included', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 2 ** 44 }), { minLength: 1, maxLength: 40 }),
      fc.integer({ min: 0, max: 1_000_000 }),
      fc.integer({ min: 0, max: 1_000_000 }),
      (ls, a, b) => {
        const [p] = build([ls]);
        checkPartitionRange(p, 0, p.length);
        const offset = a % (p.length + 1);
        checkPartitionRange(p, offset, b % (p.length - offset + 1));
      },
    ),
    { numRuns: 300 },
  );
});

test('ranges outside the volume or partition, negative or fractional, throw RangeError', () => {
  const parts = build([[512, 1024], [4096]]);
  const size = volumeSize(parts);
  for (const [o, l] of [
    [0, size + 1],
    [size, 1],
    [-1, 1],
    [0, -1],
    [1.5, 1],
    [0, 0.5],
    [MAX, 1],
    [Number.NaN, 1],
  ]) {
    assert.throws(() => mapVolumeRange(parts, o, l), RangeError, `volume ${o}+${l}`);
    assert.throws(() => mapPartitionRange(parts[0].extents, o, l), RangeError, `partition ${o}+${l}`);
  }
  // The very end is a valid empty range.
  assert.deepEqual(mapVolumeRange(parts, size, 0), []);
  assert.deepEqual(mapPartitionRange(parts[0].extents, 1536, 0), []);
});

test('blockSpan gives the first and last block holding a byte of the range', () => {
  // Byte by byte for small ranges, odd block sizes included.
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 1, max: 700 }), fc.integer({ min: 1, max: 600 }), (off, len, bs) => {
      const blocks = new Set<number>();
      for (let x = off; x < off + len; x++) blocks.add(Math.trunc(x / bs));
      const { first, last } = blockSpan(off, len, bs);
      assert.deepEqual([...blocks], Array.from({ length: last - first + 1 }, (_, i) => first + i));
    }),
    { numRuns: 500 },
  );
  // Near 2^53, against BigInt division, with the power-of-two block sizes
  // manifests allow and a few odd ones.
  fc.assert(
    fc.property(
      fc.bigInt({ min: 0n, max: BigInt(MAX) - 1n }),
      fc.bigInt({ min: 1n, max: 2n ** 40n }),
      fc.oneof(fc.integer({ min: 12, max: 22 }).map((e) => 2 ** e), fc.integer({ min: 1, max: 2 ** 30 })),
      (o, l, bs) => {
        const off = o;
        const len = l > BigInt(MAX) - off ? BigInt(MAX) - off : l;
        const { first, last } = blockSpan(Number(off), Number(len), bs);
        assert.equal(BigInt(first), off / BigInt(bs));
        assert.equal(BigInt(last), (off + len - 1n) / BigInt(bs));
      },
    ),
    { numRuns: 1000 },
  );
});

/** The model for mergeRanges: the set of covered bytes, read back as maximal runs. */
function mergeModel(ranges: { offset: number; length: number }[]): { offset: number; length: number }[] {
  const covered = new Set<number>();
  for (const r of ranges) for (let x = r.offset; x < r.offset + r.length; x++) covered.add(x);
  const xs = [...covered].sort((a, b) => a - b);
  const out: { offset: number; length: number }[] = [];
  for (const x of xs) {
    const last = out[out.length - 1];
    if (last && last.offset + last.length === x) last.length++;
    else out.push({ offset: x, length: 1 });
  }
  return out;
}

test('mergeRanges equals the covered-bytes model and leaves its input alone', () => {
  const range = fc.record({ offset: fc.integer({ min: 0, max: 300 }), length: fc.integer({ min: 0, max: 40 }) });
  fc.assert(
    fc.property(fc.array(range, { maxLength: 30 }), (ranges) => {
      const before = JSON.stringify(ranges);
      assert.deepEqual(mergeRanges(ranges), mergeModel(ranges));
      assert.equal(JSON.stringify(ranges), before, 'input was modified');
    }),
    { numRuns: 500 },
  );
});

test('mergeRanges near 2^53: sorted, apart, covering exactly the input (sampled)', () => {
  const range = fc
    .tuple(fc.integer({ min: MAX - 2 ** 40, max: MAX - 1 }), fc.integer({ min: 0, max: 2 ** 38 }))
    .map(([offset, l]) => ({ offset, length: Math.min(l, MAX - offset) }));
  fc.assert(
    fc.property(fc.array(range, { maxLength: 25 }), (ranges) => {
      const out = mergeRanges(ranges);
      const inAny = (x: number, rs: { offset: number; length: number }[]) => rs.some((r) => x >= r.offset && x < r.offset + r.length);
      for (const [i, r] of out.entries()) {
        assert.ok(r.length > 0);
        // Apart: a gap of at least one byte, or they would have been merged.
        if (i > 0) assert.ok(out[i - 1].offset + out[i - 1].length < r.offset);
        // Every output byte sampled is covered by some input, including the ends.
        for (const k of samples(r.length)) assert.ok(inAny(r.offset + k, ranges), `byte ${r.offset + k} is not in the input`);
        // The bytes just outside are not.
        if (r.offset > 0) assert.ok(!inAny(r.offset - 1, ranges));
        assert.ok(!inAny(r.offset + r.length, ranges));
      }
      // Every input range lies inside one output range.
      for (const r of ranges.filter((x) => x.length > 0)) {
        assert.ok(out.some((o) => r.offset >= o.offset && r.offset + r.length <= o.offset + o.length));
      }
    }),
    { numRuns: 500 },
  );
});
