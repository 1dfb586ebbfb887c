// Benchmark plumbing: run commands, time them, take medians, print tables.
// Peers run in the same process run, alternated with vsnap, so that the
// machine's noise hits both sides alike; ratios are what we quote.
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Table from 'cli-table3';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/**
 * The vsnap under test: this repo's bin/vsnap unless run.ts is given
 * --vsnap PATH (a checkout of an older commit, built), so one bench can
 * measure before and after. A live binding: every group sees the choice.
 */
export let VSNAP = path.join(ROOT, 'bin', 'vsnap');

export function setVsnap(p: string): void {
  VSNAP = path.resolve(p);
}

/** A goal from issue 11 or design.md §10, judged on the row's median. */
export interface Goal {
  op: '>=' | '<=';
  target: number;
  /** What the ratio is taken against, printed after the target ("node -e 0"). */
  of?: string;
}

export interface Row {
  group: string;
  what: string;
  /** The median of the runs (for ratios: of the per-run ratios). */
  value: number;
  min?: number;
  max?: number;
  unit: string;
  goal?: Goal;
  note?: string;
}

/** Median, min and max of a row's runs, spread into a Row. */
export function spread(xs: number[]): { value: number; min: number; max: number } {
  if (!xs.length) return { value: NaN, min: NaN, max: NaN };
  return { value: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

/**
 * Per-run ratios a[i] / b[i]: both sides of run i ran back to back, so their
 * ratio carries less of the machine's drift than a ratio of medians.
 */
export function perRun(a: number[], b: number[]): number[] {
  if (a.length !== b.length) throw new Error(`per-run ratio of ${a.length} runs against ${b.length}`);
  return a.map((x, i) => x / b[i]);
}

export function goalText(g: Goal): string {
  // 1.0, not 1: the goals are ratios, written as issue 11 writes them.
  return `${g.op} ${g.target === 1 ? '1.0' : g.target}${g.of ? `x ${g.of}` : ''}`;
}

export function goalMet(r: Row): string {
  if (!r.goal) return '';
  if (!Number.isFinite(r.value)) return 'missing';
  return (r.goal.op === '>=' ? r.value >= r.goal.target : r.value <= r.goal.target) ? 'met' : 'missed';
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

function fmt(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
}

export function printRows(title: string, rows: Row[]): void {
  // Plain borders: benchmark output is pasted into notes and logs.
  const t = new Table({ head: ['benchmark', 'measure', 'median', 'min', 'max', 'unit', 'goal', 'status', 'note'], style: { head: [], border: [] } });
  for (const r of rows) t.push([r.group, r.what, fmt(r.value), fmt(r.min), fmt(r.max), r.unit, r.goal ? goalText(r.goal) : '', goalMet(r), r.note ?? '']);
  process.stdout.write(`\n${title}\n${t.toString()}\n`);
}

/** A row for a peer or a case that could not run, in place of its figures. */
export function missing(group: string, what: string, why: string, goal?: Goal): Row {
  return { group, what, value: NaN, unit: 'missing', goal, note: why };
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
