// vsnap read and vsnap write: bytes of the live volume or of a snapshot.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { OperationError, UsageError, fileError } from '../errors.js';
import { resolveRef } from '../store/names.js';
import { withCluster } from '../session.js';
import type { Volume } from '../manifest/layout.js';
import { trackTemp } from '../interrupt.js';
import { abandonOutputs, beginOutput, finishOutputs } from './output-file.js';

const CHUNK = 8 << 20;

export interface ReadOptions {
  offset: number;
  length: number;
  snapshot?: string;
  output?: string;
  force?: boolean;
}

async function writeOut(out: Writable, buf: Buffer): Promise<void> {
  // once() rejects on 'error', so a failing output ends the command with its error.
  if (!out.write(buf)) await once(out, 'drain');
}

/** An output file must be creatable: its directory exists and it is not itself a directory. */
export function checkOutputPath(file: string, flag: string): void {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(file);
  } catch {
    /* a new file */
  }
  if (st?.isDirectory()) throw new UsageError(`${flag}: ${file} is a directory`);
  const dir = path.dirname(path.resolve(file));
  if (!fs.existsSync(dir)) throw new UsageError(`${flag}: directory ${dir} does not exist`);
}

/**
 * The file an --output names, as it is to be written: a symbolic link
 * resolved (the data goes to the file it names, renamed over that file, the
 * link kept: renaming over the link itself replaced it, and `/dev/stdout`,
 * a link to /proc/self/fd/1, with it), a dangling one refused. A pipe or a
 * socket cannot be opened by name by export's worker processes (for them
 * /proc/self is their own, their stdout /dev/null): refused unless the
 * caller writes it itself (`streams`, vsnap read).
 */
export function resolveOutput(file: string, flag: string, o: { streams: boolean }): string {
  checkOutputPath(file, flag);
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(file);
  } catch {
    /* a new file, or a dangling link (below) */
  }
  if (st && (st.isFIFO() || st.isSocket())) {
    // vsnap read writes a FIFO by name, and its own stdout (`--output /dev/stdout`) as stdout.
    if (o.streams && (st.isFIFO() || isOwnStdout(file))) return file;
    throw new UsageError(`${flag}: ${file} is a ${st.isFIFO() ? 'pipe' : 'socket'}: export writes its output by name from its worker processes, so it must be a file or a device (to stream the volume, use \`vsnap read\`, which writes to stdout)`);
  }
  let link = false;
  try {
    link = fs.lstatSync(file).isSymbolicLink();
  } catch {
    /* a new file */
  }
  if (!link) return file;
  if (!st) throw new UsageError(`${flag}: ${file} is a symbolic link to a missing file (${fs.readlinkSync(file)})`);
  return fs.realpathSync(file);
}

/** The file is this process's stdout (`/dev/stdout`, or a link to it). */
export function isOwnStdout(file: string): boolean {
  try {
    const a = fs.statSync(file);
    const b = fs.fstatSync(1);
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}

/**
 * Refuse an output that would overwrite the volume itself: one of its backing
 * files (same device and inode, so links are caught), its manifest, or
 * anything inside its store.
 */
export function checkOutput(volume: Volume, manifest: string, out: string, flag: string): void {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(out);
  } catch {
    /* a new file */
  }
  const resolved = path.resolve(out);
  if (resolved.startsWith(path.resolve(volume.storeDir) + path.sep)) throw new UsageError(`${flag}: ${out} is inside the store`);
  if (!st) return;
  const same = (p: string) => {
    try {
      const b = fs.statSync(p);
      return b.dev === st!.dev && b.ino === st!.ino;
    } catch {
      return false;
    }
  };
  if (same(manifest)) throw new UsageError(`${flag}: ${out} is this volume's manifest`);
  for (const p of volume.partitions) {
    for (const e of p.extents) if (same(e.path)) throw new UsageError(`${flag}: ${out} is the backing file ${e.file} of this volume`);
  }
}

export async function readCmd(manifest: string, o: ReadOptions): Promise<{ bytes: number }> {
  return withCluster(manifest, 'read', { create: false, force: o.force, interruptible: true }, async (cluster) => {
    cluster.checkRange(o.offset, o.length);
    const view = o.snapshot === undefined ? 0 : resolveRef(cluster.store.snapshots, o.snapshot).id;
    const file = o.output ? resolveOutput(o.output, '--output', { streams: true }) : undefined;
    if (file) checkOutput(cluster.volume, manifest, file, '--output');
    // --output: written whole or not at all (a temporary file renamed at the end; output-file.ts).
    const target = file && !isOwnStdout(file) ? beginOutput(file, 0) : undefined;
    try {
      const out: Writable = target ? fs.createWriteStream(target.writing, { flags: target.writing === target.final ? 'w' : 'r+' }) : process.stdout;
      const failed = new Promise<never>((_, reject) => out.once('error', reject));
      failed.catch(() => {});
      // stdout closed by its reader (`vsnap read ... | head -c 100`): the
      // reader has what it wanted, so stop reading and end as a success, the
      // workers closed in order (docs/decisions.md "A closed stdout pipe").
      let readerGone = false;
      const gone = (err: unknown) => !target && (err as NodeJS.ErrnoException)?.code === 'EPIPE';
      // Keep two chunks in flight so workers read while stdout drains.
      let pending: Promise<Buffer> | undefined;
      for (let pos = 0; (pos < o.length || pending) && !readerGone; ) {
        const next = pos < o.length ? cluster.read(view, o.offset + pos, Math.min(CHUNK, o.length - pos)) : undefined;
        if (next) {
          next.catch(() => {}); // awaited on the next turn
          pos += Math.min(CHUNK, o.length - pos);
        }
        if (pending) {
          try {
            await writeOut(out, await pending);
          } catch (err) {
            if (!gone(err)) throw err;
            readerGone = true;
            // The read already asked for is answered before the workers close.
            await next?.catch(() => undefined);
          }
        }
        pending = next;
      }
      if (target) {
        out.end();
        await once(out, 'finish');
        if (target.writing !== target.final) {
          try {
            const fd = fs.openSync(target.writing, 'r+');
            try {
              fs.fsyncSync(fd);
            } finally {
              fs.closeSync(fd);
            }
          } catch (err) {
            throw fileError(target.writing, err);
          }
        }
        await finishOutputs([target]);
      }
    } catch (err) {
      if (target) abandonOutputs([target]);
      throw err;
    }
    return { bytes: o.length };
  });
}

/**
 * The input is read to its end before anything is written, so input that
 * would run past the end of the volume changes nothing. Up to 64 MiB stays in
 * memory; more is spooled to a temporary file.
 */
async function collect(input: Readable, limit: number, onRead?: (bytes: number) => void): Promise<{ chunks: Buffer[]; spool?: string; size: number }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let spool: string | undefined;
  let fd: number | undefined;
  try {
    for await (const c of input as AsyncIterable<Buffer>) {
      size += c.length;
      onRead?.(size);
      if (size > limit) throw new UsageError(`input: ${size}+ bytes at --offset would run past the end of the volume (${limit} bytes available)`);
      if (fd === undefined && size > 64 << 20) {
        // A private directory (mkdtemp: 0700); removed on every exit, Ctrl-C included (src/interrupt.ts).
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsnap-write-'));
        trackTemp(dir);
        spool = path.join(dir, 'input');
        fd = fs.openSync(spool, 'w', 0o600);
        for (const k of chunks) fs.writeSync(fd, k);
        chunks.length = 0;
      }
      if (fd !== undefined) fs.writeSync(fd, c);
      else chunks.push(c);
    }
  } catch (err) {
    if (spool) fs.rmSync(path.dirname(spool), { recursive: true, force: true });
    throw err;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
  return { chunks, spool, size };
}

export interface WriteProgress {
  /** A new phase: "reading stdin" (total unknown: 0), "writing" (total: the input's size), "syncing". */
  onPhase?: (label: string, total: number) => void;
  /** Bytes done in the current phase: read from the input, or written and acknowledged by the workers. */
  onProgress?: (bytes: number) => void;
}

export async function writeCmd(manifest: string, o: { offset: number; input?: string } & WriteProgress): Promise<{ bytes: number }> {
  return withCluster(manifest, 'write', { create: true, interruptible: true }, async (cluster) => {
    cluster.checkRange(o.offset, 0);
    const limit = cluster.size - o.offset;
    let source: { chunks: Buffer[]; spool?: string; size: number };
    if (o.input !== undefined) {
      let st: fs.Stats;
      try {
        st = fs.statSync(o.input);
      } catch (err) {
        throw new UsageError(`--input: cannot read ${o.input} (${(err as NodeJS.ErrnoException).code})`);
      }
      if (st.isDirectory()) throw new UsageError(`--input: ${o.input} is a directory`);
      if (st.isFile()) {
        if (st.size > limit) throw new UsageError(`--input: ${o.input} holds ${st.size} bytes; only ${limit} fit after --offset ${o.offset}`);
        source = { chunks: [], spool: o.input, size: st.size };
      } else {
        // A pipe, FIFO or character device has no size to trust: read it to its end like stdin.
        o.onPhase?.(`reading ${o.input}`, 0);
        source = await collect(fs.createReadStream(o.input), limit, o.onProgress);
      }
    } else {
      o.onPhase?.('reading stdin', 0);
      source = await collect(process.stdin, limit, o.onProgress);
    }
    o.onPhase?.('writing', source.size);
    let written = 0;
    try {
      const lanes: Promise<void>[] = [];
      let pos = 0;
      const submit = async (buf: Buffer) => {
        const at = o.offset + pos;
        pos += buf.length;
        // Counted when the workers acknowledge the write (its old blocks logged durably first).
        const p = cluster.write(at, buf).then(() => o.onProgress?.((written += buf.length)));
        p.catch(() => {}); // observed by the await below; avoid an unhandled rejection meanwhile
        lanes.push(p);
        if (lanes.length >= 4) await lanes.shift();
      };
      if (source.spool) {
        const fh = await fs.promises.open(source.spool, 'r');
        try {
          for (let off = 0; off < source.size; off += CHUNK) {
            const buf = Buffer.allocUnsafe(Math.min(CHUNK, source.size - off));
            // A file that shrank while being read must not send unread (uninitialised) bytes to the volume.
            let got = 0;
            while (got < buf.length) {
              const { bytesRead } = await fh.read(buf, got, buf.length - got, off + got);
              if (bytesRead === 0) {
                const what = source.spool === o.input ? `--input ${o.input}` : 'the spooled input';
                throw new OperationError(`${what}: shrank while being read (ended at byte ${off + got} of ${source.size}); its first ${off} bytes went to the volume at --offset ${o.offset}, nothing after them`);
              }
              got += bytesRead;
            }
            await submit(buf);
          }
        } finally {
          await fh.close();
        }
      } else {
        for (const c of source.chunks) for (let k = 0; k < c.length; k += CHUNK) await submit(c.subarray(k, k + CHUNK));
      }
      await Promise.all(lanes);
      // Exit 0 means durable: data and change logs flushed.
      o.onPhase?.('syncing', source.size);
      await cluster.flush();
    } finally {
      if (source.spool && source.spool !== o.input) {
        fs.rmSync(path.dirname(source.spool), { recursive: true, force: true });
      }
    }
    return { bytes: source.size };
  });
}
