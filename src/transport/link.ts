// The transport under the worker protocol: one link carries small control
// messages (structured values) and binary data frames (length-prefixed, see
// frames.ts) between a coordinator and one worker. The protocol
// (worker/protocol.ts) never sees what moves the bytes: today a fork IPC
// channel plus a pipe (fork.ts); over any single byte stream, such as ssh's
// stdin/stdout, a StreamLink (stream.ts).

export interface Link<Out, In> {
  /** Send one control message; resolves once it is handed to the link, rejects if the link is gone. */
  send(m: Out): Promise<void>;
  onMessage(fn: (m: In) => void): void;
  /** Send the parts of one data frame; frames sent in the same tick leave in one write. */
  sendFrame(parts: Buffer[]): void;
  /** Each frame as the views of the reads it arrived in (frames.ts): the first part holds its header. */
  onFrame(fn: (parts: Buffer[]) => void): void;
  /** The link broke or the peer ended it. */
  onClose(fn: () => void): void;
  /** End the link in an orderly way (the peer sees it close). */
  end(): void;
}

/** Cork a writable for the rest of this tick, so frames finishing together leave in one writev. */
export function tickCorker(w: { cork(): void; uncork(): void }): () => void {
  let corked = false;
  return () => {
    if (corked) return;
    corked = true;
    w.cork();
    process.nextTick(() => {
      corked = false;
      w.uncork();
    });
  };
}
