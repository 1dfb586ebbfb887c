// The coordinator's side of one worker process: fork, READY, control
// requests over IPC, data requests as binary frames, and failure of exactly
// this worker's outstanding requests when it dies.
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { OperationError, deserializeError, type SerializedError } from '../errors.js';
import {
  DATA_FD,
  FrameReader,
  REPLY_HEADER,
  encodeRequest,
  type ControlRequest,
  type DataRequest,
  type WorkerMessage,
} from '../worker/protocol.js';

const WORKER_MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'worker', 'main.js');

interface Pending<T> {
  resolve: (v: T) => void;
  reject: (e: Error) => void;
}

export class WorkerHandle {
  private nextId = 1;
  private readonly ctl = new Map<number, Pending<unknown> & { onProgress?: (bytes: number) => void }>();
  private readonly io = new Map<number, Pending<Buffer | undefined>>();
  private readonly data: Socket;
  private deathError: Error | undefined;
  readonly exited: Promise<void>;
  pid = 0;

  private constructor(
    readonly index: number,
    readonly partitions: string[],
    private readonly child: ChildProcess,
  ) {
    this.pid = child.pid ?? 0;
    this.data = child.stdio[DATA_FD] as Socket;
    const reader = new FrameReader((f) => this.onReply(f));
    this.data.on('data', (c: Buffer) => reader.push(c));
    this.data.on('error', () => {});
    child.on('message', (m: WorkerMessage) => {
      if (m.t === 'progress') {
        this.ctl.get(m.reqId)?.onProgress?.(m.bytes);
        return;
      }
      if (m.t !== 'reply') return;
      const p = this.ctl.get(m.reqId);
      if (!p) return;
      this.ctl.delete(m.reqId);
      if (m.ok) p.resolve(m.value);
      else p.reject(deserializeError(m.error));
    });
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.deathError = new OperationError(
          `worker ${index} (pid ${this.pid}) exited ${signal ? `on signal ${signal}` : `with code ${code}`}; partitions ${partitions.join(', ')} are unavailable`,
        );
        for (const p of [...this.ctl.values(), ...this.io.values()]) p.reject(this.deathError);
        this.ctl.clear();
        this.io.clear();
        resolve();
      });
    });
  }

  static spawn(index: number, partitions: string[]): Promise<WorkerHandle> {
    const child = fork(WORKER_MAIN, [], {
      // stdout is ignored: `vsnap read` streams raw bytes there.
      stdio: ['ignore', 'ignore', 'inherit', 'ipc', 'pipe'],
      serialization: 'advanced',
    });
    const h = new WorkerHandle(index, partitions, child);
    return new Promise((resolve, reject) => {
      const onMsg = (m: WorkerMessage) => {
        if (m.t === 'ready') {
          child.off('message', onMsg);
          resolve(h);
        }
      };
      child.on('message', onMsg);
      void h.exited.then(() => reject(h.deathError));
    });
  }

  get alive(): boolean {
    return this.deathError === undefined;
  }

  control<T = unknown>(req: ControlRequest, onProgress?: (bytes: number) => void): Promise<T> {
    if (this.deathError) return Promise.reject(this.deathError);
    const reqId = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.ctl.set(reqId, { resolve: resolve as (v: unknown) => void, reject, onProgress });
      this.child.send({ ...req, reqId }, (err) => {
        if (err && this.ctl.delete(reqId)) reject(this.deathError ?? new OperationError(`worker ${this.index}: ${err.message}`));
      });
    });
  }

  request(r: Omit<DataRequest, 'reqId'>): Promise<Buffer | undefined> {
    if (this.deathError) return Promise.reject(this.deathError);
    const reqId = this.nextId++ >>> 0;
    return new Promise((resolve, reject) => {
      this.io.set(reqId, { resolve, reject });
      // Header and payload leave in one writev instead of two writes.
      this.data.cork();
      for (const b of encodeRequest({ ...r, reqId })) this.data.write(b);
      process.nextTick(() => this.data.uncork());
    });
  }

  private onReply(frame: Buffer): void {
    const ok = frame.readUInt8(4) === 0;
    const reqId = frame.readUInt32LE(8);
    const p = this.io.get(reqId);
    if (!p) return;
    this.io.delete(reqId);
    const payload = frame.subarray(REPLY_HEADER);
    if (ok) p.resolve(payload.length ? payload : undefined);
    else p.reject(deserializeError(JSON.parse(payload.toString()) as SerializedError));
  }

  /** Ask the worker to close cleanly, then end the process. */
  async close(): Promise<void> {
    if (!this.alive) return;
    try {
      await this.control({ t: 'close' });
    } finally {
      if (this.alive) {
        this.data.end();
        if (this.child.connected) this.child.disconnect();
      }
      await this.exited;
    }
  }

  kill(): void {
    if (this.alive) this.child.kill('SIGKILL');
  }
}
