// End-to-end: every manifest under fixtures/bad is refused by the real binary
// with exit 2, a message naming the JSON path and the value, no stack trace,
// and nothing written; every manifest under fixtures/good validates. The
// backing files the fixtures refer to are made here, small and sparse, in a
// fresh directory per fixture (fixtures/README.md lists them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vsnap, tmpdir, snapshotTree, ROOT } from './helpers/cli.js';

const FIXTURES = path.join(ROOT, 'fixtures');
const KiB = 1024;
const MiB = 1024 * KiB;
const TiB = 1024 * 1024 * MiB;

function sparse(p: string, size: number): void {
  fs.closeSync(fs.openSync(p, 'w'));
  fs.truncateSync(p, size);
}

/** The directory every fixture is copied into (see fixtures/README.md). */
function makeEnvironment(dir: string): void {
  sparse(path.join(dir, 'a.img'), MiB);
  sparse(path.join(dir, 'b.img'), MiB);
  sparse(path.join(dir, 'c.img'), 64 * KiB);
  sparse(path.join(dir, 'short.img'), 64 * KiB);
  sparse(path.join(dir, 'big.img'), 4 * TiB);
  fs.symlinkSync('a.img', path.join(dir, 'link-a.img'));
  fs.linkSync(path.join(dir, 'a.img'), path.join(dir, 'hard-a.img'));
  fs.mkdirSync(path.join(dir, 'images'));
  sparse(path.join(dir, 'images', 'inside.img'), MiB);
  fs.symlinkSync('images', path.join(dir, 'images-link'));
}

/** Every path under dir, directories included (snapshotTree lists files only). */
function entries(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
}

function fixtureNames(kind: 'bad' | 'good'): { names: string[]; expected: Record<string, unknown> } {
  const dir = path.join(FIXTURES, kind);
  const names = fs
    .readdirSync(dir)
    .filter((n) => n.endsWith('.json') && n !== 'expected.json')
    .sort();
  const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Record<string, unknown>;
  return { names, expected };
}

const bad = fixtureNames('bad');
const good = fixtureNames('good');

test('every bad fixture has an expected message and there are at least 25', () => {
  assert.ok(bad.names.length >= 25, `only ${bad.names.length} bad fixtures`);
  assert.deepEqual(Object.keys(bad.expected).sort(), bad.names);
  assert.deepEqual(Object.keys(good.expected).sort(), good.names);
});

for (const name of bad.names) {
  test(`fixtures/bad/${name} is refused with exit 2 and writes nothing`, async () => {
    const { dir, cleanup } = tmpdir();
    try {
      makeEnvironment(dir);
      fs.copyFileSync(path.join(FIXTURES, 'bad', name), path.join(dir, 'vol.json'));
      const before = snapshotTree(dir);
      const beforeEntries = entries(dir);
      const r = await vsnap(['validate', 'vol.json'], { cwd: dir });
      // A string: the one rule the fixture breaks. An array: a fixture that
      // cannot help breaking several (a volume past 2^53-1 bytes cannot have
      // backing files that hold it), each listed, and no other complaint.
      const expected = bad.expected[name];
      const wants = (Array.isArray(expected) ? expected : [expected]).map((w) => String(w).replaceAll('$DIR', dir));
      assert.equal(r.code, 2, r.stderr);
      for (const want of wants) assert.ok(r.stderr.includes(want), `stderr lacks\n  ${want}\ngot:\n${r.stderr}`);
      // One rule per fixture: a second complaint means the fixture is broken twice.
      const issueLines = r.stderr.split('\n').filter((l) => l.startsWith('  '));
      assert.ok(issueLines.length <= Math.max(1, wants.length), `more problems reported than expected:\n${r.stderr}`);
      assert.doesNotMatch(r.stderr, /^\s+at .+:\d+:\d+\)?$/m, 'stack trace on stderr');
      assert.doesNotMatch(r.stderr, /internal error/);
      assert.equal(r.stdout, '');
      assert.equal(snapshotTree(dir), before);
      assert.deepEqual(entries(dir), beforeEntries);
      assert.equal(fs.existsSync(path.join(dir, '.vsnap')), false);
    } finally {
      cleanup();
    }
  });
}

interface GoodExpectation {
  size: number;
  blockSize: number;
  store: string;
  partitions: string[];
}

for (const name of good.names) {
  test(`fixtures/good/${name} validates, --json gives its layout, nothing is written`, async () => {
    const { dir, cleanup } = tmpdir();
    try {
      makeEnvironment(dir);
      fs.copyFileSync(path.join(FIXTURES, 'good', name), path.join(dir, 'vol.json'));
      const before = snapshotTree(dir);
      const want = good.expected[name] as GoodExpectation;
      const r = await vsnap(['validate', 'vol.json', '--json'], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
      const layout = JSON.parse(r.stdout) as {
        size: number;
        blockSize: number;
        store: string;
        partitions: { id: string; length: number; volumeOffset: number }[];
      };
      assert.equal(layout.size, want.size);
      assert.equal(layout.blockSize, want.blockSize);
      assert.equal(layout.store, want.store.replaceAll('$DIR', dir));
      assert.deepEqual(
        layout.partitions.map((p) => p.id),
        want.partitions,
      );
      // Partitions are laid end to end in manifest order.
      let at = 0;
      for (const p of layout.partitions) {
        assert.equal(p.volumeOffset, at);
        at += p.length;
      }
      assert.equal(at, want.size);
      const plain = await vsnap(['validate', 'vol.json'], { cwd: dir });
      assert.equal(plain.code, 0, plain.stderr);
      for (const id of want.partitions) assert.match(plain.stdout, new RegExp(`^${id.replace(/[.]/g, '\\.')}\t`, 'm'));
      assert.equal(snapshotTree(dir), before);
      assert.equal(fs.existsSync(layout.store), false, 'validate must not create the store');
    } finally {
      cleanup();
    }
  });
}

test('a manifest with several problems lists every one of them', async () => {
  const { dir, cleanup } = tmpdir();
  try {
    makeEnvironment(dir);
    const m = {
      name: 'several',
      blockSize: '64KiB',
      partitions: [
        { id: 'p0', worker: 0, extents: [{ file: 'a.img', offset: 1000, length: '64KiB' }] },
        // Its own total is wrong; p0's bad offset must not hide that.
        { id: 'p1', worker: 0, extents: [{ file: 'b.img', length: 4096 }] },
      ],
    };
    fs.writeFileSync(path.join(dir, 'vol.json'), JSON.stringify(m));
    const r = await vsnap(['validate', 'vol.json'], { cwd: dir });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^ {2}partitions\[0\]\.extents\[0\]\.offset: must be a multiple of 512 \(got 1000\)$/m);
    assert.match(r.stderr, /^ {2}partitions\[1\]: total length 4096 must be a multiple of blockSize 65536 \(got 4096\)$/m);
  } finally {
    cleanup();
  }
});

test('a manifest that cannot be read exits 2 naming it', async () => {
  const { dir, cleanup } = tmpdir();
  try {
    const r = await vsnap(['validate', 'nope.json'], { cwd: dir });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cannot read manifest nope\.json: ENOENT/);
    assert.deepEqual(fs.readdirSync(dir), []);
  } finally {
    cleanup();
  }
});
