// Fault-injection shim, preloaded (node --import) into the vsnap CLI and,
// through NODE_OPTIONS, into every worker it forks. It wraps the file-system
// calls vsnap makes (fs callback and Sync APIs, fs.promises, FileHandle
// methods), counts each call on a path under $VSNAP_FAULT_ROOT per (process
// role, call), and fails exactly one chosen occurrence with an errno error
// shaped like Node's own. Calls elsewhere (node_modules, stdio, IPC, spools in
// the system temp directory) pass through untouched and uncounted.
//
// Environment:
//   VSNAP_FAULT_ROOT   directory whose files are in scope (the test volume:
//                      backing files, manifest and store); unset = shim off
//   VSNAP_FAULT_LOG    directory; every process appends one line per counted
//                      occurrence to <role>.<pid>.log: `<call> <n> <path>`,
//                      and the process that fails a call writes
//                      fired.<pid>: `<role> <call> <n> <errno> <path>`
//   VSNAP_FAULT_ROLE   whose call to fail: `coordinator` or `worker<k>`, k the
//                      fork order of the worker in its coordinator (0, 1, ...;
//                      a worker restarted by `vsnap serve` gets the next k)
//   VSNAP_FAULT_CALL   open close read write fsync fdatasync ftruncate rename
//                      unlink mkdir rm link readdir stat chmod
//   VSNAP_FAULT_NTH    1-based occurrence of that call in that role
//   VSNAP_FAULT_ERRNO  EIO or ENOSPC
// Without VSNAP_FAULT_CALL the shim only counts (the driver's counting run).
//
// The failed call is not performed (a failed close still releases its
// descriptor, as close(2) always does). Path-based calls carry `path` (and
// `dest`) like Node's errors; descriptor calls carry none, as in Node, so
// vsnap itself has to name the file in its message.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import module from 'node:module';
import childProcess from 'node:child_process';

const ROOT = process.env.VSNAP_FAULT_ROOT;
const LOG = process.env.VSNAP_FAULT_LOG;
type Fn = (...a: unknown[]) => unknown;

if (ROOT && LOG) {
  const root = fs.realpathSync(ROOT);
  const role = process.env.VSNAP_FAULT_SELF_ROLE || 'coordinator';
  const want = process.env.VSNAP_FAULT_CALL
    ? { role: process.env.VSNAP_FAULT_ROLE || 'coordinator', call: process.env.VSNAP_FAULT_CALL, nth: Number(process.env.VSNAP_FAULT_NTH), errno: process.env.VSNAP_FAULT_ERRNO || 'EIO' }
    : undefined;
  const out = fs.openSync(path.join(LOG, `${role}.${process.pid}.log`), 'a');
  const writeSync = fs.writeSync;
  const counts = new Map<string, number>();
  // Node's own Sync helpers call other public fs functions (readFileSync
  // opens through fs.openSync): count only the outermost call.
  let depth = 0;

  const fdPath = (fd: unknown): string | undefined => {
    if (typeof fd !== 'number') return undefined;
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return undefined;
    }
  };
  const argPath = (p: unknown): string | undefined => {
    if (typeof p === 'number') return fdPath(p);
    if (typeof p === 'string') return path.resolve(p);
    if (Buffer.isBuffer(p)) return path.resolve(p.toString());
    if (p instanceof URL) return p.pathname;
    return undefined;
  };
  const inScope = (p: string | undefined): p is string => !!p && (p === root || p.startsWith(root + path.sep));

  const describe: Record<string, string> = { EIO: 'i/o error', ENOSPC: 'no space left on device' };
  const syscallOf: Record<string, string> = { readdir: 'scandir', rm: 'rm' };

  /** Count one call; the error to fail it with, if it is the chosen one. */
  const check = (call: string, target: unknown, isFd: boolean, dest?: unknown): NodeJS.ErrnoException | undefined => {
    if (depth > 0) return undefined;
    const p = isFd ? fdPath(target) : argPath(target);
    if (!inScope(p)) return undefined;
    const n = (counts.get(call) ?? 0) + 1;
    counts.set(call, n);
    writeSync(out, `${call} ${n} ${p}\n`);
    if (!want || want.role !== role || want.call !== call || want.nth !== n) return undefined;
    const code = want.errno;
    const syscall = syscallOf[call] ?? call;
    const d = typeof dest === 'string' ? path.resolve(dest) : undefined;
    const e = new Error(`${code}: ${describe[code] ?? code.toLowerCase()}, ${syscall}${isFd ? '' : ` '${p}'`}${d ? ` -> '${d}'` : ''}`) as NodeJS.ErrnoException;
    e.errno = -(os.constants.errno as Record<string, number>)[code];
    e.code = code;
    e.syscall = syscall;
    if (!isFd) e.path = p;
    if (d) (e as { dest?: string }).dest = d;
    fs.writeFileSync(path.join(LOG, `fired.${process.pid}`), `${role} ${call} ${n} ${code} ${p}\n`);
    return e;
  };

  const f = fs as unknown as Record<string, Fn>;
  const fp = fs.promises as unknown as Record<string, Fn>;

  /** Callback API: the error goes to the callback, asynchronously, as libuv would deliver it. */
  const wrapCb = (name: string, call: string, isFd: boolean) => {
    const orig = f[name];
    if (!orig) return;
    f[name] = function (this: unknown, ...a: unknown[]) {
      const e = check(call, a[0], isFd, call === 'rename' || call === 'link' ? a[1] : undefined);
      if (!e) return orig.apply(this, a);
      const last = a[a.length - 1];
      const cb: Fn = typeof last === 'function' ? (last as Fn) : () => undefined;
      if (call === 'close') return orig.call(this, a[0], () => cb(e));
      process.nextTick(cb, e);
      return undefined;
    };
  };
  const wrapSync = (name: string, call: string, isFd: boolean) => {
    const orig = f[name];
    if (!orig) return;
    f[name] = function (this: unknown, ...a: unknown[]) {
      const e = check(call, a[0], isFd, call === 'rename' || call === 'link' ? a[1] : undefined);
      if (e) {
        if (call === 'close') orig.apply(this, a);
        throw e;
      }
      depth++;
      try {
        return orig.apply(this, a);
      } finally {
        depth--;
      }
    };
  };
  const wrapPromise = (name: string, call: string) => {
    const orig = fp[name];
    if (!orig) return;
    fp[name] = async function (this: unknown, ...a: unknown[]) {
      const e = check(call, a[0], false, call === 'rename' || call === 'link' ? a[1] : undefined);
      if (e) throw e;
      const r = await orig.apply(this, a);
      if (call === 'open') wrapHandleClose(r as { fd: number; close: () => Promise<void> });
      return r;
    };
  };
  // FileHandle#close is an own property of each handle (a class field), not
  // on the prototype: wrap it on every handle opened through fs.promises.open.
  const wrapHandleClose = (h: { fd: number; close: () => Promise<void> }) => {
    const orig = h.close;
    h.close = async function (this: unknown) {
      const e = h.fd >= 0 ? check('close', h.fd, true) : undefined;
      await orig.call(h);
      if (e) throw e;
    };
  };

  const table: [string, string[], boolean][] = [
    ['open', ['open'], false],
    ['close', ['close'], true],
    ['read', ['read', 'readv'], true],
    ['read', ['readFile'], false],
    ['write', ['write', 'writev'], true],
    ['write', ['writeFile', 'appendFile'], false],
    ['fsync', ['fsync'], true],
    ['fdatasync', ['fdatasync'], true],
    ['ftruncate', ['ftruncate'], true],
    ['ftruncate', ['truncate'], false],
    ['rename', ['rename'], false],
    ['unlink', ['unlink'], false],
    ['mkdir', ['mkdir'], false],
    ['rm', ['rm', 'rmdir'], false],
    ['link', ['link'], false],
    ['readdir', ['readdir'], false],
    ['stat', ['stat', 'lstat'], false],
    ['stat', ['fstat'], true],
    ['chmod', ['chmod'], false],
    ['chmod', ['fchmod'], true],
  ];
  for (const [call, names, isFd] of table) {
    for (const n of names) {
      wrapCb(n, call, isFd);
      wrapSync(`${n}Sync`, call, isFd);
      if (!isFd) wrapPromise(n, call);
    }
  }

  // FileHandle methods (one shared prototype for every handle).
  const probe = await fs.promises.open('/dev/null', 'r');
  const proto = Object.getPrototypeOf(probe) as Record<string, Fn>;
  await probe.close();
  const handleCalls: [string, string][] = [
    ['read', 'read'],
    ['readv', 'read'],
    ['readFile', 'read'],
    ['write', 'write'],
    ['writev', 'write'],
    ['writeFile', 'write'],
    ['appendFile', 'write'],
    ['sync', 'fsync'],
    ['datasync', 'fdatasync'],
    ['truncate', 'ftruncate'],
    ['stat', 'stat'],
    ['chmod', 'chmod'],
  ];
  for (const [name, call] of handleCalls) {
    const orig = proto[name];
    if (!orig) continue;
    proto[name] = async function (this: { fd: number }, ...a: unknown[]) {
      const e = check(call, this.fd, true);
      if (e) throw e;
      return orig.apply(this, a);
    };
  }

  // Workers learn their role from the coordinator: the k-th fork is `worker<k>`.
  let forks = 0;
  const cp = childProcess as unknown as Record<string, Fn>;
  const origFork = cp.fork;
  cp.fork = function (this: unknown, modulePath: unknown, ...rest: unknown[]) {
    const args = Array.isArray(rest[0]) ? rest[0] : [];
    const opts = ((Array.isArray(rest[0]) ? rest[1] : rest[0]) ?? {}) as { env?: NodeJS.ProcessEnv };
    const env = { ...(opts.env ?? process.env), VSNAP_FAULT_SELF_ROLE: `worker${forks++}` };
    return origFork.call(this, modulePath, args, { ...opts, env });
  };

  // Named imports (`import { open } from 'node:fs/promises'`) see the wrappers.
  module.syncBuiltinESMExports();
}
