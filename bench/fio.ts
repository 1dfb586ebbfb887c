// fio's nbd engine, one job, JSON output: the client every NBD group drives.
import { run } from './lib.js';

const MiB = 1 << 20;
const FIO_TIMEOUT_S = 300;

export interface FioResult {
  mibps: number;
  iops: number;
  bytes: number;
}

export interface FioJob {
  rw: 'read' | 'write' | 'randread' | 'randwrite';
  bs: string;
  depth: number;
  /** The region fio works in (the export's size or less). */
  size: number;
  /** A fixed amount of work, when less than the region (random jobs). */
  ioSize?: number;
  /** Random offsets seed: the same offsets for every server compared. */
  seed?: number;
}

export function fioArgs(job: FioJob, uri: string): string[] {
  const args = ['--name=bench', '--ioengine=nbd', `--uri=${uri}`, '--output-format=json', `--rw=${job.rw}`, `--bs=${job.bs}`, `--size=${job.size}`, `--iodepth=${job.depth}`];
  if (job.ioSize !== undefined) args.push(`--io_size=${job.ioSize}`);
  // randrepeat: offsets from a fixed seed, so each server does the same work.
  if (job.rw.startsWith('rand')) args.push('--randrepeat=1', ...(job.seed !== undefined ? [`--randseed=${job.seed}`] : []));
  return args;
}

/** Run one job; throws unless fio moved exactly the bytes asked for. */
export async function runFio(job: FioJob, uri: string, cwd: string): Promise<FioResult> {
  // timeout(1): a server that stops answering must not hang the bench.
  const r = await run('timeout', [String(FIO_TIMEOUT_S), 'fio', ...fioArgs(job, uri)], { cwd });
  if (r.code !== 0) throw new Error(`fio (${job.rw} ${job.bs}) on ${uri} exited ${r.code}: ${(r.stderr + r.stdout).slice(-2000)}`);
  // The nbd engine prints "fio: connected to NBD server" before the JSON.
  type Side = { io_bytes: number; bw_bytes: number; iops: number };
  const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: { error: number; read: Side; write: Side }[] };
  const job0 = j.jobs[0];
  const side = job.rw.endsWith('write') ? job0.write : job0.read;
  const want = job.ioSize ?? job.size;
  if (job0.error !== 0 || side.io_bytes !== want) throw new Error(`fio (${job.rw} ${job.bs}) on ${uri}: error ${job0.error}, moved ${side.io_bytes} of ${want} bytes`);
  return { mibps: side.bw_bytes / MiB, iops: side.iops, bytes: side.io_bytes };
}
