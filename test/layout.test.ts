// Unit tests of the pure manifest planning (src/manifest/layout.ts) and the
// demo planner of `vsnap init` (src/commands/init.ts): plain objects in,
// plain objects out, no file system.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fc from 'fast-check';
import { planLayout, mappingOf, fingerprintOf, describeMappingChange, DEFAULT_BLOCK_SIZE, type NormalizedMapping } from '../src/manifest/layout.js';
import { manifestSchema, type RawManifest } from '../src/manifest/schema.js';
import { sysfsBlockPath } from '../src/manifest/load.js';
import { planDemo, manifestText } from '../src/commands/init.js';
import { parseSize } from '../src/size.js';
import { UsageError } from '../src/errors.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function raw(over: Partial<RawManifest> = {}): RawManifest {
  return {
    name: 'v',
    blockSize: 64 * KiB,
    partitions: [
      { id: 'boot', worker: 0, extents: [{ file: 'a.img', length: 256 * KiB }] },
      {
        id: 'data',
        worker: 1,
        extents: [
          { file: 'b.img', offset: 0, length: MiB },
          { file: 'a.img', offset: 256 * KiB, length: 768 * KiB },
        ],
      },
    ],
    ...over,
  };
}

test('planLayout: partitions end to end, defaults for block size and store, absolute paths', () => {
  const { volume, issues } = planLayout(raw({ blockSize: undefined }), '/vols/m.json');
  assert.deepEqual(issues, []);
  assert.ok(volume);
  assert.equal(volume.blockSize, DEFAULT_BLOCK_SIZE);
  assert.equal(volume.storeDir, '/vols/.vsnap/v');
  assert.equal(volume.dir, '/vols');
  assert.equal(volume.size, 256 * KiB + 2 * MiB - 256 * KiB);
  assert.deepEqual(
    volume.partitions.map((p) => [p.id, p.volumeOffset, p.length]),
    [
      ['boot', 0, 256 * KiB],
      ['data', 256 * KiB, MiB + 768 * KiB],
    ],
  );
  assert.deepEqual(volume.partitions[1].extents[1], { file: 'a.img', path: '/vols/a.img', offset: 256 * KiB, length: 768 * KiB });
  assert.match(volume.fingerprint, /^[0-9a-f]{64}$/);
  assert.equal(planLayout(raw({ store: '../snaps' }), '/vols/m.json').volume?.storeDir, '/snaps');
  assert.equal(planLayout(raw({ store: '/abs/store' }), '/vols/m.json').volume?.storeDir, '/abs/store');
});

test('planLayout: reports every alignment, size and id problem with path and value', () => {
  const r = raw({ blockSize: 3 * KiB });
  r.partitions[0].extents[0].offset = 100;
  r.partitions[1].id = 'boot';
  r.partitions[1].extents[0].length = 1000;
  r.partitions[1].extents[1].length = 0;
  const { volume, issues } = planLayout(r, 'm.json');
  assert.equal(volume, undefined);
  assert.deepEqual(issues, [
    { path: 'blockSize', message: 'must be a power of two from 4KiB to 4MiB', value: 3072 },
    { path: 'partitions[0].extents[0].offset', message: 'must be a multiple of 512', value: 100 },
    { path: 'partitions[1].id', message: 'duplicates partitions[0].id', value: 'boot' },
    { path: 'partitions[1].extents[0].length', message: 'must be a multiple of 512', value: 1000 },
    { path: 'partitions[1].extents[1].length', message: 'must be greater than 0', value: 0 },
  ]);
});

test('planLayout: block sizes 4KiB..4MiB powers of two only; partition totals in whole blocks', () => {
  for (let e = 12; e <= 22; e++) {
    const bs = 2 ** e;
    const r = raw({ blockSize: bs, partitions: [{ id: 'p', worker: 0, extents: [{ file: 'a', length: bs }] }] });
    assert.deepEqual(planLayout(r, 'm.json').issues, [], String(bs));
  }
  for (const bs of [0, 512, 2048, 4095, 4097, 12 * KiB, 8 * MiB]) {
    const r = raw({ blockSize: bs, partitions: [{ id: 'p', worker: 0, extents: [{ file: 'a', length: 8 * MiB }] }] });
    assert.deepEqual(
      planLayout(r, 'm.json').issues.map((i) => i.path),
      ['blockSize'],
      String(bs),
    );
  }
  // 64KiB + 512 bytes in two extents: aligned extents, but not whole blocks.
  const r = raw();
  r.partitions[0].extents.push({ file: 'c.img', length: 512 });
  assert.deepEqual(planLayout(r, 'm.json').issues, [
    { path: 'partitions[0]', message: 'total length 262656 must be a multiple of blockSize 65536', value: 262656 },
  ]);
});

test('planLayout: extents and volumes past 2^53-1 bytes are refused', () => {
  const P = 2 ** 50;
  const r1 = raw({ partitions: [{ id: 'p', worker: 0, extents: [{ file: 'a', offset: 6 * P, length: 4 * P }] }] });
  assert.deepEqual(
    planLayout(r1, 'm.json').issues.map((i) => i.path),
    ['partitions[0].extents[0].length'],
  );
  const r2 = raw({
    partitions: [
      { id: 'p', worker: 0, extents: [{ file: 'a', length: 4 * P }] },
      { id: 'q', worker: 0, extents: [{ file: 'b', length: 4 * P }] },
      { id: 'r', worker: 0, extents: [{ file: 'c', length: 64 * KiB }] },
    ],
  });
  assert.deepEqual(planLayout(r2, 'm.json').issues, [
    { path: 'partitions', message: 'volume size must be at most 2^53-1 bytes', value: 8 * P + 64 * KiB },
  ]);
});

test('fingerprint: follows the mapping only (not name, store, worker pinning or "./" spelling)', () => {
  const fp = (r: RawManifest, at = '/v/m.json') => planLayout(r, at).volume!.fingerprint;
  const base = fp(raw());
  assert.equal(fp(raw({ name: 'other', store: 'elsewhere' })), base);
  const repinned = raw();
  repinned.partitions[0].worker = 7;
  assert.equal(fp(repinned), base);
  const dotted = raw();
  dotted.partitions[0].extents[0].file = './a.img';
  assert.equal(fp(dotted), base);
  // Moving the manifest and its files together keeps the mapping.
  assert.equal(fp(raw(), '/elsewhere/m.json'), base);

  const changes: ((r: RawManifest) => void)[] = [
    (r) => (r.blockSize = 128 * KiB),
    (r) => (r.partitions[0].id = 'root'),
    (r) => (r.partitions[0].extents[0].file = 'c.img'),
    (r) => (r.partitions[1].extents[1].offset = 512 * KiB),
    (r) => r.partitions.reverse(),
  ];
  for (const change of changes) {
    const r = raw();
    change(r);
    assert.notEqual(fp(r), base, change.toString());
  }
  assert.equal(fingerprintOf(mappingOf(planLayout(raw(), 'm.json').volume!)), base);
});

function mapping(): NormalizedMapping {
  return mappingOf(planLayout(raw(), 'm.json').volume!);
}

test('describeMappingChange says what changed, and nothing for an equal mapping', () => {
  assert.deepEqual(describeMappingChange(mapping(), mapping()), []);

  const bs = mapping();
  bs.blockSize = 4096;
  assert.deepEqual(describeMappingChange(mapping(), bs), ['blockSize changed from 65536 to 4096']);

  const removed = mapping();
  removed.partitions.pop();
  assert.deepEqual(describeMappingChange(mapping(), removed), ['partition "data" was removed']);
  assert.deepEqual(describeMappingChange(removed, mapping()), ['partition "data" was added']);

  const swapped = mapping();
  swapped.partitions.reverse();
  assert.deepEqual(describeMappingChange(mapping(), swapped), [
    'partition "data" moved from position 1 to 0',
    'partition "boot" moved from position 0 to 1',
  ]);

  const grown = mapping();
  grown.partitions[0].extents[0].length = 512 * KiB;
  const msgs = describeMappingChange(mapping(), grown);
  assert.equal(msgs.length, 1);
  assert.match(msgs[0], /^partition "boot" extents changed from .*"length":262144.* to .*"length":524288/);
});

test('sysfsBlockPath decodes Linux device numbers, large minors included', () => {
  // st_rdev layout: minor bits 0-7 and 20-31, major bits 8-19.
  const enc = (major: number, minor: number) => (minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12);
  assert.equal(sysfsBlockPath(enc(8, 0)), '/sys/dev/block/8:0');
  assert.equal(sysfsBlockPath(enc(253, 1)), '/sys/dev/block/253:1');
  assert.equal(sysfsBlockPath(enc(7, 256)), '/sys/dev/block/7:256'); // loop256
  assert.equal(sysfsBlockPath(enc(259, 70000)), '/sys/dev/block/259:70000');
  // Against the machine's own devices where there are any: each decoded path must exist.
  for (const name of fs.existsSync('/sys/class/block') ? fs.readdirSync('/sys/class/block').slice(0, 20) : []) {
    const dev = `/dev/${name}`;
    if (!fs.existsSync(dev) || !fs.statSync(dev).isBlockDevice()) continue;
    const [major, minor] = fs.readFileSync(`/sys/class/block/${name}/dev`, 'utf8').trim().split(':');
    assert.equal(sysfsBlockPath(fs.statSync(dev).rdev), `/sys/dev/block/${major}:${minor}`, dev);
  }
});

const demoDefaults = { files: 3, fileSize: 1024 * MiB, partitions: 4, workers: 2, blockSize: 64 * KiB, name: 'demo' };

test('planDemo defaults: 3 files, 4 partitions on 2 workers, one partition crosses files', () => {
  const plan = planDemo(demoDefaults);
  assert.deepEqual(
    plan.files.map((f) => [f.name, f.size]),
    [
      ['disk-0.img', 1024 * MiB],
      ['disk-1.img', 1024 * MiB],
      ['disk-2.img', 1024 * MiB],
    ],
  );
  const parts = plan.manifest.partitions;
  assert.deepEqual(
    parts.map((p) => [p.id, p.worker]),
    [
      ['part0', 0],
      ['part1', 1],
      ['part2', 0],
      ['part3', 1],
    ],
  );
  assert.ok(parts.some((p) => new Set(p.extents.map((e) => e.file)).size >= 2), 'no partition spans two files');
  assert.equal(
    parts.reduce((a, p) => a + p.extents.reduce((b, e) => b + e.length, 0), 0),
    3 * 1024 * MiB,
  );
});

test('planDemo: any valid options give a manifest that passes the schema and planLayout', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 8 }),
      fc.integer({ min: 1, max: 2048 }).map((n) => n * 512 * 16),
      fc.integer({ min: 1, max: 12 }),
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 12, max: 16 }).map((e) => 2 ** e),
      (files, fileSize, partitions, workers, blockSize) => {
        const o = { files, fileSize, partitions, workers, blockSize, name: 'demo' };
        let plan;
        try {
          plan = planDemo(o);
        } catch (e) {
          // Only "too small for that many partitions" may be refused.
          assert.ok(e instanceof UsageError && files * fileSize < partitions * blockSize, String(e));
          return;
        }
        const parsed = manifestSchema.parse(JSON.parse(manifestText(plan.manifest)));
        const { volume, issues } = planLayout(parsed, '/d/volume.json');
        assert.deepEqual(issues, []);
        assert.equal(volume!.partitions.length, partitions);
        // Extents stay inside their files and never overlap: walking them in order visits increasing file positions.
        let pos = -1;
        for (const p of plan.manifest.partitions) {
          for (const e of p.extents) {
            const at = Number(e.file.slice(5, -4)) * fileSize + e.offset;
            assert.ok(at > pos);
            assert.ok(e.offset + e.length <= fileSize);
            pos = at + e.length - 1;
          }
          assert.ok(p.worker < workers);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('planDemo refuses sizes that make no volume, naming the flag and value', () => {
  assert.throws(() => planDemo({ ...demoDefaults, fileSize: 1000 }), /--file-size: must be a positive multiple of 512 \(got 1000\)/);
  assert.throws(() => planDemo({ ...demoDefaults, fileSize: 0 }), /--file-size: must be a positive multiple of 512 \(got 0\)/);
  assert.throws(() => planDemo({ ...demoDefaults, blockSize: 3000 }), /--block-size: must be a power of two from 4KiB to 4MiB \(got 3000\)/);
  assert.throws(() => planDemo({ ...demoDefaults, blockSize: 8 * MiB }), /--block-size/);
  assert.throws(() => planDemo({ ...demoDefaults, files: 1, fileSize: 64 * KiB, partitions: 2 }), /too small for 2 partitions/);
  assert.throws(() => planDemo({ ...demoDefaults, files: 64, fileSize: 2 ** 50 }), /--file-size: .*2\^53-1/);
});

test('manifestText writes sizes with units, exactly', () => {
  const plan = planDemo({ ...demoDefaults, fileSize: 100 * MiB + 512 });
  const text = manifestText(plan.manifest);
  const m = JSON.parse(text);
  assert.equal(m.blockSize, '64KiB');
  for (const [pi, p] of plan.manifest.partitions.entries()) {
    for (const [ei, e] of p.extents.entries()) {
      const written = m.partitions[pi].extents[ei];
      assert.deepEqual([parseSize(written.offset), parseSize(written.length)], [
        { ok: true, value: e.offset },
        { ok: true, value: e.length },
      ]);
    }
  }
  assert.ok(text.endsWith('}\n'));
});
