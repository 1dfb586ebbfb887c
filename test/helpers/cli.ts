// Runs the real binary (bin/vsnap) as a child process, the way users and
// scripts do. Every end-to-end test goes through this one helper.
import { spawn } from 'node:child_process';
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
