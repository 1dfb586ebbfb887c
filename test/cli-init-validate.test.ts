// End-to-end: `vsnap init`, `vsnap validate`, help, version and plain output,
// through the real binary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { vsnap, tmpdir, snapshotTree, BIN } from './helpers/cli.js';

const MiB = 1024 * 1024;
const ANSI = /\x1b\[/;

interface Layout {
  name: string;
  blockSize: number;
  size: number;
  store: string;
  fingerprint: string;
  partitions: { id: string; worker: number; volumeOffset: number; length: number; extents: { file: string; offset: number; length: number }[] }[];
}

test('init with defaults: 3 sparse 1GiB files, 4 partitions on 2 workers, one spanning two files', async () => {
  const { dir, cleanup } = tmpdir();
  try {
    const target = path.join(dir, 'vol');
    const r = await vsnap(['init', target]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${path.join(target, 'volume.json')}\n`);
    assert.deepEqual(fs.readdirSync(target).sort(), ['disk-0.img', 'disk-1.img', 'disk-2.img', 'volume.json']);
    for (const f of ['disk-0.img', 'disk-1.img', 'disk-2.img']) {
      const st = fs.statSync(path.join(target, f));
      assert.equal(st.size, 1024 * MiB);
      // Sparse: a few metadata blocks at most, nothing like 1GiB of data.
      assert.ok(st.blocks * 512 < MiB, `${f} has ${st.blocks} blocks allocated`);
    }
    const v = await vsnap(['validate', path.join(target, 'volume.json'), '--json']);
    assert.equal(v.code, 0, v.stderr);
    const layout = JSON.parse(v.stdout) as Layout;
    assert.equal(layout.name, 'demo');
    assert.equal(layout.blockSize, 64 * 1024);
    assert.equal(layout.size, 3 * 1024 * MiB);
    assert.equal(layout.store, path.join(target, '.vsnap', 'demo'));
    assert.equal(layout.partitions.length, 4);
    assert.deepEqual(new Set(layout.partitions.map((p) => p.worker)), new Set([0, 1]));
    assert.ok(layout.partitions.some((p) => new Set(p.extents.map((e) => e.file)).size >= 2), 'no partition spans two files');
    for (const p of layout.partitions) assert.equal(p.length % layout.blockSize, 0);
  } finally {
    cleanup();
  }
});

test('init honours its flags and the result validates', async () => {
  const { dir, cleanup } = tmpdir();
  try {
    const target = path.join(dir, 'v2');
    const r = await vsnap(['init', target, '--files', '2', '--file-size', '3MiB', '--partitions', '3', '--workers', '3', '--block-size', '4K', '--name', 'ci.disks-1']);
    assert.equal(r.code, 0, r.stderr);
    const v = await vsnap(['validate', path.join(target, 'volume.json'), '--json']);
    assert.equal(v.code, 0, v.stderr);
    const layout = JSON.parse(v.stdout) as Layout;
    assert.equal(layout.name, 'ci.disks-1');
    assert.equal(layout.blockSize, 4096);
    assert.equal(layout.size, 6 * MiB);
    assert.deepEqual(
      layout.partitions.map((p) => p.worker),
      [0, 1, 2],
    );
    assert.deepEqual(fs.readdirSync(target).sort(), ['disk-0.img', 'disk-1.img', 'volume.json']);
  } finally {
    cleanup();
  }
});

test('init refuses a non-empty directory or a file, exit 2, nothing changed', async () => {
  const { dir, cleanup } = tmpdir();
  try {
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine\n');
    const before = snapshotTree(dir);
    const r = await vsnap(['init', dir]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /<dir>: .* is not empty .*notes\.txt/);
    assert.equal(snapshotTree(dir), before);
    assert.deepEqual(fs.readdirSync(dir), ['notes.txt']);

    const f = await vsnap(['init', path.join(dir, 'notes.txt')]);
    assert.equal(f.code, 2);
    assert.match(f.stderr, /notes\.txt exists and is not a directory/);
    assert.equal(snapshotTree(dir), before);

    // A second init over a made volume is refused the same way.
    const target = path.join(dir, 'vol');
    assert.equal((await vsnap(['init', target, '--file-size', '1MiB'])).code, 0);
    const made = snapshotTree(target);
    const again = await vsnap(['init', target, '--file-size', '1MiB']);
    assert.equal(again.code, 2);
    assert.equal(snapshotTree(target), made);
  } finally {
    cleanup();
  }
});

test('init: each bad flag exits 2 naming the flag and the value, creating nothing', async () => {
  const cases: [string[], RegExp][] = [
    [['--files', '0'], /--files: must be an integer from 1 to 64 \(got "0"\)/],
    [['--files', 'abc'], /--files: must be an integer from 1 to 64 \(got "abc"\)/],
    [['--files', '65'], /--files: must be an integer from 1 to 64 \(got "65"\)/],
    [['--partitions', '0'], /--partitions: must be an integer from 1 to 1024 \(got "0"\)/],
    [['--workers', '65'], /--workers: must be an integer from 1 to 64 \(got "65"\)/],
    [['--workers', '-1'], /--workers: must be an integer from 1 to 64 \(got "-1"\)/],
    [['--file-size', '1.5GiB'], /--file-size: fractions are not allowed; use a smaller unit \(got "1\.5GiB"\)/],
    [['--file-size', '10XB'], /--file-size: unknown unit "XB".*\(got "10XB"\)/],
    [['--file-size', '1000'], /--file-size: must be a positive multiple of 512 \(got 1000\)/],
    [['--block-size', '3K'], /--block-size: must be a power of two from 4KiB to 4MiB \(got 3072\)/],
    [['--block-size', '8MiB'], /--block-size: must be a power of two from 4KiB to 4MiB \(got 8388608\)/],
    [['--name', '.hidden'], /--name: .* \(got "\.hidden"\)/],
    [['--name', 'has space'], /--name: .* \(got "has space"\)/],
    [['--file-size', '64KiB', '--partitions', '8'], /--file-size: 3 files of 65536 bytes are too small for 8 partitions/],
    [['--frobnicate'], /unknown option '--frobnicate'/],
    [['--files'], /option '--files <n>' argument missing/],
  ];
  const { dir, cleanup } = tmpdir();
  try {
    for (const [flags, message] of cases) {
      const target = path.join(dir, 'vol');
      const r = await vsnap(['init', target, ...flags]);
      assert.equal(r.code, 2, `${flags.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, flags.join(' '));
      assert.doesNotMatch(r.stderr, /^\s+at /m);
      assert.equal(fs.existsSync(target), false, `${flags.join(' ')} created the target`);
    }
  } finally {
    cleanup();
  }
});

test('validate prints the table on stdout and the summary on stderr; --json is the layout', async () => {
  const { dir, cleanup } = tmpdir();
  try {
    assert.equal((await vsnap(['init', dir, '--file-size', '1MiB'])).code, 0);
    const manifest = path.join(dir, 'volume.json');
    const before = snapshotTree(dir);
    const r = await vsnap(['validate', manifest]);
    assert.equal(r.code, 0, r.stderr);
    // Piped: tab-separated, no box characters (design §8), so awk and cut see clean fields.
    assert.match(r.stdout, /^partition\tworker\textents\tvolume range\tsize$/m);
    assert.doesNotMatch(r.stdout, /[│┌─]/);
    for (const id of ['part0', 'part1', 'part2', 'part3']) assert.match(r.stdout, new RegExp(`^${id}\t`, 'm'));
    assert.match(r.stdout, /disk-1\.img @0 \+\d+/);
    assert.match(r.stderr, /^volume demo: 3 MiB \(3145728 bytes\), block size 64 KiB, 4 partitions$/m);
    assert.match(r.stderr, new RegExp(`^store ${path.join(dir, '.vsnap', 'demo')}$`, 'm'));

    const j = await vsnap(['validate', manifest, '--json']);
    assert.equal(j.code, 0);
    const layout = JSON.parse(j.stdout) as Layout;
    // The layout's keys as before, plus ok and problems (issue 10 item 10).
    assert.deepEqual(Object.keys(layout).sort(), ['blockSize', 'fingerprint', 'name', 'ok', 'partitions', 'problems', 'size', 'store']);
    assert.match(layout.fingerprint, /^[0-9a-f]{64}$/);
    assert.deepEqual(Object.keys(layout.partitions[0]).sort(), ['extents', 'id', 'length', 'volumeOffset', 'worker']);
    // --json keeps stdout machine-readable: nothing else on it.
    assert.equal(j.stdout.trim().startsWith('{'), true);
    assert.equal(snapshotTree(dir), before);
    assert.equal(fs.existsSync(path.join(dir, '.vsnap')), false);
  } finally {
    cleanup();
  }
});

/** Command names from `vsnap --help` (commander lists them under "Commands:"). */
async function commandNames(): Promise<string[]> {
  const r = await vsnap(['--help']);
  assert.equal(r.code, 0);
  const section = r.stdout.split(/^Commands:$/m)[1] ?? '';
  return section
    .split('\n')
    .map((l) => /^ {2}([a-z][a-z-]*)\b/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined && n !== 'help');
}

test('--help of every command shows usage and an "Example:"', async () => {
  const names = await commandNames();
  assert.ok(names.includes('init') && names.includes('validate'), names.join(' '));
  for (const name of names) {
    const r = await vsnap([name, '--help']);
    assert.equal(r.code, 0, `${name} --help exited ${r.code}`);
    assert.match(r.stdout, new RegExp(`^Usage: vsnap ${name} `, 'm'), name);
    assert.match(r.stdout, /^Example:\n {2}.*\bvsnap /m, `${name} --help has no Example:`);
  }
});

test('--version and -V print the version from package.json', async () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(BIN, '..', '..', 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const r = await vsnap([flag]);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `${pkg.version}\n`);
  }
});

test('without NO_COLOR, output to pipes has no ANSI escapes', async () => {
  const { dir, cleanup } = tmpdir();
  try {
    // Not through vsnap(): it always sets NO_COLOR, and this is about its absence.
    const env = { ...process.env };
    delete env.NO_COLOR;
    delete env.FORCE_COLOR;
    const run = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8' });
    const runs = [
      run(['init', dir, '--file-size', '1MiB']),
      run(['validate', path.join(dir, 'volume.json')]),
      run(['validate', path.join(dir, 'volume.json'), '--json']),
      run(['validate', path.join(dir, 'missing.json')]),
      run(['init', dir]),
      run(['--help']),
      run(['init', '--help']),
    ];
    for (const r of runs) {
      assert.doesNotMatch(r.stdout, ANSI, r.stdout);
      assert.doesNotMatch(r.stderr, ANSI, r.stderr);
    }
    assert.equal(runs[1].status, 0);
    assert.equal(runs[3].status, 2);
  } finally {
    cleanup();
  }
});

test('on a terminal there is colour, and NO_COLOR takes it away', async () => {
  const { dir, cleanup } = tmpdir();
  try {
    assert.equal((await vsnap(['init', dir, '--file-size', '1MiB'])).code, 0);
    // script(1) gives the command a pseudo-terminal for stdout and stderr.
    const onTty = (extra: Record<string, string>) => {
      const env: NodeJS.ProcessEnv = { ...process.env, ...extra, TERM: 'xterm' };
      if (!('NO_COLOR' in extra)) delete env.NO_COLOR;
      const cmd = `${process.execPath} ${BIN} validate ${path.join(dir, 'volume.json')}`;
      return spawnSync('script', ['-qec', cmd, '/dev/null'], { env, encoding: 'utf8' });
    };
    const coloured = onTty({});
    assert.equal(coloured.status, 0, coloured.stdout);
    assert.match(coloured.stdout, ANSI);
    const plain = onTty({ NO_COLOR: '1' });
    assert.equal(plain.status, 0, plain.stdout);
    assert.match(plain.stdout, /part0/);
    assert.doesNotMatch(plain.stdout, ANSI);
  } finally {
    cleanup();
  }
});
