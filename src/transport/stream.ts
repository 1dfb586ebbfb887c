// A Link over any one byte stream (a socket, a pipe pair, ssh's
// stdin/stdout): control messages and data frames share the stream as
// length-prefixed frames. Data frames of the worker protocol carry an op or
// a status (< 0x80) in byte 4; a control frame carries CONTROL_MARK there,
// then the message as JSON, so data frames pass through without a copy.
import type { Duplex, Readable, Writable } from 'node:stream';
import { FrameReader } from './frames.js';
import { joinChunks } from './chunks.js';
import { tickCorker, type Link } from './link.js';

export const CONTROL_MARK = 0xc7;

export class StreamLink<Out, In> implements Link<Out, In> {
  private messageFns: ((m: In) => void)[] = [];
  private frameFns: ((parts: Buffer[]) => void)[] = [];
  private closeFns: (() => void)[] = [];
  private closed = false;
  private readonly cork: () => void;

  constructor(
    private readonly input: Readable,
    private readonly output: Writable,
  ) {
    this.cork = tickCorker(output);
    const reader = new FrameReader((f) => {
      if (f[0].readUInt8(4) === CONTROL_MARK) {
        const m = JSON.parse(joinChunks(f).subarray(5).toString('utf8')) as In;
        for (const fn of this.messageFns) fn(m);
      } else {
        for (const fn of this.frameFns) fn(f);
      }
    });
    input.on('data', (c: Buffer) => {
      try {
        reader.push(c);
      } catch {
        // A corrupt stream cannot be resynchronised: the link is over.
        this.closeNow();
      }
    });
    const close = () => this.closeNow();
    input.on('end', close);
    input.on('close', close);
    input.on('error', close);
    output.on('error', close);
  }

  static over<Out, In>(stream: Duplex): StreamLink<Out, In> {
    return new StreamLink<Out, In>(stream, stream);
  }

  private closeNow(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fn of this.closeFns) fn();
  }

  send(m: Out): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the link is closed'));
    const body = Buffer.from(JSON.stringify(m), 'utf8');
    const head = Buffer.allocUnsafe(5);
    head.writeUInt32LE(5 + body.length, 0);
    head.writeUInt8(CONTROL_MARK, 4);
    return new Promise((resolve, reject) => {
      this.cork();
      this.output.write(head);
      this.output.write(body, (err) => (err ? reject(err) : resolve()));
    });
  }

  onMessage(fn: (m: In) => void): void {
    this.messageFns.push(fn);
  }

  sendFrame(parts: Buffer[]): void {
    if (this.closed) return;
    this.cork();
    for (const b of parts) this.output.write(b);
  }

  onFrame(fn: (parts: Buffer[]) => void): void {
    this.frameFns.push(fn);
  }

  onClose(fn: () => void): void {
    this.closeFns.push(fn);
  }

  end(): void {
    this.output.end();
  }
}
