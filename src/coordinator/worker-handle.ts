// The coordinator's side of one worker process: start it, wait for READY,
// send typed control requests (each answered with its kind's reply type) and
// data requests as binary frames over its link, and fail exactly this
// worker's outstanding requests when it dies.
import { OperationError, deserializeError, type SerializedError } from '../errors.js';
import {
  REPLY_HEADER,
  encodeRequest,
  type ControlReplies,
  type ControlRequest,
  type ControlRequestWithId,
  type DataRequest,
  type WorkerMessage,
} from '../worker/protocol.js';
import { joinChunks } from '../transport/chunks.js';
import { readyWorker, type ForkedWorker, type WorkerLinkProcess } from './prefork.js';

export { WORKER_MAIN, type WorkerLinkProcess } from './prefork.js';

interface Pending<T> {
  resolve: (v: T) => void;
  reject: (e: Error) => void;
}

export class WorkerHandle {
  private nextId = 1;
  private readonly ctl = new Map<number, Pending<unknown> & { onProgress?: (bytes: number) => void }>();
  /** Data requests in flight: each resolves with its reply's payload as the chunks it arrived in (empty: none). */
  private readonly io = new Map<number, Pending<Buffer[]>>();
  private deathError: Error | undefined;
  readonly exited: Promise<void>;
  readonly pid: number;

  private constructor(
    readonly index: number,
    readonly partitions: string[],
    private readonly proc: WorkerLinkProcess,
  ) {
    this.pid = proc.pid;
    proc.link.onFrame((f) => this.onReply(f));
    proc.link.onMessage((m) => {
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
    this.exited = proc.ended.then((how) => {
      this.deathError = new OperationError(`worker ${index} (pid ${this.pid}) exited ${how}; partitions ${partitions.join(', ')} are unavailable`);
      for (const p of [...this.ctl.values(), ...this.io.values()]) p.reject(this.deathError);
      this.ctl.clear();
      this.io.clear();
    });
  }

  /**
   * A worker on this host (IPC channel plus data pipe): one forked at the
   * command's start (prefork.ts) when one is left, else a new one.
   */
  static spawn(index: number, partitions: string[]): Promise<WorkerHandle> {
    return readyWorker().then((w) => WorkerHandle.forked(index, partitions, w));
  }

  /** A worker already started behind any link; resolves once it said READY. */
  static over(index: number, partitions: string[], proc: WorkerLinkProcess): Promise<WorkerHandle> {
    const h = new WorkerHandle(index, partitions, proc);
    return new Promise((resolve, reject) => {
      let ready = false;
      proc.link.onMessage((m) => {
        if (m.t === 'ready' && !ready) {
          ready = true;
          resolve(h);
        }
      });
      void h.exited.then(() => reject(h.deathError));
    });
  }

  /** A forked worker whose READY was listened for since its fork (it may have come already). */
  private static forked(index: number, partitions: string[], w: ForkedWorker): Promise<WorkerHandle> {
    const h = new WorkerHandle(index, partitions, w.proc);
    return w.ready.then(
      () => h,
      () => h.exited.then(() => Promise.reject(h.deathError)),
    );
  }

  get alive(): boolean {
    return this.deathError === undefined;
  }

  /** One control request; the reply's type follows the request's kind. */
  control<R extends ControlRequest>(req: R, onProgress?: (bytes: number) => void): Promise<ControlReplies[R['t']]> {
    if (this.deathError) return Promise.reject(this.deathError);
    const reqId = this.nextId++;
    return new Promise<ControlReplies[R['t']]>((resolve, reject) => {
      this.ctl.set(reqId, { resolve: resolve as (v: unknown) => void, reject, onProgress });
      this.proc.link.send({ ...req, reqId } as ControlRequestWithId).catch((err: Error) => {
        if (this.ctl.delete(reqId)) reject(this.deathError ?? new OperationError(`worker ${this.index}: ${err.message}`));
      });
    });
  }

  request(r: Omit<DataRequest, 'reqId'>): Promise<Buffer | undefined> {
    return this.requestParts(r).then((parts) => (parts.length ? joinChunks(parts) : undefined));
  }

  /** A data request whose reply payload stays the chunk list it arrived in (a READ's data: copied once, or not at all). */
  requestParts(r: Omit<DataRequest, 'reqId'>): Promise<Buffer[]> {
    if (this.deathError) return Promise.reject(this.deathError);
    const reqId = this.nextId++ >>> 0;
    return new Promise((resolve, reject) => {
      this.io.set(reqId, { resolve, reject });
      // Header and payload leave in one writev instead of two writes.
      this.proc.link.sendFrame(encodeRequest(r, reqId));
    });
  }

  private onReply(frame: Buffer[]): void {
    const head = frame[0];
    const ok = head.readUInt8(4) === 0;
    const reqId = head.readUInt32LE(8);
    const p = this.io.get(reqId);
    if (!p) return;
    this.io.delete(reqId);
    const payload: Buffer[] = [];
    if (head.length > REPLY_HEADER) payload.push(head.subarray(REPLY_HEADER));
    for (let i = 1; i < frame.length; i++) payload.push(frame[i]);
    if (ok) p.resolve(payload);
    else p.reject(deserializeError(JSON.parse(joinChunks(payload).toString()) as SerializedError));
  }

  /** Ask the worker to close cleanly, then end the link, which ends the process. */
  async close(): Promise<void> {
    if (!this.alive) return;
    try {
      await this.control({ t: 'close' });
    } finally {
      if (this.alive) this.proc.link.end();
      await this.exited;
    }
  }

  kill(): void {
    if (this.alive) this.proc.kill();
  }
}
