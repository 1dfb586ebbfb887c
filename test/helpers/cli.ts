// Runs the real binary (bin/vsnap) as a child process, the way users and
// scripts do. Every end-to-end test goes through this one helper.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = path.join(ROOT, 'bin', 'vsnap');

export interface RunResult {
  code: number;
  stdout: string;
  stdoutBuf: Buffer;
  stderr: string;
}

export function vsnap(args: string[], opts: { input?: Buffer | string; cwd?: string; env?: Record<string, string> } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, NO_COLOR: '1', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
    child.on('close', (code) => {
      const stdoutBuf = Buffer.concat(out);
      resolve({ code: code ?? -1, stdout: stdoutBuf.toString(), stdoutBuf, stderr: Buffer.concat(err).toString() });
    });
  });
}

/** A fresh temporary directory, removed by the returned cleanup. */
export function tmpdir(prefix = 'vsnap-test-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Every file under a directory with its size and mtime, to prove nothing was written. */
export function snapshotTree(dir: string): string {
  const rows: string[] = [];
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      const p = path.join(d, name);
      const st = fs.statSync(p);
      if (st.isDirectory()) walk(p);
      else rows.push(`${path.relative(dir, p)} ${st.size} ${st.mtimeMs}`);
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return rows.join('\n');
}

/** Run vsnap and require exit 0 (the message carries its stderr); returns its stdout. */
export async function vsnapOk(args: string[], opts: Parameters<typeof vsnap>[1] = {}): Promise<string> {
  const r = await vsnap(args, opts);
  if (r.code !== 0) throw new Error(`vsnap ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** The store directory a manifest's volume uses (from `status --json`). */
export async function storeOf(manifest: string): Promise<string> {
  return (JSON.parse(await vsnapOk(['status', manifest, '--json'])) as { store: string }).store;
}

/**
 * Every path under dir, directories and links included, with its mode, size,
 * mtime and (files) a digest of its bytes: equal before and after means the
 * command changed nothing there, not even a time stamp. dirMtimes: false for
 * a command that takes the store's lock (made and removed: its directory's
 * mtime moves, nothing else).
 */
export function treeDigest(dir: string, { dirMtimes = true } = {}): string {
  const rows: string[] = [];
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      const p = path.join(d, name);
      const st = fs.lstatSync(p);
      const rel = path.relative(dir, p);
      if (st.isDirectory()) {
        rows.push(`${rel}/ ${st.mode.toString(8)}${dirMtimes ? ` ${st.mtimeMs}` : ''}`);
        walk(p);
      } else if (st.isSymbolicLink()) rows.push(`${rel} -> ${fs.readlinkSync(p)}`);
      else rows.push(`${rel} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`);
    }
  };
  walk(dir);
  return rows.join('\n');
}

/** Fail (CI) or skip with an install hint (locally) when an external tool is missing. */
export function requireTool(tool: string, pkg: string): string | undefined {
  const found = (process.env.PATH ?? '').split(':').some((d) => d && fs.existsSync(path.join(d, tool)));
  if (found) return undefined;
  const msg = `${tool} not found: install the Debian package ${pkg}`;
  if (process.env.CI) throw new Error(`${msg} (CI must not skip interoperability tests)`);
  return msg;
}

/** requireTool for several tools: the first one missing, or undefined when all are installed. */
export function requireTools(tools: readonly (readonly [tool: string, pkg: string])[]): string | undefined {
  for (const [t, p] of tools) {
    const m = requireTool(t, p);
    if (m) return m;
  }
  return undefined;
}
