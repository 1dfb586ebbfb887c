// --output through a symbolic link, /dev/stdout and pipes (adversary E4):
// export and read used to rename their temporary file over the link itself
// (so `--output /dev/stdout` as root replaced /dev/stdout, and a redirected
// stdout got nothing, exit 0), and export handed a pipe's path to workers
// whose /proc/self is their own (every byte to /dev/null, exit 0). Now a link
// is resolved (the file it names gets the data, the link stays), a dangling
// one is refused, and export refuses a pipe (exit 2) where read writes it.
// Also: `create` of a manifest that is a FIFO fails at once (E1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { vsnap, tmpdir, BIN } from './helpers/cli.js';

const MiB = 1024 * 1024;

async function ok(args: string[], input?: Buffer): Promise<string> {
  const r = await vsnap(args, input ? { input } : {});
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Run vsnap with stdout on the given fd (a file) or a pipe; returns the exit code, stderr and what the pipe got. */
function runWithStdout(args: string[], stdout: number | 'pipe'): Promise<{ code: number | null; stderr: string; out: Buffer }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', stdout, 'pipe'] });
    let stderr = '';
    const out: Buffer[] = [];
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    p.stdout?.on('data', (d: Buffer) => out.push(d));
    p.on('close', (code) => resolve({ code, stderr, out: Buffer.concat(out) }));
  });
}

test('export and read --output through a link write the file it names and keep the link; /dev/stdout and pipes', async () => {
  const t = tmpdir();
  try {
    await ok(['init', path.join(t.dir, 'v'), '--files', '1', '--file-size', '2MiB', '--partitions', '2', '--workers', '2', '-q']);
    const manifest = path.join(t.dir, 'v', 'volume.json');
    await ok(['write', manifest, '--offset', '4096'], Buffer.alloc(MiB, 0x5a));
    await ok(['create', manifest, '--name', 's']);
    const want = fs.readFileSync(path.join(t.dir, 'v', fs.readdirSync(path.join(t.dir, 'v')).find((f) => f.endsWith('.img'))!));

    // A link to a regular file: the file gets the image, the link stays a link.
    const target = path.join(t.dir, 'target.raw');
    fs.writeFileSync(target, 'old');
    const link = path.join(t.dir, 'link.raw');
    fs.symlinkSync(target, link);
    await ok(['export', manifest, 's', '--output', link]);
    assert.ok(fs.lstatSync(link).isSymbolicLink(), 'the link is still a link');
    assert.deepEqual(fs.readFileSync(target), want, 'the file it names holds the image');
    fs.writeFileSync(target, 'old');
    await ok(['read', manifest, '--offset', '0', '--length', '2MiB', '--output', link]);
    assert.ok(fs.lstatSync(link).isSymbolicLink());
    assert.deepEqual(fs.readFileSync(target), want);

    // A link to /proc/self/fd/1 (what /dev/stdout is) with stdout redirected to a file.
    const fd1 = path.join(t.dir, 'stdout-link');
    fs.symlinkSync('/proc/self/fd/1', fd1);
    const outFile = path.join(t.dir, 'e.out');
    for (const args of [['export', manifest, 's', '--output', fd1], ['read', manifest, '--offset', '0', '--length', '2MiB', '--output', fd1]]) {
      const fd = fs.openSync(outFile, 'w');
      const r = await runWithStdout(args, fd);
      fs.closeSync(fd);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(fs.readFileSync(outFile), want, `${args[0]}: the redirected stdout's file holds the data`);
      assert.ok(fs.lstatSync(fd1).isSymbolicLink(), `${args[0]}: the link to /proc/self/fd/1 is still a link`);
    }

    // stdout a pipe: export refuses (exit 2, nothing written); read writes the pipe.
    const ex = await runWithStdout(['export', manifest, 's', '--output', fd1], 'pipe');
    assert.equal(ex.code, 2, ex.stderr);
    assert.match(ex.stderr, /--output: .*stdout-link is a (pipe|socket): .*vsnap read/);
    assert.ok(fs.lstatSync(fd1).isSymbolicLink());
    const rd = await runWithStdout(['read', manifest, '--offset', '0', '--length', '2MiB', '--output', fd1], 'pipe');
    assert.equal(rd.code, 0, rd.stderr);
    assert.deepEqual(rd.out, want, 'read --output of a pipe writes the pipe');

    // A dangling link: refused, exit 2, left as it is.
    const dangling = path.join(t.dir, 'dangling.raw');
    fs.symlinkSync(path.join(t.dir, 'nowhere', 'x.raw'), dangling);
    const d = await vsnap(['export', manifest, 's', '--output', dangling]);
    assert.equal(d.code, 2, d.stderr);
    assert.match(d.stderr, /dangling\.raw is a symbolic link to a missing file/);
    assert.ok(fs.lstatSync(dangling).isSymbolicLink());
  } finally {
    t.cleanup();
  }
});

test('create of a manifest that is a FIFO fails at once (exit 2) instead of hanging', { timeout: 60_000 }, async () => {
  const t = tmpdir();
  try {
    const fifo = path.join(t.dir, 'vol.json');
    execFileSync('mkfifo', [fifo]);
    const t0 = Date.now();
    const r = await vsnap(['create', fifo]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /not a regular file|vol\.json/);
    assert.ok(Date.now() - t0 < 30_000, 'no hang');
  } finally {
    t.cleanup();
  }
});
