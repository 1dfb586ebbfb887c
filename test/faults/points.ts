// Fault points: a counting run of one operation with the shim preloaded lists
// every file-system call occurrence per process role; each occurrence and
// errno is then one case. Also: the prepared volume every case starts from
// (a golden copy, cloned per case) and the deterministic CI share.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { makeFixture, liveFromFiles, rng, type Fixture } from '../helpers/volume-fixture.js';
import { runCli, diskViews, type CliRun } from '../crash/harness.js';

export const SHIM = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fs-shim.js');
export type Errno = 'EIO' | 'ENOSPC';
/** Calls that can fail for want of space; every call can fail with EIO. */
const SPACE_CALLS = new Set(['open', 'write', 'fsync', 'fdatasync', 'ftruncate', 'mkdir', 'rename', 'link']);

export interface FaultPoint {
  role: string;
  call: string;
  nth: number;
  /** The file the counting run saw at this occurrence. */
  path: string;
}

export interface Case extends FaultPoint {
  errno: Errno;
}

export function caseName(c: Case): string {
  return `${c.role}:${c.call}#${c.nth}:${c.errno}`;
}

/** The environment that preloads the shim for one run (no fault: counting only). */
export function shimEnv(root: string, logDir: string, c?: Case): Record<string, string> {
  const env: Record<string, string> = {
    VSNAP_FAULT_ROOT: root,
    VSNAP_FAULT_LOG: logDir,
    VSNAP_FAULT_SELF_ROLE: '',
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${pathToFileURL(SHIM).href}`,
  };
  if (c) Object.assign(env, { VSNAP_FAULT_ROLE: c.role, VSNAP_FAULT_CALL: c.call, VSNAP_FAULT_NTH: String(c.nth), VSNAP_FAULT_ERRNO: c.errno });
  return env;
}

/** Every occurrence the shim logged in `logDir`, in role then call then occurrence order. */
export function readPoints(logDir: string): FaultPoint[] {
  const out: FaultPoint[] = [];
  for (const f of fs.readdirSync(logDir).filter((n) => n.endsWith('.log')).sort()) {
    const role = f.split('.')[0];
    for (const line of fs.readFileSync(path.join(logDir, f), 'utf8').split('\n')) {
      const m = /^(\S+) (\d+) (.*)$/.exec(line);
      if (m) out.push({ role, call: m[1], nth: Number(m[2]), path: m[3] });
    }
  }
  return out.sort((a, b) => a.role.localeCompare(b.role) || a.call.localeCompare(b.call) || a.nth - b.nth);
}

/** What the shim reports it failed, if it reached the chosen occurrence. */
export function readFired(logDir: string): string | undefined {
  const f = fs.readdirSync(logDir).find((n) => n.startsWith('fired.'));
  return f ? fs.readFileSync(path.join(logDir, f), 'utf8').trim() : undefined;
}

export function casesOf(points: FaultPoint[]): Case[] {
  return points.flatMap((p) => (SPACE_CALLS.has(p.call) ? (['EIO', 'ENOSPC'] as const) : (['EIO'] as const)).map((errno) => ({ ...p, errno })));
}

/**
 * The share that runs in the normal suite: every fdatasync occurrence and
 * every coordinator rename (the commit points), with EIO; of the rest every
 * `stride`-th case (counted from `offset`), fixed so that a CI failure
 * replays. VSNAP_FAULTS_FULL=1 runs them all.
 */
export function ciShare(cases: Case[], stride: number, offset = 0): Case[] {
  if (process.env.VSNAP_FAULTS_FULL === '1') return cases;
  const must = (c: Case) => c.errno === 'EIO' && (c.call === 'fdatasync' || (c.call === 'rename' && c.role === 'coordinator'));
  const rest = cases.filter((c) => !must(c));
  return [...cases.filter(must), ...rest.filter((_, i) => i % stride === offset % stride)];
}

// ---------- the prepared volume ----------

export interface Model {
  live: Buffer;
  snaps: Map<number, Buffer>;
}

export interface Golden {
  fx: Fixture;
  model: Model;
}

const storeOf = (fx: Fixture) => path.join(fx.dir, '.vsnap', 'model');

async function must(args: string[], input?: Buffer): Promise<CliRun> {
  const r = await runCli(args, { input });
  if (r.code !== 0) throw new Error(`preparing the volume: vsnap ${args.join(' ')} failed: ${r.stderr}`);
  return r;
}

/** Deterministic data for a write. */
export function pattern(seed: number, len: number): Buffer {
  const r = rng(seed);
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = Math.floor(r() * 256);
  return b;
}

/** Three snapshots with writes between and after them: every operation has work to do. */
export async function prepareGolden(dir: string): Promise<Golden> {
  const fx = makeFixture(dir, { blockSize: 4096, scale: 4 });
  const bs = fx.blockSize;
  for (let i = 0; i < 3; i++) {
    await must(['write', fx.manifest, '--offset', String(bs * (3 + 7 * i) + 100)], pattern(100 + i, 9 * bs));
    await must(['create', fx.manifest, '--name', `g${i}`]);
  }
  await must(['write', fx.manifest, '--offset', String(bs * 20 + 1000)], pattern(200, 6 * bs));
  const snaps = diskViews(fx);
  for (const [id, v] of snaps) {
    const r = await must(['read', fx.manifest, '--offset', '0', '--length', String(fx.size), '--snapshot', String(id)]);
    if (!r.stdoutBuf.equals(v)) throw new Error(`preparing the volume: snapshot ${id} reads differently through vsnap and from its logs`);
  }
  return { fx, model: { live: liveFromFiles(fx), snaps } };
}

/** A fresh copy of the golden volume in `dir` (backing files, manifest and store). */
export function cloneGolden(g: Golden, dir: string): { fx: Fixture; model: Model } {
  fs.cpSync(g.fx.dir, dir, { recursive: true, preserveTimestamps: true });
  const fx: Fixture = { ...g.fx, dir, manifest: path.join(dir, path.basename(g.fx.manifest)) };
  return { fx, model: { live: Buffer.from(g.model.live), snaps: new Map([...g.model.snaps].map(([k, v]) => [k, Buffer.from(v)])) } };
}

export { storeOf };
