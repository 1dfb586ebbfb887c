// Benchmark plumbing: run commands, time them, take medians, print tables.
// Peers run in the same process run, alternated with vsnap, so that the
// machine's noise hits both sides alike; ratios are what we quote.
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Table from 'cli-table3';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const VSNAP = path.join(ROOT, 'bin', 'vsnap');

export interface Row {
  group: string;
  what: string;
  value: number;
  unit: string;
  note?: string;
}

export function run(cmd: string, args: string[], opts: { input?: Buffer; env?: Record<string, string>; cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { env: { ...process.env, NO_COLOR: '1', ...opts.env }, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      resolve({ code: code ?? -1, stdout: out, stderr: err, ms });
    });
  });
}

export async function must(cmd: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<{ stdout: string; ms: number }> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.slice(-2000)}`);
  return r;
}

export function vsnap(args: string[], opts: Parameters<typeof run>[2] = {}) {
  return must(process.execPath, [VSNAP, ...args], opts);
}

export function have(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function printRows(title: string, rows: Row[]): void {
  // Plain borders: benchmark output is pasted into notes and logs.
  const t = new Table({ head: ['benchmark', 'measure', 'median', 'unit', 'note'], style: { head: [], border: [] } });
  for (const r of rows) t.push([r.group, r.what, r.value >= 100 ? r.value.toFixed(0) : r.value.toFixed(2), r.unit, r.note ?? '']);
  process.stdout.write(`\n${title}\n${t.toString()}\n`);
}

export function mbps(bytes: number, ms: number): number {
  return bytes / (1 << 20) / (ms / 1000);
}

/** Run both sides of a comparison, swapping who goes first on odd runs so warm-up effects fall on each alike. */
export async function alternate(run: number, ours: () => Promise<void>, peer: () => Promise<void>): Promise<void> {
  if (run % 2) {
    await peer();
    await ours();
  } else {
    await ours();
    await peer();
  }
}
