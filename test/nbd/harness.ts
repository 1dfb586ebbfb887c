// Shared by the NBD tests: predictable data, the file server started as a
// separate process (the way vsnap serve will run), and running client tools.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { ROOT, tmpdir } from '../helpers/cli.js';

export const MiB = 1024 * 1024;
export const SERVER_SCRIPT = path.join(ROOT, 'dist', 'test', 'helpers', 'nbd-file-server.js');

/**
 * Bytes that depend on their absolute offset and a seed, so any misplaced or
 * stale byte shows. `pattern(n, seed, at)` equals `pattern(at + n, seed)` from `at`.
 */
export function pattern(length: number, seed: number, at = 0): Buffer {
  const first = Math.floor(at / 4);
  const words = Math.ceil((at + length) / 4) - first;
  const b = Buffer.allocUnsafe(words * 4);
  for (let i = 0; i < words; i++) {
    const w = first + i;
    let x = Math.imul(w ^ Math.imul(seed, 0x27d4eb2d), 0x9e3779b1);
    x ^= x >>> 15;
    x = Math.imul(x, 0x85ebca6b);
    x ^= x >>> 13;
    b.writeInt32LE(x | 0, i * 4);
  }
  const skip = at - first * 4;
  return b.subarray(skip, skip + length);
}

/** Pattern data with the given [offset, length) runs zeroed. */
export function patternWithZeroes(size: number, seed: number, zeroRuns: Array<[number, number]>): Buffer {
  const b = Buffer.from(pattern(size, seed));
  for (const [off, len] of zeroRuns) b.fill(0, off, off + len);
  return b;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stdoutBuf: Buffer;
  stderr: string;
}

/** nbdsh runs `python3` from PATH; the Debian package installs its module for the system interpreter. */
export const SYSTEM_PYTHON_ENV = { PATH: `/usr/bin:${process.env.PATH ?? ''}` };

export function run(cmd: string, args: string[], opts: { env?: Record<string, string>; input?: Buffer; timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
    const timer = setTimeout(() => {
      // The whole group: nbdsh is a shell script whose python child would outlive a plain kill.
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} timed out; stderr: ${Buffer.concat(err).toString()}`));
    }, opts.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const stdoutBuf = Buffer.concat(out);
      resolve({ code, stdout: stdoutBuf.toString(), stdoutBuf, stderr: Buffer.concat(err).toString() });
    });
  });
}

/** Exit 0 or fail with the tool's own output, which is what one needs to debug it. */
export async function runOk(cmd: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

export interface Served {
  dir: string;
  socket: string;
  livePath: string;
  /** The live file's content when the server started. */
  liveData: Buffer;
  snapshotData: Record<string, Buffer>;
  uri(exportName?: string): string;
  readLive(): Buffer;
  /** What the server has logged so far. */
  log(): string;
  /** The log once it satisfies test (stderr arrives after the client sees the effect), or fail after 5 s. */
  waitForLog(test: (log: string) => boolean): Promise<string>;
}

export interface ServeOptions {
  live: Buffer;
  snapshots?: Record<string, Buffer>;
}

/**
 * Start the file server process on fresh files, run fn, then stop it with
 * SIGTERM and check it closed cleanly (exit 0, socket file removed).
 */
export async function withServer(opts: ServeOptions, fn: (s: Served) => Promise<void>): Promise<void> {
  const tmp = tmpdir('vsnap-nbd-');
  const socket = path.join(tmp.dir, 'nbd.sock');
  const livePath = path.join(tmp.dir, 'live.img');
  fs.writeFileSync(livePath, opts.live);
  const args = [SERVER_SCRIPT, '--socket', socket];
  for (const [name, data] of Object.entries(opts.snapshots ?? {})) {
    const p = path.join(tmp.dir, `snap-${name}.img`);
    fs.writeFileSync(p, data);
    args.push('--snapshot', `${name}=${p}`);
  }
  args.push(livePath);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) {
          if (out.startsWith(`READY ${socket}\n`)) resolve();
          else reject(new Error(`unexpected server output: ${out}`));
        }
      });
      void exited.then((code) => reject(new Error(`server exited ${code} before READY: ${stderr}`)));
    });
    const served: Served = {
      dir: tmp.dir,
      socket,
      livePath,
      liveData: opts.live,
      snapshotData: opts.snapshots ?? {},
      uri: (name = '') => `nbd+unix:///${name}?socket=${socket}`,
      readLive: () => fs.readFileSync(livePath),
      log: () => stderr,
      waitForLog: async (ok) => {
        for (let i = 0; i < 500 && !ok(stderr); i++) await new Promise((r) => setTimeout(r, 10));
        assert.ok(ok(stderr), `server log did not show what was expected:\n${stderr}`);
        return stderr;
      },
    };
    await fn(served);
    child.kill('SIGTERM');
    const code = await exited;
    assert.equal(code, 0, `server exit code; log:\n${stderr}`);
    assert.equal(fs.existsSync(socket), false, 'socket file removed on close');
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    tmp.cleanup();
  }
}

/** Assert two buffers are equal, reporting the first difference instead of megabytes of hex. */
export function assertSameBytes(actual: Buffer, expected: Buffer, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  if (actual.equals(expected)) return;
  let i = 0;
  while (actual[i] === expected[i]) i++;
  assert.fail(`${what}: first difference at byte ${i}: got 0x${actual[i].toString(16)}, expected 0x${expected[i].toString(16)}`);
}
