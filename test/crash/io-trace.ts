// Preloaded (node --import) into the vsnap CLI and, through NODE_OPTIONS,
// into its workers: logs every FileHandle write, writev and datasync of the
// process to $VSNAP_IO_TRACE_DIR/<pid>.trace, in program order, so a test can
// check the write ordering that a kill -9 cannot show (the page cache
// survives a killed process; only the order of syncs protects against power
// loss). Lines: `<seq> <event> <path> ...`:
//   W <path> <pos> <len>      a write() starts
//   A <path> <pos> <blocks>   a writev() of change-log records starts (blocks comma-separated)
//   a <path>                  that writev() returned
//   D <path>                  a datasync() starts
//   S <path>                  that datasync() returned
import fs from 'node:fs';

const dir = process.env.VSNAP_IO_TRACE_DIR;
if (dir) {
  const out = fs.openSync(`${dir}/${process.pid}.trace`, 'a');
  let seq = 0;
  const log = (line: string) => fs.writeSync(out, `${seq++} ${line}\n`);
  const pathOf = (fd: number) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return `fd:${fd}`;
    }
  };
  const probe = await fs.promises.open('/dev/null', 'r');
  const proto = Object.getPrototypeOf(probe) as Record<string, (...a: unknown[]) => Promise<unknown>>;
  await probe.close();
  const orig = { write: proto.write, writev: proto.writev, datasync: proto.datasync };
  proto.write = function (this: { fd: number }, ...a: unknown[]) {
    const buf = a[0] as Buffer;
    const len = typeof a[2] === 'number' ? a[2] : buf.length;
    log(`W ${pathOf(this.fd)} ${String(a[3])} ${len}`);
    return orig.write.apply(this, a);
  };
  proto.writev = async function (this: { fd: number }, ...a: unknown[]) {
    const p = pathOf(this.fd);
    const bufs = a[0] as Buffer[];
    // Change-log record headers are 32-byte buffers starting with the record magic; the block is at offset 8.
    const blocks = bufs.filter((b) => b.length === 32 && b.readUInt32LE(0) === 0x4c524543).map((b) => Number(b.readBigUInt64LE(8)));
    log(`A ${p} ${String(a[1])} ${blocks.join(',') || '-'}`);
    const r = await orig.writev.apply(this, a);
    log(`a ${p}`);
    return r;
  };
  proto.datasync = async function (this: { fd: number }, ...a: unknown[]) {
    const p = pathOf(this.fd);
    log(`D ${p}`);
    const r = await orig.datasync.apply(this, a);
    log(`S ${p}`);
    return r;
  };

  // The worker's in-place writes use raw descriptors (fs.write / fs.writeSync
  // and fs.fdatasync with callbacks), not FileHandle: trace those too.
  const f = fs as unknown as Record<string, (...a: unknown[]) => unknown>;
  const origFs = { write: f.write, writeSync: f.writeSync, writev: f.writev, writevSync: f.writevSync, fdatasync: f.fdatasync };
  const total = (bufs: unknown) => (Array.isArray(bufs) ? (bufs as Buffer[]).reduce((n, b) => n + b.length, 0) : 0);
  // Gather-writes of a payload kept as chunks (ExtentIO.writeChunks).
  f.writev = function (...a: unknown[]) {
    if (typeof a[2] === 'number') log(`W ${pathOf(a[0] as number)} ${a[2]} ${total(a[1])}`);
    return origFs.writev.apply(fs, a);
  };
  f.writevSync = function (...a: unknown[]) {
    if (a[0] !== out && typeof a[2] === 'number') log(`W ${pathOf(a[0] as number)} ${a[2]} ${total(a[1])}`);
    return origFs.writevSync.apply(fs, a);
  };
  f.write = function (...a: unknown[]) {
    const buf = a[1] as Buffer;
    if (Buffer.isBuffer(buf) && typeof a[4] === 'number') log(`W ${pathOf(a[0] as number)} ${a[4]} ${typeof a[3] === 'number' ? a[3] : buf.length}`);
    return origFs.write.apply(fs, a);
  };
  f.writeSync = function (...a: unknown[]) {
    const buf = a[1] as Buffer;
    // Our own trace lines are writeSync calls on the trace file: skip them.
    if (a[0] !== out && Buffer.isBuffer(buf) && typeof a[4] === 'number') log(`W ${pathOf(a[0] as number)} ${a[4]} ${typeof a[3] === 'number' ? a[3] : buf.length}`);
    return origFs.writeSync.apply(fs, a);
  };
  f.fdatasync = function (...a: unknown[]) {
    const p = pathOf(a[0] as number);
    log(`D ${p}`);
    const cb = a[1] as (err: unknown) => void;
    return origFs.fdatasync.call(fs, a[0], (err: unknown) => {
      log(`S ${p}`);
      cb(err);
    });
  };
}
