// NBD servers for the benchmarks: `vsnap serve` and its peers (nbdkit,
// qemu-nbd) started on unix sockets, stopped with SIGTERM, plus the images
// they serve: deterministic non-zero data so every read and copy moves real
// bytes, and one raw file holding the same bytes as a vsnap volume.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { VSNAP, must, have, vsnap } from './lib.js';

const MiB = 1 << 20;

export interface Server {
  /** The default export's URI. */
  uri: string;
  /** The NBD socket, for URIs of other exports (exportUri). */
  socket: string;
  stop(): Promise<void>;
}

export interface Pristine {
  /** Directory holding volume.json and disk-*.img for vsnap. */
  volDir: string;
  /** One raw file with the same bytes, for the peers. */
  raw: string;
}

export function exportUri(socket: string, name: string): string {
  return `nbd+unix:///${name}?socket=${socket}`;
}

function fsType(dir: string): string {
  const r = spawnSync('findmnt', ['-no', 'FSTYPE', '-T', dir], { encoding: 'utf8' });
  // Stacked mounts (two tmpfs on /dev/shm here) print one line each; take the first.
  return r.status === 0 ? r.stdout.trim().split('\n')[0] : 'unknown';
}

export function placeLabel(dir: string): string {
  const t = fsType(dir);
  return t === 'tmpfs' ? 'tmpfs' : `disk, ${t}`;
}

/** Deterministic non-zero filler: 4 MiB of xorshift output, each 4 KiB stamped with its offset so no two blocks are equal. */
export function fillImage(file: string, size: number, seed: number): void {
  const chunk = Buffer.allocUnsafe(4 * MiB);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < chunk.length; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    chunk.writeUInt32LE(x, i);
  }
  const fd = fs.openSync(file, 'w');
  try {
    for (let off = 0; off < size; off += chunk.length) {
      for (let b = 0; b < chunk.length; b += 4096) chunk.writeDoubleLE(off + b + seed * 0.5, b);
      fs.writeSync(fd, chunk, 0, Math.min(chunk.length, size - off), off);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** A vsnap volume of `files` x `fileSize` filled with data (4 partitions, 2 workers), and the same bytes in one raw file. */
export async function makePristine(dir: string, files: number, fileSize: number): Promise<Pristine> {
  const volDir = path.join(dir, 'pristine-vol');
  await vsnap(['init', volDir, '--files', String(files), '--file-size', `${fileSize / MiB}MiB`, '--partitions', '4', '--workers', '2']);
  // Real data in the images: a first write after the snapshot then copies real
  // old bytes, and tmpfs pages already exist, for vsnap and peers alike.
  for (let i = 0; i < files; i++) fillImage(path.join(volDir, `disk-${i}.img`), fileSize, i + 1);
  const raw = path.join(dir, 'pristine-peer.img');
  await must('sh', ['-c', 'cat "$@" > "$0"', raw, ...Array.from({ length: files }, (_, i) => path.join(volDir, `disk-${i}.img`))]);
  if (fs.statSync(raw).size !== files * fileSize) throw new Error(`peer image ${raw} is ${fs.statSync(raw).size} bytes, want ${files * fileSize}`);
  return { volDir, raw };
}

/** A real copy (no reflink, no holes), then the filesystem synced so dirty pages of the copy do not flush during the measurement. */
export async function freshCopy(src: string, dest: string): Promise<void> {
  const isDir = fs.statSync(src).isDirectory();
  if (isDir) fs.mkdirSync(dest, { recursive: true });
  await must('cp', ['-r', '--sparse=never', '--reflink=never', isDir ? `${src}/.` : src, dest]);
  await must('sync', ['-f', isDir ? dest : path.dirname(dest)]);
}

function waitExit(child: ChildProcess, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | 'timeout'> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve('timeout'), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal });
    });
  });
}

/** SIGTERM, then insist that it exits by itself (a server that needs SIGKILL is reported). */
async function stopChild(child: ChildProcess, name: string, stderr: () => string, wantZero: boolean): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited early (${child.exitCode ?? child.signalCode}): ${stderr().slice(-1500)}`);
  child.kill('SIGTERM');
  const r = await waitExit(child, 20_000);
  if (r === 'timeout') {
    child.kill('SIGKILL');
    await waitExit(child, 5_000);
    throw new Error(`${name} did not exit within 20 s of SIGTERM: ${stderr().slice(-1500)}`);
  }
  if (wantZero && r.code !== 0) throw new Error(`${name} exited ${r.code ?? r.signal} after SIGTERM: ${stderr().slice(-1500)}`);
}

function spawnServer(cmd: string, args: string[], env: Record<string, string> = {}): { child: ChildProcess; out: () => string; err: () => string } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', ...env } });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (err += d));
  return { child, out: () => out, err: () => err };
}

/** Poll until the socket accepts a connection (nbdkit, qemu-nbd -t: a probe that hangs up is harmless). */
async function waitForSocket(sock: string, child: ChildProcess, name: string, err: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited before listening: ${err().slice(-1500)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(sock);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${name} did not listen on ${sock} within 30 s`);
}

/** `vsnap serve` on the volume as it is (the caller copies and snapshots first). */
export async function serveVsnap(manifest: string): Promise<Server> {
  // Started as a user starts it: bin/vsnap run by its #! line, which carries
  // the coordinator's V8 flags (bin/vsnap); `node bin/vsnap` would drop them.
  const s = spawnServer(VSNAP, ['serve', manifest]);
  // Without --run, serve prints its URI on stdout once it is listening.
  const uriLine = /^nbd(\+unix)?:\/\/\S+/m;
  const deadline = Date.now() + 30_000;
  while (!uriLine.test(s.out())) {
    if (s.child.exitCode !== null) throw new Error(`vsnap serve exited ${s.child.exitCode}: ${s.err().slice(-1500)}`);
    if (Date.now() > deadline) {
      s.child.kill('SIGKILL');
      throw new Error('vsnap serve printed no URI within 30 s');
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const uri = uriLine.exec(s.out())![0];
  const socket = /[?&]socket=([^&\s]+)/.exec(uri)?.[1];
  if (!socket) {
    s.child.kill('SIGKILL');
    throw new Error(`vsnap serve printed ${uri}: no unix socket in it`);
  }
  return { uri, socket, stop: () => stopChild(s.child, 'vsnap serve', s.err, true) };
}

/** nbdkit's file plugin on `img`, with the cow filter if asked (its overlay in `tmp`). */
export async function serveNbdkit(img: string, sock: string, cow: boolean, tmp: string): Promise<Server> {
  // -f: stay in the foreground so SIGTERM reaches it; --exit-with-parent: no
  // stray server if the bench dies. The cow overlay goes to $TMPDIR
  // (/var/tmp by default): point it at the same filesystem as the images,
  // like vsnap's change logs beside its volume.
  fs.rmSync(sock, { force: true });
  const args = ['-U', sock, '-f', '--exit-with-parent', ...(cow ? ['--filter=cow'] : []), 'file', `file=${img}`];
  const s = spawnServer('nbdkit', args, cow ? { TMPDIR: tmp } : {});
  try {
    await waitForSocket(sock, s.child, 'nbdkit', s.err);
  } catch (e) {
    s.child.kill('SIGKILL');
    throw e;
  }
  return { uri: exportUri(sock, ''), socket: sock, stop: () => stopChild(s.child, 'nbdkit', s.err, true) };
}

/**
 * qemu-nbd on a raw file. -t (persistent): without it qemu-nbd exits when
 * the first client (our readiness probe) hangs up. Default cache mode
 * (writeback), like nbdkit. shared > 1 (-e) is what makes qemu-nbd advertise
 * CAN_MULTI_CONN, without which nbdcopy -C 4 falls back to one connection.
 */
export async function serveQemuNbd(img: string, sock: string, opts: { readOnly?: boolean; shared?: number } = {}): Promise<Server> {
  fs.rmSync(sock, { force: true });
  const args = ['-k', sock, '-f', 'raw', '-t', ...(opts.readOnly ? ['-r'] : []), ...(opts.shared ? ['-e', String(opts.shared)] : []), img];
  const s = spawnServer('qemu-nbd', args);
  try {
    await waitForSocket(sock, s.child, 'qemu-nbd', s.err);
  } catch (e) {
    s.child.kill('SIGKILL');
    throw e;
  }
  return { uri: exportUri(sock, ''), socket: sock, stop: () => stopChild(s.child, 'qemu-nbd', s.err, true) };
}

export function cowFilterMissing(): string | null {
  if (!have('nbdkit')) return 'nbdkit not installed';
  const r = spawnSync('nbdkit', ['--filter=cow', 'file', '--dump-plugin'], { stdio: 'ignore' });
  return r.status === 0 ? null : 'nbdkit cow filter not installed';
}

/** What nbdinfo says of an export's CAN_MULTI_CONN flag ("unknown" without nbdinfo). */
export function multiConn(uri: string): string {
  if (!have('nbdinfo')) return 'unknown (no nbdinfo)';
  const r = spawnSync('nbdinfo', ['--can', 'multi-conn', uri]);
  // nbdinfo --can exits 0 for true, 2 for false, else an error.
  return r.status === 0 ? 'yes' : r.status === 2 ? 'no' : `unknown (nbdinfo exited ${r.status})`;
}
