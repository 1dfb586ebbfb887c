// Preloaded (node --import, NODE_OPTIONS reaches the workers) for the
// power-cut simulator: journals every change vsnap makes to files under
// $VSNAP_FAULT_ROOT, with the data written, and every sync, so that
// powercut.ts can rebuild what a power cut could leave on disk at each sync
// boundary. One JSON line per event in $VSNAP_JOURNAL_DIR/<pid>.jsonl, each
// stamped with the system-wide monotonic clock so the processes' journals
// merge into one order:
//   {t, ev:'open', path, create, trunc, fd}    an open that may create/truncate, once it returned
//   {t, ev:'write', path, pos, data}           a write, once it returned (data base64)
//   {t, ev:'trunc', path, len}                 ftruncate/truncate, once it returned
//   {t, ev:'sync0'|'sync1', path, id}          an fsync/fdatasync (file or directory) starts / returned
//   {t, ev:'rename'|'link', path, dest}        once it returned
//   {t, ev:'unlink'|'rm'|'mkdir', path}        once it returned (rm and mkdir may be recursive)
// Separate from test/crash/io-trace.ts (which write-order.test.ts reads):
// this one needs contents and directory operations, that one only the order.
import fs from 'node:fs';
import path from 'node:path';
import module from 'node:module';

const ROOT = process.env.VSNAP_FAULT_ROOT;
const DIR = process.env.VSNAP_JOURNAL_DIR;
type Fn = (...a: unknown[]) => unknown;

if (ROOT && DIR) {
  const root = fs.realpathSync(ROOT);
  const out = fs.openSync(path.join(DIR, `${process.pid}.jsonl`), 'a');
  const rawWrite = fs.writeSync;
  const inScope = (p: string | undefined): p is string => !!p && (p === root || p.startsWith(root + path.sep));
  const fdPath = (fd: number) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return undefined;
    }
  };
  const offsets = new Map<number, number>();
  let syncs = 0;
  const log = (p: string | undefined, e: Record<string, unknown>) => {
    if (!inScope(p)) return;
    rawWrite(out, `${JSON.stringify({ t: process.hrtime.bigint().toString(), pid: process.pid, path: p, ...e })}\n`);
  };
  const abs = (p: unknown) => (typeof p === 'string' ? path.resolve(p) : undefined);
  const dataOf = (buf: unknown, off: unknown, len: unknown): Buffer => {
    if (typeof buf === 'string') return Buffer.from(buf);
    const b = Buffer.from((buf as Buffer).buffer, (buf as Buffer).byteOffset, (buf as Buffer).byteLength);
    const o = typeof off === 'number' ? off : 0;
    return b.subarray(o, typeof len === 'number' ? o + len : undefined);
  };
  const logWrite = (fd: number, pos: unknown, data: Buffer, written: number) => {
    const at = typeof pos === 'number' ? pos : (offsets.get(fd) ?? 0);
    if (typeof pos !== 'number') offsets.set(fd, at + written);
    log(fdPath(fd), { ev: 'write', pos: at, data: data.subarray(0, written).toString('base64') });
  };
  const logOpen = (p: unknown, flags: unknown, fd: number) => {
    const fl = typeof flags === 'string' ? flags : 'r';
    offsets.set(fd, 0);
    log(abs(p), { ev: 'open', create: /^[wa]/.test(fl), trunc: fl.startsWith('w'), fd });
  };
  const f = fs as unknown as Record<string, Fn>;
  const fp = fs.promises as unknown as Record<string, Fn>;

  // ----- descriptor writes and syncs (callback and Sync API) -----
  const o = { ...f };
  f.writeSync = function (...a: unknown[]) {
    const n = o.writeSync.apply(fs, a) as number;
    if (a[0] !== out) logWrite(a[0] as number, typeof a[1] === 'string' ? a[2] : a[4], dataOf(a[1], typeof a[1] === 'string' ? 0 : a[2], typeof a[1] === 'string' ? undefined : a[3]), n);
    return n;
  };
  f.write = function (...a: unknown[]) {
    const cb = a[a.length - 1] as Fn;
    return o.write.apply(fs, [
      ...a.slice(0, -1),
      (err: unknown, n: number, b: unknown) => {
        if (!err) logWrite(a[0] as number, a[4], dataOf(a[1], a[2], a[3]), n);
        cb(err, n, b);
      },
    ]);
  };
  // Gather-writes on descriptors (the workers' in-place writes of a payload kept as chunks).
  f.writevSync = function (...a: unknown[]) {
    const n = o.writevSync.apply(fs, a) as number;
    logWrite(a[0] as number, a[2], Buffer.concat(a[1] as Buffer[]), n);
    return n;
  };
  f.writev = function (...a: unknown[]) {
    const cb = a[a.length - 1] as Fn;
    return o.writev.apply(fs, [
      ...a.slice(0, -1),
      (err: unknown, n: number, b: unknown) => {
        if (!err) logWrite(a[0] as number, typeof a[2] === 'number' ? a[2] : undefined, Buffer.concat(a[1] as Buffer[]), n);
        cb(err, n, b);
      },
    ]);
  };
  for (const name of ['fsync', 'fdatasync']) {
    f[name] = function (fd: unknown, cb: unknown) {
      const p = fdPath(fd as number);
      const id = `${process.pid}:${syncs++}`;
      log(p, { ev: 'sync0', id });
      return o[name].call(fs, fd, (err: unknown) => {
        if (!err) log(p, { ev: 'sync1', id });
        (cb as Fn)(err);
      });
    };
    f[`${name}Sync`] = function (fd: unknown) {
      const p = fdPath(fd as number);
      const id = `${process.pid}:${syncs++}`;
      log(p, { ev: 'sync0', id });
      o[`${name}Sync`].call(fs, fd);
      log(p, { ev: 'sync1', id });
    };
  }
  f.openSync = function (...a: unknown[]) {
    const fd = o.openSync.apply(fs, a) as number;
    logOpen(a[0], a[1], fd);
    return fd;
  };
  f.ftruncateSync = function (...a: unknown[]) {
    o.ftruncateSync.apply(fs, a);
    log(fdPath(a[0] as number), { ev: 'trunc', len: (a[1] as number) ?? 0 });
  };
  f.truncateSync = function (...a: unknown[]) {
    o.truncateSync.apply(fs, a);
    log(abs(a[0]), { ev: 'trunc', len: (a[1] as number) ?? 0 });
  };
  // ----- namespace operations -----
  const ns: [string, (a: unknown[]) => Record<string, unknown>][] = [
    ['rename', (a) => ({ ev: 'rename', dest: abs(a[1]) })],
    ['link', (a) => ({ ev: 'link', dest: abs(a[1]) })],
    ['unlink', () => ({ ev: 'unlink' })],
    ['rm', () => ({ ev: 'rm' })],
    ['rmdir', () => ({ ev: 'rm' })],
    ['mkdir', () => ({ ev: 'mkdir' })],
  ];
  for (const [name, ev] of ns) {
    f[`${name}Sync`] = function (...a: unknown[]) {
      const r = o[`${name}Sync`].apply(fs, a);
      log(abs(a[0]), ev(a));
      return r;
    };
    const op = fp[name];
    fp[name] = async function (...a: unknown[]) {
      const r = await op.apply(fs.promises, a);
      log(abs(a[0]), ev(a));
      return r;
    };
  }
  const popen = fp.open;
  fp.open = async function (...a: unknown[]) {
    const h = (await popen.apply(fs.promises, a)) as { fd: number };
    logOpen(a[0], a[1], h.fd);
    return h;
  };

  // ----- FileHandle -----
  const probe = await fs.promises.open('/dev/null', 'r');
  const proto = Object.getPrototypeOf(probe) as Record<string, Fn>;
  await probe.close();
  const h: Record<string, Fn> = { write: proto.write, writev: proto.writev, writeFile: proto.writeFile, sync: proto.sync, datasync: proto.datasync, truncate: proto.truncate };
  proto.write = async function (this: { fd: number }, ...a: unknown[]) {
    const r = (await h.write.apply(this, a)) as { bytesWritten: number };
    const str = typeof a[0] === 'string';
    logWrite(this.fd, str ? a[1] : a[3], dataOf(a[0], str ? 0 : a[1], str ? undefined : a[2]), r.bytesWritten);
    return r;
  };
  proto.writev = async function (this: { fd: number }, ...a: unknown[]) {
    const r = (await h.writev.apply(this, a)) as { bytesWritten: number };
    logWrite(this.fd, a[1], Buffer.concat(a[0] as Buffer[]), r.bytesWritten);
    return r;
  };
  proto.writeFile = async function (this: { fd: number }, ...a: unknown[]) {
    await h.writeFile.apply(this, a);
    const d = dataOf(a[0], 0, undefined);
    logWrite(this.fd, undefined, d, d.length);
  };
  proto.truncate = async function (this: { fd: number }, ...a: unknown[]) {
    await h.truncate.apply(this, a);
    log(fdPath(this.fd), { ev: 'trunc', len: (a[0] as number) ?? 0 });
  };
  for (const name of ['sync', 'datasync']) {
    proto[name] = async function (this: { fd: number }) {
      const p = fdPath(this.fd);
      const id = `${process.pid}:${syncs++}`;
      log(p, { ev: 'sync0', id });
      await h[name].call(this);
      log(p, { ev: 'sync1', id });
    };
  }
  module.syncBuiltinESMExports();
}
