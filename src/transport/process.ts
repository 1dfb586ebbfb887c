// Worker processes and the links to them. A forked worker (the default)
// talks over the fork IPC channel for control and a dedicated pipe (its fd 4)
// for data frames: measured ~3.5x faster than IPC for MiB-sized payloads. A
// worker started with `--stdio` talks over its stdin/stdout as one byte
// stream (StreamLink), the shape a worker on another host behind ssh has.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import net, { type Socket } from 'node:net';
import { FrameReader } from './frames.js';
import { StreamLink } from './stream.js';
import { tickCorker, type Link } from './link.js';

export const DATA_FD = 4;

/** The coordinator's view of one worker process, whatever carries its link. */
export interface WorkerProcess<Out, In> {
  pid: number;
  link: Link<Out, In>;
  kill(): void;
  /** Settles when the process is gone, saying how it ended ("with code 1", "on signal SIGKILL"). */
  ended: Promise<string>;
}

function endedOf(child: ChildProcess): Promise<string> {
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve(signal ? `on signal ${signal}` : `with code ${code}`));
    // A spawn that failed (no such program) never exits.
    child.on('error', (err) => {
      if (child.exitCode === null && child.signalCode === null && child.pid === undefined) resolve(`to start: ${err.message}`);
    });
  });
}

/** Fork `main` with an IPC channel and a data pipe. */
export function forkWorker<Out, In>(main: string, args: string[] = []): WorkerProcess<Out, In> {
  const child = fork(main, args, {
    // stdout is ignored: `vsnap read` streams raw bytes there.
    stdio: ['ignore', 'ignore', 'inherit', 'ipc', 'pipe'],
    serialization: 'advanced',
    // A worker's heap keeps V8's defaults: the larger initial old space
    // bin/vsnap gives the coordinator (fewer full collections on the NBD
    // path) would let each worker hold more garbage, and a worker's memory
    // has a budget (design.md §10).
    execArgv: process.execArgv.filter((a) => !a.startsWith('--initial-old-space-size')),
    // More threads than libuv's 4 let a snapshot's many small syncs overlap
    // (a caller's own setting, e.g. a test's, wins).
    env: { UV_THREADPOOL_SIZE: '16', ...process.env },
  });
  const data = child.stdio[DATA_FD] as Socket;
  data.on('error', () => {});
  // The link keeps the kernel's default buffer sizes. A 4 MiB send buffer
  // at the coordinator alone (the write direction; on a unix stream socket
  // only the sender's SO_SNDBUF bounds the bytes in flight) cut a 1 MiB
  // write's coordinator syscalls ~41 -> ~24 and its RSS under deaf writers
  // by ~100 MiB, but test/serve/hostile.test.ts then failed 3 in 5: its
  // second-round bound is relative to the writers' peak, which hid a one-time
  // ~32 MiB step in the second round of deaf readers that the default
  // buffers show too (docs/performance.md, "The worker link ... (stop 17)").
  const ended = endedOf(child);
  return { pid: child.pid ?? 0, link: new IpcLink<Out, In>(child, data, ended), kill: () => child.kill('SIGKILL'), ended };
}

/** Spawn `command` (e.g. node on this host, or ssh to another) whose stdin/stdout carry the whole link. */
export function spawnStdioWorker<Out, In>(command: string, args: string[]): WorkerProcess<Out, In> {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  child.stdin!.on('error', () => {});
  const ended = endedOf(child);
  return { pid: child.pid ?? 0, link: new StreamLink<Out, In>(child.stdout!, child.stdin!), kill: () => child.kill('SIGKILL'), ended };
}

/** The worker's side of the link to whoever started it: IPC plus fd 4 when forked, else stdin/stdout. */
export function parentLink<Out, In>(): Link<Out, In> {
  if (process.send) {
    return new IpcLink<Out, In>(process, new net.Socket({ fd: DATA_FD, readable: true, writable: true }));
  }
  return new StreamLink<Out, In>(process.stdin, process.stdout);
}

type IpcEnd = Pick<NodeJS.Process, 'on'> & {
  send?: (m: unknown, h?: undefined, o?: undefined, cb?: (err: Error | null) => void) => boolean;
  disconnect?: () => void;
  connected?: boolean;
};

/** Control on the IPC channel, data frames on a separate stream. */
class IpcLink<Out, In> implements Link<Out, In> {
  private readonly reader: FrameReader;
  private frameFns: ((parts: Buffer[]) => void)[] = [];
  private readonly cork: () => void;

  constructor(
    private readonly end_: IpcEnd | ChildProcess,
    private readonly data: Socket,
    private readonly ended?: Promise<string>,
  ) {
    this.cork = tickCorker(data);
    this.reader = new FrameReader((f) => {
      for (const fn of this.frameFns) fn(f);
    });
    data.on('data', (c: Buffer) => this.reader.push(c));
  }

  send(m: Out): Promise<void> {
    const e = this.end_ as IpcEnd;
    if (!e.connected || !e.send) return Promise.reject(new Error('the IPC channel is closed'));
    return new Promise((resolve, reject) => {
      e.send!(m, undefined, undefined, (err) => (err ? reject(err) : resolve()));
    });
  }

  onMessage(fn: (m: In) => void): void {
    (this.end_ as ChildProcess).on('message', (m: unknown) => fn(m as In));
  }

  sendFrame(parts: Buffer[]): void {
    this.cork();
    for (const b of parts) this.data.write(b);
  }

  onFrame(fn: (parts: Buffer[]) => void): void {
    this.frameFns.push(fn);
  }

  onClose(fn: () => void): void {
    // The coordinator's end: the process exit is the end of the link. The
    // worker's end: the coordinator is gone when the channel disconnects or
    // the data pipe fails.
    if (this.ended) void this.ended.then(fn);
    else {
      let done = false;
      const once = () => {
        if (!done) (done = true), fn();
      };
      (this.end_ as NodeJS.Process).on('disconnect', once);
      this.data.on('error', once);
    }
  }

  end(): void {
    this.data.end();
    const e = this.end_ as IpcEnd;
    if (e.connected && e.disconnect) e.disconnect();
  }
}
