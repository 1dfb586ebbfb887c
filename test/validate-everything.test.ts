// `vsnap validate` tells everything in one run (issue 10 item 10), through
// the real binary: the problems of every stage, JSON syntax errors with line
// and column, "did you mean" for unknown keys, and the store checks `list`
// makes (a mapping changed since the snapshots, a damaged record, an
// unreadable store), read-only: no lock taken, no store created, no
// leftover removed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { vsnap, tmpdir, snapshotTree, BIN } from './helpers/cli.js';

const MiB = 1024 * 1024;

function sparse(p: string, size: number): void {
  fs.closeSync(fs.openSync(p, 'w'));
  fs.truncateSync(p, size);
}

/** Every path under dir with size, mode and mtime, directories included: proof that nothing changed. */
function tree(dir: string): string {
  const rows: string[] = [];
  for (const rel of (fs.readdirSync(dir, { recursive: true }) as string[]).sort()) {
    const st = fs.lstatSync(path.join(dir, rel));
    rows.push(`${rel} ${st.isDirectory() ? 'dir' : st.size} ${st.mode.toString(8)} ${st.mtimeMs}`);
  }
  return rows.join('\n');
}

interface Report {
  ok: boolean;
  problems: { path: string; message: string; stage: string; line?: number; column?: number }[];
  name?: string;
  partitions?: unknown[];
}

/** Problem lines of a failed validate's stderr. */
function problemLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('  '));
}

test('problems of every stage are reported in one run, on stderr and in --json', async () => {
  const t = tmpdir();
  try {
    sparse(path.join(t.dir, 'a.img'), MiB);
    sparse(path.join(t.dir, 'b.img'), MiB);
    // A qcow2 header written by hand (test/image-headers.test.ts uses qemu-img's own files).
    const q = Buffer.alloc(MiB);
    Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]).copy(q);
    fs.writeFileSync(path.join(t.dir, 'q.img'), q);
    const m = {
      name: 'every',
      blocksize: '64KiB', // schema: unknown key, did you mean blockSize
      partitions: [
        { id: 'p0', worker: 0, extents: [{ file: 'a.img', offset: 1000, length: '64KiB' }] }, // layout: offset not a multiple of 512
        { id: 'p1', worker: 64, extents: [{ file: 'missing.img', length: '64KiB' }] }, // schema: worker; files: no such file
        { id: 'p2', worker: 1, extents: [{ file: 'q.img', length: '64KiB' }] }, // files: a qcow2 header
        { id: 'p3', worker: 1, extents: [{ file: 'b.img', length: '128KiB' }, { file: 'b.img', offset: '64KiB', length: '64KiB' }] }, // files: overlap
      ],
    };
    fs.writeFileSync(path.join(t.dir, 'vol.json'), JSON.stringify(m, null, 2));
    const before = tree(t.dir);
    const r = await vsnap(['validate', 'vol.json'], { cwd: t.dir });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, '');
    const want = [
      /^ {2}blocksize: unknown key; did you mean "blockSize"\? \(got "64KiB"\)$/,
      /^ {2}partitions\[1\]\.worker: must be an integer from 0 to 63 \(got 64\)$/,
      /^ {2}partitions\[0\]\.extents\[0\]\.offset: must be a multiple of 512 \(got 1000\)$/,
      /^ {2}partitions\[1\]\.extents\[0\]\.file: no such file \(got "missing\.img"\)$/,
      /^ {2}partitions\[2\]\.extents\[0\]\.file: starts with a qcow2 image header .*qemu-img convert -O raw q\.img.* \(got "q\.img"\)$/,
      /^ {2}partitions\[3\]\.extents\[1\]: overlaps partitions\[3\]\.extents\[0\] \(the same file\) at bytes 65536-131071 \(got "b\.img"\)$/,
    ];
    const lines = problemLines(r.stderr);
    assert.equal(lines.length, want.length, r.stderr);
    // In stage order: the schema's two (in zod's order), then layout, then the files.
    for (const re of want.slice(0, 2)) assert.ok(lines.slice(0, 2).some((l) => re.test(l)), `${re}\n${r.stderr}`);
    want.slice(2).forEach((re, i) => assert.match(lines[i + 2], re));

    const j = await vsnap(['validate', 'vol.json', '--json'], { cwd: t.dir });
    assert.equal(j.code, 2);
    const report = JSON.parse(j.stdout) as Report;
    assert.equal(report.ok, false);
    const got = report.problems.map((p) => `${p.stage} ${p.path}`);
    assert.deepEqual(got.slice(0, 2).sort(), ['schema blocksize', 'schema partitions[1].worker']);
    assert.deepEqual(got.slice(2), ['layout partitions[0].extents[0].offset', 'file partitions[1].extents[0].file', 'file partitions[2].extents[0].file', 'file partitions[3].extents[1]']);
    for (const p of report.problems) assert.ok(want.some((re) => re.test(`  ${p.path}: ${p.message}`)), `${p.path}: ${p.message}`);
    // No layout can be planned from a manifest with schema problems: no layout keys.
    assert.equal(report.name, undefined);
    assert.equal(report.partitions, undefined);
    assert.match(j.stderr, /^vsnap: invalid manifest vol\.json:$/m, 'the human lines still go to stderr');
    assert.equal(tree(t.dir), before, 'validate wrote nothing');
  } finally {
    t.cleanup();
  }
});

test('JSON syntax errors give the line, the column and the offending character', async () => {
  const t = tmpdir();
  try {
    const cases: [string, RegExp, number, number][] = [
      ['{\n  "name": "v",\n  "partitions": [],\n}\n', /not valid JSON at line 4 column 1: found "}", expected another "key" after "," \(JSON allows no trailing comma\)$/, 4, 1],
      // Node 20's JSON.parse gives no position for this one.
      ['{\n  "name": "v",\n  "partitions": [ { "id": "p", "worker": } ]\n}\n', /not valid JSON at line 3 column 42: found "}", expected a value/, 3, 42],
      ['{\n  "name": \'v\'\n}\n', /not valid JSON at line 2 column 11: found "'", expected a value; strings take double quotes, not single$/, 2, 11],
    ];
    for (const [text, re, line, column] of cases) {
      fs.writeFileSync(path.join(t.dir, 'vol.json'), text);
      const r = await vsnap(['validate', 'vol.json'], { cwd: t.dir });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr.trim(), new RegExp(`^vsnap: invalid manifest vol\\.json: ${re.source}`));
      const j = await vsnap(['validate', 'vol.json', '--json'], { cwd: t.dir });
      assert.equal(j.code, 2);
      const report = JSON.parse(j.stdout) as Report;
      assert.deepEqual(
        report.problems.map((p) => [p.stage, p.path, p.line, p.column]),
        [['json', '(manifest)', line, column]],
      );
      // Every command that loads the manifest says the same.
      const l = await vsnap(['list', 'vol.json'], { cwd: t.dir });
      assert.equal(l.code, 2);
      assert.match(l.stderr, new RegExp(`at line ${line} column ${column}: `));
    }
  } finally {
    t.cleanup();
  }
});

test('did you mean: unknown keys close to a known one at every level', async () => {
  const t = tmpdir();
  try {
    sparse(path.join(t.dir, 'a.img'), MiB);
    const m = {
      nmae: 'v',
      name: 'v',
      partitions: [{ id: 'p', workers: 0, worker: 0, extents: [{ file: 'a.img', lenght: '64KiB', length: '64KiB', ofset: 0, colour: 'red' }] }],
    };
    fs.writeFileSync(path.join(t.dir, 'vol.json'), JSON.stringify(m));
    const r = await vsnap(['validate', 'vol.json'], { cwd: t.dir });
    assert.equal(r.code, 2);
    const lines = problemLines(r.stderr);
    // "nmae", "workers" and "lenght" sit beside the key they meant: no guess that invites a duplicate.
    assert.ok(lines.includes('  nmae: unknown key (got "v")'), r.stderr);
    assert.ok(lines.includes('  partitions[0].workers: unknown key (got 0)'), r.stderr);
    assert.ok(lines.includes('  partitions[0].extents[0].lenght: unknown key (got "64KiB")'), r.stderr);
    assert.ok(lines.includes('  partitions[0].extents[0].ofset: unknown key; did you mean "offset"? (got 0)'), r.stderr);
    assert.ok(lines.includes('  partitions[0].extents[0].colour: unknown key (got "red")'), r.stderr);
    assert.equal(lines.length, 5, r.stderr);

    const m2 = { name: 'v', partitions: [{ id: 'p', workers: 0, extents: [{ file: 'a.img', lenght: '64KiB' }] }] };
    fs.writeFileSync(path.join(t.dir, 'vol.json'), JSON.stringify(m2));
    const r2 = await vsnap(['validate', 'vol.json'], { cwd: t.dir });
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /^ {2}partitions\[0\]\.workers: unknown key; did you mean "worker"\? \(got 0\)$/m);
    assert.match(r2.stderr, /^ {2}partitions\[0\]\.extents\[0\]\.lenght: unknown key; did you mean "length"\? \(got "64KiB"\)$/m);
    assert.match(r2.stderr, /^ {2}partitions\[0\]\.worker: is required \(got nothing\)$/m);
    assert.match(r2.stderr, /^ {2}partitions\[0\]\.extents\[0\]\.length: is required \(got nothing\)$/m);
  } finally {
    t.cleanup();
  }
});

async function volumeWithSnapshot(dir: string): Promise<string> {
  const init = await vsnap(['init', dir, '--files', '2', '--file-size', '1MiB', '--partitions', '2', '--workers', '1']);
  assert.equal(init.code, 0, init.stderr);
  const manifest = path.join(dir, 'volume.json');
  const c = await vsnap(['create', manifest, '--name', 'first']);
  assert.equal(c.code, 0, c.stderr);
  return manifest;
}

test('validate finds a mapping changed since the snapshots, as list does, and changes nothing', async () => {
  const t = tmpdir();
  try {
    const manifest = await volumeWithSnapshot(t.dir);
    const ok = await vsnap(['validate', manifest, '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual((JSON.parse(ok.stdout) as Report).problems, []);

    const m = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { partitions: { id: string }[] };
    m.partitions[1].id = 'renamed';
    fs.writeFileSync(manifest, JSON.stringify(m, null, 2));
    // An interrupted create's leftover: list would remove it; validate must not.
    const leftover = path.join(t.dir, '.vsnap', 'demo', 'snapshots', '00000009.tmp');
    fs.mkdirSync(leftover);
    const before = tree(t.dir);

    const r = await vsnap(['validate', manifest]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^vsnap: the store of .*volume\.json:$/m);
    assert.match(r.stderr, /^ {2}\(store\): the manifest's mapping changed while 1 snapshot\(s\) exist; restore the old mapping or delete the snapshots: partition "part1" was removed; partition "renamed" was added$/m);
    const j = await vsnap(['validate', manifest, '--json']);
    assert.equal(j.code, 2);
    const report = JSON.parse(j.stdout) as Report;
    assert.equal(report.ok, false);
    assert.equal(report.name, 'demo', 'the layout keys are there: the manifest itself is well formed');
    assert.deepEqual(report.problems.map((p) => [p.stage, p.path]), [['store', '(store)']]);
    assert.equal(tree(t.dir), before, 'no lock taken, no leftover removed, no record rewritten');

    const l = await vsnap(['list', manifest]);
    assert.equal(l.code, 2, 'list refuses the same manifest');
    assert.match(l.stderr, /mapping changed while 1 snapshot/);
  } finally {
    t.cleanup();
  }
});

test('validate reports a damaged store record with exit 3 and an unreadable store with exit 1, like list', async () => {
  const t = tmpdir();
  try {
    const manifest = await volumeWithSnapshot(t.dir);
    const store = path.join(t.dir, '.vsnap', 'demo');
    const record = path.join(store, 'snapshots', '00000001', 'snapshot.json');
    fs.writeFileSync(record, fs.readFileSync(record, 'utf8').replace('"first"', '"firsT"'));
    fs.writeFileSync(path.join(store, 'volume.json'), '{"format": "vsnap-volume"');
    const before = tree(t.dir);
    const r = await vsnap(['validate', manifest]);
    assert.equal(r.code, 3, r.stderr);
    const lines = problemLines(r.stderr);
    assert.equal(lines.length, 2, r.stderr);
    assert.ok(lines.some((l) => l.includes(`(store): ${path.join(store, 'volume.json')}: not valid JSON`)), r.stderr);
    assert.ok(lines.some((l) => l.includes(`(store): ${record}: checksum mismatch`)), r.stderr);
    assert.equal(tree(t.dir), before);
    const l = await vsnap(['list', manifest]);
    assert.equal(l.code, 3, l.stderr);

    // A store its user may not read: exit 1 naming the errno, as list gives.
    fs.rmSync(store, { recursive: true });
    const t2 = await volumeWithSnapshot(path.join(t.dir, 'other'));
    fs.chmodSync(t.dir, 0o755);
    fs.chmodSync(path.join(t.dir, 'other'), 0o755);
    fs.chmodSync(t2, 0o644);
    for (const f of fs.readdirSync(path.join(t.dir, 'other'))) if (f.endsWith('.img')) fs.chmodSync(path.join(t.dir, 'other', f), 0o644);
    fs.chmodSync(path.join(t.dir, 'other', '.vsnap'), 0o755);
    const args = ['validate', t2];
    const root = process.getuid?.() === 0;
    const p = root
      ? spawnSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, BIN, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } })
      : undefined;
    if (p) {
      assert.equal(p.status, 1, p.stderr);
      assert.match(p.stderr, /^ {2}\(store\): .*\(EACCES\)/m);
    } else {
      // Not root: take our own read permission away instead.
      fs.chmodSync(path.join(t.dir, 'other', '.vsnap', 'demo'), 0o000);
      try {
        const u = await vsnap(args);
        assert.equal(u.code, 1, u.stderr);
        assert.match(u.stderr, /^ {2}\(store\): .*\(EACCES\)/m);
      } finally {
        fs.chmodSync(path.join(t.dir, 'other', '.vsnap', 'demo'), 0o700);
      }
    }
  } finally {
    t.cleanup();
  }
});

test('validate of a valid manifest creates no store; --json keeps the layout and adds ok and problems', async () => {
  const t = tmpdir();
  try {
    const init = await vsnap(['init', t.dir, '--file-size', '1MiB']);
    assert.equal(init.code, 0, init.stderr);
    const manifest = path.join(t.dir, 'volume.json');
    const before = snapshotTree(t.dir);
    const r = await vsnap(['validate', manifest, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as Report & { size: number; store: string; fingerprint: string };
    assert.equal(report.ok, true);
    assert.deepEqual(report.problems, []);
    assert.equal(report.size, 3 * MiB);
    assert.match(report.fingerprint, /^[0-9a-f]{64}$/);
    assert.equal(fs.existsSync(report.store), false, 'no store created');
    assert.equal(snapshotTree(t.dir), before);
  } finally {
    t.cleanup();
  }
});
