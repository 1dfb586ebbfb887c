// Long work (issue 10 item 7): progress on a terminal only, and a Ctrl-C
// (SIGINT) or SIGTERM of export, write (stdin) and restore that removes the
// temporary files, closes the workers in order (status: clean, not
// "recovered after crash") and exits 130 (SIGTERM: 143).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { vsnap, tmpdir, BIN } from './helpers/cli.js';

const MiB = 1 << 20;

async function ok(args: string[], env?: Record<string, string>): Promise<string> {
  const r = await vsnap(args, { env });
  assert.equal(r.code, 0, `vsnap ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A volume of 2 x 512 MiB with 384 MiB of random data written after snapshot "base". */
async function busyVolume(t: { after: (fn: () => void) => void }): Promise<{ dir: string; manifest: string; data: string }> {
  const { dir, cleanup } = tmpdir('vsnap-long-');
  t.after(cleanup);
  await ok(['init', dir, '--files', '2', '--file-size', '512MiB', '--partitions', '2', '--workers', '2', '--name', 'long']);
  const manifest = path.join(dir, 'volume.json');
  await ok(['create', manifest, '--name', 'base']);
  const data = path.join(dir, 'data.bin');
  const fd = fs.openSync(data, 'w');
  for (let i = 0; i < 384; i++) fs.writeSync(fd, crypto.randomBytes(MiB));
  fs.closeSync(fd);
  await ok(['write', manifest, '--offset', '64MiB', '--input', data]);
  await ok(['create', manifest, '--name', 'full']);
  return { dir, manifest, data };
}

function start(args: string[], env: Record<string, string> = {}): { proc: ChildProcess; done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> } {
  const proc = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', ...env } });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d));
  proc.stdin!.on('error', () => {});
  proc.stdout!.resume();
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((r) => proc.on('exit', (code, signal) => r({ code, signal, stderr })));
  return { proc, done };
}

async function until(what: string, cond: () => boolean, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** After an interrupted command: every partition closed in order, nothing recovered, no lock left. */
async function assertClean(manifest: string, store: string): Promise<void> {
  assert.equal(fs.existsSync(path.join(store, 'lock')), false, 'the lock was released');
  const st = JSON.parse(await ok(['status', manifest, '--json'])) as { partitions: { id: string; clean: boolean }[] };
  assert.ok(st.partitions.every((p) => p.clean), `partition states after the signal: ${JSON.stringify(st.partitions)}`);
  const human = await ok(['status', manifest]);
  assert.doesNotMatch(human, /recovered after crash/);
  const v = await vsnap(['verify', manifest]);
  assert.equal(v.code, 0, v.stderr);
}

test('SIGINT during export: no temporary or partial output, workers closed in order, exit 130; SIGTERM: 143', async (t) => {
  const { dir, manifest } = await busyVolume(t);
  const store = path.join(dir, '.vsnap', 'long');
  const outDir = path.join(dir, 'out');
  fs.mkdirSync(outDir);
  const out = path.join(outDir, 'vol.raw');
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    const run = start(['export', manifest, 'full', '--output', out]);
    // The temporary file beside the target appears once the copy starts.
    await until('the export temporary file', () => fs.readdirSync(outDir).some((n) => /^\.vol\.raw\.vsnap-\d+-[0-9a-f]+\.tmp$/.test(n)));
    await new Promise((r) => setTimeout(r, 200));
    run.proc.kill(sig);
    const r = await run.done;
    assert.equal(r.code, code, `${sig}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`interrupted by ${sig}`));
    assert.deepEqual(fs.readdirSync(outDir), [], `${sig}: files left in the output directory`);
    await assertClean(manifest, store);
  }
  // Uninterrupted, the export lands under its own name, whole.
  await ok(['export', manifest, 'full', '--output', out]);
  assert.deepEqual(fs.readdirSync(outDir), ['vol.raw']);
  assert.equal(fs.statSync(out).size, 1024 * MiB);
});

test('SIGINT during write from stdin removes the stdin spool and leaves the state clean', async (t) => {
  const { dir, manifest } = await busyVolume(t);
  const store = path.join(dir, '.vsnap', 'long');
  const tmp = path.join(dir, 'tmp');
  fs.mkdirSync(tmp);
  const run = start(['write', manifest, '--offset', '0'], { TMPDIR: tmp });
  // More than the 64 MiB kept in memory, so a spool file is made; stdin stays open.
  for (let i = 0; i < 80; i++) if (!run.proc.stdin!.write(crypto.randomBytes(MiB))) await new Promise((r) => run.proc.stdin!.once('drain', r));
  await until('the stdin spool', () => fs.readdirSync(tmp).some((n) => n.startsWith('vsnap-write-')));
  run.proc.kill('SIGINT');
  const r = await run.done;
  assert.equal(r.code, 130, r.stderr);
  assert.deepEqual(fs.readdirSync(tmp), [], 'the spool directory was removed');
  await assertClean(manifest, store);
  // Nothing was written: the live volume still reads as snapshot "full".
  const d = JSON.parse(await ok(['diff', manifest, 'full', '--json'])) as { ranges: unknown[] };
  assert.deepEqual(d.ranges, []);
});

test('SIGINT during restore stops it with the state clean; a second restore completes it', async (t) => {
  const { dir, manifest } = await busyVolume(t);
  const store = path.join(dir, '.vsnap', 'long');
  const lock = path.join(store, 'lock');
  const run = start(['restore', manifest, 'base']);
  await until('the restore to hold the lock', () => {
    try {
      return (JSON.parse(fs.readFileSync(lock, 'utf8')) as { command: string }).command === 'restore';
    } catch {
      return false;
    }
  });
  await new Promise((r) => setTimeout(r, 700));
  run.proc.kill('SIGINT');
  const r = await run.done;
  assert.equal(r.code, 130, `the restore was not interrupted (it must take longer than 0.7 s here): ${r.stderr}`);
  await assertClean(manifest, store);
  // The restore left a consistent volume: run it again and the live volume reads as "base".
  await ok(['restore', manifest, 'base']);
  const d = JSON.parse(await ok(['diff', manifest, 'base', '--exact', '--json'])) as { ranges: unknown[] };
  assert.deepEqual(d.ranges, []);
  // The snapshot taken after the write still reads as it did.
  const v = await vsnap(['verify', manifest]);
  assert.equal(v.code, 0, v.stderr);
});

/** Run a shell line under script(1): stdout and stderr are a terminal. */
function onTerminal(line: string): string {
  const r = spawnSync('script', ['-qec', line, '/dev/null'], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', COLUMNS: '80' }, timeout: 120_000 });
  assert.equal(r.error, undefined, `script(1) is missing (Debian package util-linux): ${r.error?.message}`);
  assert.equal(r.status, 0, r.stdout);
  return r.stdout;
}

test('progress shows on a terminal for write (stdin), export and verify, and never when piped', async (t) => {
  const { dir, manifest, data } = await busyVolume(t);
  const vs = `${process.execPath} ${BIN}`;
  const out = path.join(dir, 'x.raw');
  const term = onTerminal(`cat ${data} | ${vs} write ${manifest} --offset 0; ${vs} export ${manifest} full --output ${out}; ${vs} verify ${manifest}`);
  const lines = term.split(/\r|\n/);
  assert.ok(lines.some((l) => /write [\d.]+ \w*B, reading stdin/.test(l)), `no progress while reading stdin:\n${term.slice(0, 2000)}`);
  assert.ok(lines.some((l) => /write \[[#.]+\] +\d+% [\d.]+ \w*B of 384 MiB/.test(l)), 'no write progress');
  assert.ok(lines.some((l) => /export \[[#.]+\] +\d+% .* of 1\.0 GiB/.test(l)), 'no export progress');
  assert.ok(lines.some((l) => /verify \[[#.]+\] +\d+%/.test(l)), 'no verify progress');
  // The last export line counts the whole volume.
  assert.ok(lines.some((l) => /export \[#{20}\] 100% 1\.0 GiB of 1\.0 GiB/.test(l)), 'export progress never reached the volume size');
  // Piped: no progress at all.
  const piped = await vsnap(['export', manifest, 'full', '--output', out]);
  assert.equal(piped.code, 0, piped.stderr);
  assert.doesNotMatch(piped.stderr, /\r|\[#|%/);
});

test('status while a server writes says "in use", not "recovered after crash"; a real crash still says so', async (t) => {
  const { dir, cleanup } = tmpdir('vsnap-long-');
  t.after(cleanup);
  await ok(['init', dir, '--files', '1', '--file-size', '16MiB', '--partitions', '2', '--workers', '2', '--name', 'srv']);
  const manifest = path.join(dir, 'volume.json');
  await ok(['create', manifest, '--name', 'a']);
  const { startServe } = await import('./serve/harness.js');
  const { runOk } = await import('./nbd/harness.js');
  const srv = await startServe(manifest);
  try {
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 16M', srv.uri]);
    const st = JSON.parse(await ok(['status', manifest, '--json'])) as { partitions: { clean: boolean; writing: boolean }[] };
    assert.ok(st.partitions.every((p) => p.clean && p.writing), JSON.stringify(st.partitions));
    const human = await ok(['status', manifest]);
    assert.doesNotMatch(human, /recovered after crash/);
    assert.match(human, /\bin use\b/);
    // A real crash: the server and its workers killed (kill -9); the next command recovers and says so once.
    const workers = (JSON.parse(await ok(['status', manifest, '--json'])) as { workers: { pid: number }[] }).workers;
    srv.proc.kill('SIGKILL');
    for (const w of workers) process.kill(w.pid, 'SIGKILL');
    await new Promise((r) => srv.proc.once('exit', r));
  } finally {
    if (srv.proc.exitCode === null && srv.proc.signalCode === null) await srv.stop();
  }
  const after = await ok(['status', manifest]);
  assert.match(after, /recovered after crash/);
  assert.doesNotMatch(await ok(['status', manifest]), /recovered after crash/, 'recovered once, clean after');
});
