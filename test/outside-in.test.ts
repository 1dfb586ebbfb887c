// Findings of the adversarial pass over the daily loops, each through the
// real binary: a guest's own image header, a "store" naming the user's
// directory, and an --input file that shrinks while being written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { BIN, vsnap, tmpdir } from './helpers/cli.js';

const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]);

test('a header a guest writes through vsnap does not lock the volume out: list and restore still work', async (t) => {
  const { dir, cleanup } = tmpdir();
  t.after(cleanup);
  assert.equal((await vsnap(['init', dir, '--files', '1', '--file-size', '8MiB', '--partitions', '2', '--workers', '1'])).code, 0);
  const m = path.join(dir, 'volume.json');
  const image = path.join(dir, 'disk-0.img');
  const before = fs.readFileSync(image);
  assert.equal((await vsnap(['create', m, '--name', 'before'])).code, 0);
  // What `qemu-img create -f qcow2 /dev/nbd0` in a guest leaves at byte 0 of its disk.
  const w = await vsnap(['write', m, '--offset', '0'], { input: Buffer.concat([QCOW2_MAGIC, Buffer.alloc(4096 - 8, 7)]) });
  assert.equal(w.code, 0, w.stderr);
  const l = await vsnap(['list', m]);
  assert.equal(l.code, 0, `list after the guest's write: ${l.stderr}`);
  const r = await vsnap(['restore', m, 'before']);
  assert.equal(r.code, 0, `restore, the command that undoes it: ${r.stderr}`);
  assert.ok(fs.readFileSync(image).equals(before), 'restored byte for byte');
  // A file the store never took on is still refused (design §3).
  const other = tmpdir();
  t.after(other.cleanup);
  assert.equal((await vsnap(['init', other.dir, '--files', '1', '--file-size', '8MiB', '--partitions', '1', '--workers', '1'])).code, 0);
  const fd = fs.openSync(path.join(other.dir, 'disk-0.img'), 'r+');
  fs.writeSync(fd, QCOW2_MAGIC, 0, QCOW2_MAGIC.length, 0);
  fs.closeSync(fd);
  const v = await vsnap(['list', path.join(other.dir, 'volume.json')]);
  assert.equal(v.code, 2, v.stderr);
  assert.match(v.stderr, /qcow2/);
});

test('a "store" naming a directory of the user\'s is refused, exit 2, and nothing in it changes', async (t) => {
  const { dir, cleanup } = tmpdir();
  t.after(cleanup);
  assert.equal((await vsnap(['init', path.join(dir, 'v'), '--files', '1', '--file-size', '4MiB', '--partitions', '1', '--workers', '1'])).code, 0);
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin, { mode: 0o755 });
  fs.chmodSync(bin, 0o755);
  fs.writeFileSync(path.join(bin, 'tool'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  fs.chmodSync(path.join(bin, 'tool'), 0o755);
  fs.writeFileSync(path.join(bin, 'lock'), 'not a vsnap lock\n');
  const manifest = path.join(dir, 'vol.json');
  fs.writeFileSync(manifest, JSON.stringify({ name: 'x', store: 'bin', partitions: [{ id: 'a', worker: 0, extents: [{ file: 'v/disk-0.img', length: '1MiB' }] }] }));
  for (const cmd of [['validate', manifest], ['list', manifest], ['create', manifest], ['status', manifest]]) {
    const r = await vsnap(cmd);
    assert.equal(r.code, 2, `${cmd[0]}: ${r.stderr}`);
    assert.match(r.stderr, /exists and is not a vsnap store.*"tool"/s, `${cmd[0]} names the directory and what it holds`);
  }
  assert.equal(fs.statSync(bin).mode & 0o777, 0o755, 'the directory keeps its mode');
  assert.equal(fs.statSync(path.join(bin, 'tool')).mode & 0o777, 0o755, 'its files keep theirs');
  assert.equal(fs.readFileSync(path.join(bin, 'lock'), 'utf8'), 'not a vsnap lock\n', 'a file called lock is left alone');
  assert.deepEqual(fs.readdirSync(bin).sort(), ['lock', 'tool']);
  // The manifest inside its own store ("store": "."): refused before anything is written.
  const sd = path.join(dir, 'sd');
  fs.mkdirSync(sd);
  const inside = path.join(sd, 'lock');
  fs.writeFileSync(inside, JSON.stringify({ name: 'x', store: '.', partitions: [{ id: 'a', worker: 0, extents: [{ file: '../v/disk-0.img', length: '1MiB' }] }] }));
  const r = await vsnap(['list', inside]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /holds the manifest/);
  assert.ok(fs.existsSync(inside), 'the manifest is still there');
  assert.deepEqual(fs.readdirSync(sd), ['lock']);
});

test('write --input of a file that shrinks while being read fails (exit 1) and never writes bytes it did not read', async (t) => {
  const { dir, cleanup } = tmpdir();
  t.after(cleanup);
  assert.equal((await vsnap(['init', dir, '--files', '1', '--file-size', '256MiB', '--partitions', '1', '--workers', '1'])).code, 0);
  const m = path.join(dir, 'volume.json');
  const input = path.join(dir, 'in');
  const size = 160 << 20;
  // A recognisable, non-zero pattern: anything else in the volume is garbage.
  const block = Buffer.alloc(1 << 20, 0x5a);
  const fd = fs.openSync(input, 'w');
  for (let i = 0; i < size >> 20; i++) fs.writeSync(fd, block);
  fs.closeSync(fd);
  const child = spawn(process.execPath, [BIN, 'write', m, '--offset', '0', '--input', input], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // Cut the file once vsnap holds it open (it has sized the job by then).
  const opened = () => {
    try {
      return fs.readdirSync(`/proc/${child.pid}/fd`).some((f) => {
        try {
          return fs.readlinkSync(`/proc/${child.pid}/fd/${f}`) === input;
        } catch {
          return false;
        }
      });
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 2000 && !opened() && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 5));
  fs.truncateSync(input, 8 << 20);
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  const img = fs.readFileSync(path.join(dir, 'disk-0.img'));
  // Every byte of the volume is either the pattern (read from the file) or still zero.
  for (let off = 0; off < size; off += 4096) {
    const b = img[off];
    assert.ok(b === 0x5a || b === 0, `byte ${off} is ${b}: neither the input nor the old content`);
  }
  if (code === 0) {
    // The write won the race: the whole file had been read before the cut.
    assert.ok(img.subarray(0, size).every((b) => b === 0x5a), 'exit 0 means every byte was written');
  } else {
    assert.equal(code, 1, stderr);
    assert.match(stderr, /shrank while being read/);
  }
});

test('a key given twice in a manifest is a problem naming it, with its line and column, not a silent loss of the first value', async (t) => {
  const { dir, cleanup } = tmpdir();
  t.after(cleanup);
  fs.writeFileSync(path.join(dir, 'd0.img'), Buffer.alloc(0));
  fs.truncateSync(path.join(dir, 'd0.img'), 4 << 20);
  const m = path.join(dir, 'dup.json');
  const part = (id: string) => `{"id":"${id}","worker":0,"extents":[{"file":"d0.img","length":"4MiB"}]}`;
  fs.writeFileSync(m, `{"name":"a",\n "partitions":[${part('p')}],\n "partitions":[${part('q')}]}`);
  for (const cmd of [['validate', m], ['list', m]]) {
    const r = await vsnap(cmd);
    assert.equal(r.code, 2, `${cmd[0]}: ${r.stderr}`);
    assert.match(r.stderr, /partitions: given twice \(again at line 3 column 2\)/);
  }
  const j = await vsnap(['validate', m, '--json']);
  const report = JSON.parse(j.stdout) as { ok: boolean; problems: { path: string; line: number; column: number }[] };
  assert.equal(report.ok, false);
  assert.deepEqual(report.problems.map((p) => [p.path, p.line, p.column]), [['partitions', 3, 2]]);
  assert.ok(!fs.existsSync(path.join(dir, '.vsnap')), 'nothing created');
});

test('serve --run stopped by SIGTERM passes it on to CMD and never exits 0, even when CMD does', async (t) => {
  const { dir, cleanup } = tmpdir();
  t.after(cleanup);
  assert.equal((await vsnap(['init', dir, '--files', '1', '--file-size', '4MiB', '--partitions', '1', '--workers', '1'])).code, 0);
  const m = path.join(dir, 'volume.json');
  for (const [what, cmd] of [
    ['a CMD the signal kills', 'sleep 30'],
    ['a CMD that catches it and exits 0', 'trap "exit 0" TERM; while :; do sleep 0.1; done'],
  ] as const) {
    const started = path.join(dir, `started-${what.length}`);
    const child = spawn(process.execPath, [BIN, 'serve', m, '--run', `echo $$ > ${started}; ${cmd}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    for (let k = 0; k < 400 && !(fs.existsSync(started) && fs.readFileSync(started, 'utf8').trim()); k++) await new Promise((r) => setTimeout(r, 25));
    const cmdPid = Number(fs.readFileSync(started, 'utf8').trim());
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    assert.equal(code, 143, `${what}: ${stderr}`);
    let alive = true;
    try {
      process.kill(cmdPid, 0);
    } catch {
      alive = false;
    }
    assert.equal(alive, false, `${what}: CMD (pid ${cmdPid}) must not outlive serve`);
  }
});
