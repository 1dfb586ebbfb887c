// The newest change log's last record after a crash (adversary F2, docs/formats.md
// "Recovery rules on open", rule 4), through the real binary: `serve` is killed
// with -9 after a flushed write, so the partition is unclean and its newest
// log's last batch is open to torn-tail recovery.
//   - The record was durable (the block was written in place after it) and a
//     byte of its data is then flipped: every command that opens the log exits
//     3 naming the record, and nothing is written or cut. Before the fix the
//     open cut it as a torn append: the snapshot read the newer data and a
//     restore of it exited 0 with that block wrong.
//   - A genuinely torn append (a record of a new batch whose data only partly
//     landed, its block never written in place) is still cut without a word,
//     and the snapshot reads right.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vsnap, vsnapOk, storeOf, tmpdir, requireTool } from './helpers/cli.js';
import { spawn } from 'node:child_process';
import { SYSTEM_PYTHON_ENV } from './nbd/harness.js';
import { startServe } from './serve/harness.js';
import { encodeBatch, CLOG_HEADER_SIZE, RECORD_HEADER_SIZE, RO_BATCH, readU64 } from '../src/formats/changelog/codec.js';

const skip = requireTool('python3', 'python3-libnbd');
const MiB = 1 << 20;
const BS = 65536;
const RS = BS + RECORD_HEADER_SIZE;

interface Crashed {
  dir: string;
  manifest: string;
  image: string;
  log: string;
  s1: Buffer;
}

/** One 4 MiB file, one partition; snapshot s1; a flushed 4 KiB write into block 3 through serve, then kill -9. */
async function crashedAfterWrite(dir: string): Promise<Crashed> {
  await vsnapOk(['init', dir, '--files', '1', '--file-size', '4MiB', '--partitions', '1', '--workers', '1', '--block-size', String(BS), '-q']);
  const manifest = path.join(dir, 'volume.json');
  const image = path.join(dir, fs.readdirSync(dir).find((n) => n.endsWith('.img'))!);
  const start = Buffer.alloc(4 * MiB);
  for (let i = 0; i < start.length; i += 4) start.writeUInt32LE((i * 2654435761) >>> 0, i);
  await vsnapOk(['write', manifest, '--offset', '0'], { input: start });
  await vsnapOk(['create', manifest, '--name', 's1', '-q']);
  const s1 = fs.readFileSync(image);
  // Found now: after the crash, any command that opens the volume (status too) would recover it first.
  const store = await storeOf(manifest);
  const srv = await startServe(manifest);
  const workers = (JSON.parse(await vsnapOk(['status', manifest, '--json'])) as { workers: { pid: number }[] }).workers.map((w) => w.pid);
  // A client that writes, flushes and stays connected: the crash comes while the write is
  // acknowledged and flushed but the partition not yet marked clean again.
  const py = `import nbd, sys\nh = nbd.NBD()\nh.connect_uri(sys.argv[1])\nh.pwrite(b'\\x5a' * 4096, ${3 * BS + 512})\nh.flush()\nprint('flushed', flush=True)\nsys.stdin.read()\n`;
  const client = spawn('python3', ['-c', py, srv.exportUri('live')], { env: { ...process.env, ...SYSTEM_PYTHON_ENV }, stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    client.stdout.on('data', (d: Buffer) => d.toString().includes('flushed') && resolve());
    client.on('exit', (code) => reject(new Error(`the NBD client exited ${code} before flushing`)));
  });
  const exited = new Promise((r) => srv.proc.on('exit', r));
  srv.proc.kill('SIGKILL');
  await exited;
  client.kill('SIGKILL');
  // The workers leave with their link; wait until they are gone before touching their files.
  for (let k = 0; k < 100 && workers.some((p) => fs.existsSync(`/proc/${p}`) && !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${p}/status`, 'utf8'))); k++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const snapDir = path.join(store, 'snapshots', fs.readdirSync(path.join(store, 'snapshots')).sort().at(-1)!);
  const log = path.join(snapDir, fs.readdirSync(snapDir).find((n) => n.endsWith('.clog'))!);
  assert.equal((fs.statSync(log).size - CLOG_HEADER_SIZE) / RS, 1, 'the write copied block 3 into the log: one record');
  return { dir, manifest, image, log, s1 };
}

test('a durable last record of the newest log damaged after a crash: every command exits 3 naming it, nothing is written or cut', { skip, timeout: 120_000 }, async () => {
  const t = tmpdir('vsnap-tail-');
  try {
    const c = await crashedAfterWrite(t.dir);
    const fd = fs.openSync(c.log, 'r+');
    const at = CLOG_HEADER_SIZE + RECORD_HEADER_SIZE + 77;
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    fs.writeSync(fd, Buffer.from([b[0] ^ 0xff]), 0, 1, at);
    fs.closeSync(fd);
    const logBefore = fs.readFileSync(c.log);
    const imageBefore = fs.readFileSync(c.image);
    const read = await vsnap(['read', c.manifest, '--snapshot', 's1', '--offset', String(3 * BS), '--length', String(BS)]);
    assert.equal(read.code, 3, `read of the snapshot: exit ${read.code}, ${read.stderr}`);
    assert.match(read.stderr, new RegExp(`\\.clog at offset ${CLOG_HEADER_SIZE}: record of block 3 in the newest batch fails its crc, and the block's live copy does not match it either`));
    const restore = await vsnap(['restore', c.manifest, 's1']);
    assert.equal(restore.code, 3, `restore: exit ${restore.code}, ${restore.stderr}`);
    assert.ok(fs.readFileSync(c.image).equals(imageBefore), 'the backing file was written');
    assert.ok(fs.readFileSync(c.log).equals(logBefore), 'the damaged log was changed (cut)');
  } finally {
    t.cleanup();
  }
});

test('a torn append at the tail of the newest log (its block never written in place) is still cut, and the snapshot reads right', { skip, timeout: 120_000 }, async () => {
  const t = tmpdir('vsnap-tail-');
  try {
    const c = await crashedAfterWrite(t.dir);
    // A record of the next batch for block 9, written with the block's live content, whose
    // data landed only in its even 512-byte sectors: what a power cut mid-append leaves.
    const last = fs.readFileSync(c.log).subarray(CLOG_HEADER_SIZE);
    const batch = readU64(last, RO_BATCH) + 1;
    const live9 = fs.readFileSync(c.image).subarray(9 * BS, 10 * BS);
    const rec = Buffer.concat(encodeBatch([{ block: 9, data: Buffer.from(live9) }], batch));
    for (let s = 1; s * 512 < BS; s += 2) rec.fill(0, RECORD_HEADER_SIZE + s * 512, RECORD_HEADER_SIZE + (s + 1) * 512);
    fs.appendFileSync(c.log, rec);
    const snap = await vsnap(['read', c.manifest, '--snapshot', 's1', '--offset', '0', '--length', String(4 * MiB)]);
    assert.equal(snap.code, 0, snap.stderr);
    assert.ok(snap.stdoutBuf.equals(c.s1), 's1 reads as it was taken');
    assert.equal(fs.statSync(c.log).size, CLOG_HEADER_SIZE + RS, 'the torn record was cut');
    const v = await vsnap(['verify', c.manifest]);
    assert.equal(v.code, 0, v.stderr);
    await vsnapOk(['restore', c.manifest, 's1', '-q']);
    assert.ok(fs.readFileSync(c.image).equals(c.s1), 'restore made the volume s1');
  } finally {
    t.cleanup();
  }
});
