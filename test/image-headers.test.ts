// Backing files that are really qcow2, QED, VMDK, VHDX, VDI, LUKS (or qcow,
// dynamic VHD) images, made by `qemu-img create`, are refused by `validate`
// and by the commands that load the manifest, exit 2, naming the JSON path,
// the file, the format and `qemu-img convert -O raw`; `"format": "raw"` lets
// them through. The recogniser (src/manifest/image-header.ts) must agree
// with `qemu-img info` on every file qemu-img makes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { vsnap, tmpdir, snapshotTree, requireTool, BIN } from './helpers/cli.js';
import { detectImageHeader, HEADER_PROBE_BYTES } from '../src/manifest/image-header.js';

const MiB = 1024 * 1024;

// qemu-img sizes LUKS key derivation by timing 2^15 PBKDF2 rounds on the
// thread's CPU clock, and gives up with "Unable to get accurate CPU usage"
// when that clock did not move (tick-based CPU accounting on a fast CPU: the
// failure came back in CI after 24 ms, whatever iter-time said). It is a
// property of the machine's clock, not of the image, so the call is retried.
const CPU_CLOCK_FLAKE = 'Unable to get accurate CPU usage';

function qemuImg(args: string[]): void {
  let r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  for (let attempt = 1; attempt < 10 && r.status !== 0 && r.stderr.includes(CPU_CLOCK_FLAKE); attempt++) {
    r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  }
  assert.equal(r.status, 0, `qemu-img ${args.join(' ')}: ${r.stderr}`);
}

/** What qemu-img itself probes a file as. */
function qemuFormat(file: string): string {
  const r = spawnSync('qemu-img', ['info', '--output=json', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return (JSON.parse(r.stdout) as { format: string }).format;
}

/** Make an image with qemu-img; grown (sparse) to 1 MiB so 64 KiB extents fit whatever its own size. */
function makeImage(dir: string, name: string, format: string, extra: string[] = []): string {
  const file = path.join(dir, name);
  qemuImg(['create', '-q', '-f', format, ...extra, file, '1M']);
  if (fs.statSync(file).size < MiB) fs.truncateSync(file, MiB);
  return file;
}

// iter-time keeps LUKS key derivation short; the secret is a test value.
// sha512 makes qemu-img's timing rounds slower than SHA-NI sha256, so its CPU
// clock is likelier to move (see CPU_CLOCK_FLAKE above).
const LUKS_ARGS = ['--object', 'secret,id=sec0,data=test-passphrase', '-o', 'key-secret=sec0,iter-time=100,hash-alg=sha512'];

const CASES: { name: string; qemuFormat: string; expect: string; extra?: string[] }[] = [
  { name: 'disk.qcow2', qemuFormat: 'qcow2', expect: 'qcow2' },
  { name: 'disk.qed', qemuFormat: 'qed', expect: 'qed' },
  { name: 'disk.vmdk', qemuFormat: 'vmdk', expect: 'vmdk' },
  { name: 'desc.vmdk', qemuFormat: 'vmdk', expect: 'vmdk', extra: ['-o', 'subformat=monolithicFlat'] },
  { name: 'disk.vhdx', qemuFormat: 'vhdx', expect: 'vhdx' },
  { name: 'disk.vdi', qemuFormat: 'vdi', expect: 'vdi' },
  { name: 'disk.luks', qemuFormat: 'luks', expect: 'luks', extra: LUKS_ARGS },
  { name: 'disk.qcow', qemuFormat: 'qcow', expect: 'qcow' },
  { name: 'disk.vhd', qemuFormat: 'vpc', expect: 'vpc' },
];

function manifest(extents: object[]): string {
  return JSON.stringify({ name: 'img', blockSize: '4KiB', partitions: [{ id: 'p', worker: 0, extents }] });
}

function skipWithoutQemuImg(tt: { skip: (m: string) => void }): boolean {
  const skip = requireTool('qemu-img', 'qemu-utils');
  if (skip) tt.skip(skip);
  return skip !== undefined;
}

for (const c of CASES) {
  test(`a ${c.name} made by qemu-img create -f ${c.qemuFormat} is refused unless "format": "raw"`, async (tt) => {
    if (skipWithoutQemuImg(tt)) return;
    const t = tmpdir();
    try {
      const file = makeImage(t.dir, c.name, c.qemuFormat, c.extra);
      const vol = path.join(t.dir, 'vol.json');
      fs.writeFileSync(vol, manifest([{ file: c.name, length: '64KiB' }]));
      const before = snapshotTree(t.dir);

      const r = await vsnap(['validate', 'vol.json'], { cwd: t.dir });
      assert.equal(r.code, 2, r.stderr);
      const line = r.stderr.split('\n').find((l) => l.startsWith('  partitions[0].extents[0].file: '));
      assert.ok(line, `no line for the extent:\n${r.stderr}`);
      assert.ok(line.includes(`starts with a ${c.expect} image header`), line);
      assert.ok(line.includes(`qemu-img convert -O raw ${c.name}`), line);
      assert.ok(line.endsWith(`(got ${JSON.stringify(c.name)})`), line);
      assert.equal(r.stdout, '');

      // Every command that loads the manifest refuses it the same way, before touching anything.
      for (const args of [['create', 'vol.json'], ['list', 'vol.json'], ['read', 'vol.json', '--offset', '0', '--length', '512']]) {
        const o = await vsnap(args, { cwd: t.dir });
        assert.equal(o.code, 2, `${args[0]}: ${o.stderr}`);
        assert.match(o.stderr, new RegExp(`partitions\\[0\\]\\.extents\\[0\\]\\.file: starts with a ${c.expect} image header`), args[0]);
      }
      assert.equal(snapshotTree(t.dir), before, 'nothing written');
      assert.equal(fs.existsSync(path.join(t.dir, '.vsnap')), false, 'no store created');

      // The recogniser and qemu-img agree on what the file is.
      assert.equal(qemuFormat(file), c.qemuFormat);

      fs.writeFileSync(vol, manifest([{ file: c.name, length: '64KiB', format: 'raw' }]));
      const ok = await vsnap(['validate', 'vol.json', '--json'], { cwd: t.dir });
      assert.equal(ok.code, 0, ok.stderr);
      const j = JSON.parse(ok.stdout) as { ok: boolean; partitions: { extents: { format?: string }[] }[] };
      assert.equal(j.ok, true);
      assert.equal(j.partitions[0].extents[0].format, 'raw');
    } finally {
      t.cleanup();
    }
  });
}

test('the header is looked for at file offset 0 whatever the extent offset', async (tt) => {
  if (skipWithoutQemuImg(tt)) return;
  const t = tmpdir();
  try {
    makeImage(t.dir, 'disk.qcow2', 'qcow2');
    fs.writeFileSync(
      path.join(t.dir, 'vol.json'),
      manifest([
        { file: 'disk.qcow2', offset: '256KiB', length: '64KiB' },
        { file: 'disk.qcow2', offset: '512KiB', length: '64KiB', format: 'raw' },
      ]),
    );
    const r = await vsnap(['validate', 'vol.json'], { cwd: t.dir });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^ {2}partitions\[0\]\.extents\[0\]\.file: starts with a qcow2 image header \("QFI\\xfb" at byte 0, version 3\)/m);
    // The second extent vouches for its bytes: no complaint about it.
    assert.doesNotMatch(r.stderr, /extents\[1\]/);
  } finally {
    t.cleanup();
  }
});

test('one small read per distinct file, however many extents and links name it (strace)', (tt) => {
  const skip = requireTool('strace', 'strace');
  if (skip) return tt.skip(skip);
  const t = tmpdir();
  try {
    const img = path.join(t.dir, 'a.img');
    fs.closeSync(fs.openSync(img, 'w'));
    fs.truncateSync(img, MiB);
    fs.linkSync(img, path.join(t.dir, 'hard.img'));
    fs.writeFileSync(
      path.join(t.dir, 'vol.json'),
      manifest([
        { file: 'a.img', length: '64KiB' },
        { file: 'a.img', offset: '64KiB', length: '64KiB' },
        { file: 'hard.img', offset: '128KiB', length: '64KiB' },
        { file: 'a.img', offset: '192KiB', length: '64KiB' },
      ]),
    );
    const log = path.join(t.dir, 'strace.log');
    const r = spawnSync('strace', ['-f', '-e', 'trace=open,openat,read,pread64,close', '-o', log, process.execPath, BIN, 'validate', 'vol.json'], { cwd: t.dir, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const lines = fs.readFileSync(log, 'utf8').split('\n');
    const opens = lines.filter((l) => /open(at)?\(.*"[^"]*(a|hard)\.img"/.test(l));
    assert.equal(opens.length, 1, opens.join('\n'));
    const fd = /= (\d+)$/.exec(opens[0])?.[1];
    assert.ok(fd, opens[0]);
    const pid = opens[0].split(/\s+/)[0];
    // Reads of that fd by that process after the open, up to its close: one, of at most 512 bytes.
    const from = lines.indexOf(opens[0]);
    const until = lines.findIndex((l, i) => i > from && l.startsWith(`${pid} `) && new RegExp(`close\\(${fd}\\)`).test(l));
    const reads = lines.slice(from, until === -1 ? undefined : until).filter((l) => l.startsWith(`${pid} `) && new RegExp(`(read|pread64)\\(${fd},`).test(l));
    assert.equal(reads.length, 1, reads.join('\n'));
    assert.match(reads[0], /, 512(, 0)?\) = \d+$/);
  } finally {
    t.cleanup();
  }
});

test('a fixed VHD (raw data then a footer), a monolithicFlat data file and plain data are raw, as qemu-img says', (tt) => {
  if (skipWithoutQemuImg(tt)) return;
  const t = tmpdir();
  try {
    const fixed = path.join(t.dir, 'fixed.vhd');
    qemuImg(['create', '-q', '-f', 'vpc', '-o', 'subformat=fixed', fixed, '1M']);
    makeImage(t.dir, 'flat.vmdk', 'vmdk', ['-o', 'subformat=monolithicFlat']);
    const flatData = path.join(t.dir, 'flat-flat.vmdk');
    for (const f of [fixed, flatData]) {
      assert.equal(qemuFormat(f), 'raw', f);
      assert.equal(detectImageHeader(fs.readFileSync(f).subarray(0, HEADER_PROBE_BYTES)), undefined, f);
    }
  } finally {
    t.cleanup();
  }
});

test('recogniser: LUKS2, VMDK descriptors without the comment, and raw look-alikes', () => {
  // A LUKS2 primary header starts like LUKS1 with version 2 (cryptsetup's
  // layout; qemu-img 7.2 creates LUKS1 only, so this one is made by hand).
  const luks2 = Buffer.alloc(HEADER_PROBE_BYTES);
  Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe, 0x00, 0x02]).copy(luks2);
  assert.deepEqual(detectImageHeader(luks2), { format: 'luks', evidence: '"LUKS\\xba\\xbe" at byte 0, LUKS2' });
  // QEMU's vmdk_probe: comments and blank lines, then a version line.
  assert.equal(detectImageHeader(Buffer.from('# made by hand\n\nversion=1\nCID=fffffffe\n'))?.format, 'vmdk');
  assert.equal(detectImageHeader(Buffer.from('  \r\nversion=3\r\n'))?.format, 'vmdk');
  assert.equal(detectImageHeader(Buffer.from('version=4\n')), undefined);
  assert.equal(detectImageHeader(Buffer.from('hello\nversion=1\n')), undefined);
  // A VDI is known by its signature at 0x40 (QEMU's vdi_probe), whatever the banner.
  const vdi = Buffer.alloc(HEADER_PROBE_BYTES);
  vdi.writeUInt32LE(0xbeda107f, 0x40);
  assert.equal(detectImageHeader(vdi)?.format, 'vdi');
  // Zeros, an MBR-like sector, a short file, magics not at byte 0.
  assert.equal(detectImageHeader(Buffer.alloc(HEADER_PROBE_BYTES)), undefined);
  const mbr = Buffer.alloc(HEADER_PROBE_BYTES, 0x90);
  mbr.writeUInt16LE(0xaa55, 510);
  assert.equal(detectImageHeader(mbr), undefined);
  assert.equal(detectImageHeader(Buffer.from('QF')), undefined);
  assert.equal(detectImageHeader(Buffer.from('\0QFI\xfb', 'latin1')), undefined);
  let seed = 7;
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.alloc(HEADER_PROBE_BYTES);
    for (let k = 0; k < b.length; k++) b[k] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    assert.equal(detectImageHeader(b), undefined, `random sector ${i}`);
  }
});

test('"format" accepts only "raw" and names the value it got', async () => {
  const t = tmpdir();
  try {
    fs.closeSync(fs.openSync(path.join(t.dir, 'a.img'), 'w'));
    fs.truncateSync(path.join(t.dir, 'a.img'), MiB);
    fs.writeFileSync(path.join(t.dir, 'vol.json'), manifest([{ file: 'a.img', length: '64KiB', format: 'qcow2' }]));
    const r = await vsnap(['validate', 'vol.json'], { cwd: t.dir });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^ {2}partitions\[0\]\.extents\[0\]\.format: must be "raw", the only format vsnap reads \(convert other images with `qemu-img convert -O raw`\) \(got "qcow2"\)$/m);
  } finally {
    t.cleanup();
  }
});

/** Run the binary as a user who is not the files' owner: uid 65534 through setpriv when root, else as ourselves. */
function runAsOther(args: string[], cwd: string): { code: number; stdout: string; stderr: string } {
  const root = process.getuid?.() === 0;
  const cmd = root ? 'setpriv' : process.execPath;
  const argv = root ? ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, BIN, ...args] : [BIN, ...args];
  const r = spawnSync(cmd, argv, { cwd, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('a backing file that cannot be opened is a validate problem; other commands skip the look', async () => {
  const t = tmpdir();
  try {
    fs.chmodSync(t.dir, 0o755);
    const img = path.join(t.dir, 'a.img');
    fs.closeSync(fs.openSync(img, 'w'));
    fs.truncateSync(img, MiB);
    fs.chmodSync(img, 0o200);
    fs.writeFileSync(path.join(t.dir, 'vol.json'), manifest([{ file: 'a.img', length: '64KiB' }]));
    fs.chmodSync(path.join(t.dir, 'vol.json'), 0o644);
    const r = runAsOther(['validate', 'vol.json'], t.dir);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^ {2}partitions\[0\]\.extents\[0\]\.file: cannot be opened to look for an image header \(EACCES\) \(got "a\.img"\)$/m);
    // list needs no read access to the images (and there is no store yet).
    const l = runAsOther(['list', 'vol.json'], t.dir);
    assert.equal(l.code, 0, l.stderr);
    assert.equal(fs.existsSync(path.join(t.dir, '.vsnap')), false);
  } finally {
    t.cleanup();
  }
});
