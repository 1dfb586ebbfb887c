// Hosting a catalogue on the control socket of `vsnap serve` (a Unix socket
// of mode 0600; the wire format is src/catalogue/wire.ts). Each connection
// costs at most MAX_REQUEST_BYTES of buffer and the read timeout of waiting:
// a request that is not JSON, names an unknown method, has a field of the
// wrong type, is too long or never ends gets a usage error naming the
// problem, and the server goes on serving.
import net from 'node:net';
import fs from 'node:fs';
import { UsageError, serializeError } from '../errors.js';
import { dispatch, type Catalogue } from '../catalogue/catalogue.js';
import { MAX_REQUEST_BYTES, encodeReply, parseRequest } from '../catalogue/wire.js';

/** How long a client may take to send its whole request line. */
const READ_TIMEOUT_MS = Number(process.env.VSNAP_CONTROL_TIMEOUT_MS ?? 10_000);
/** Connections at once; further ones are closed unanswered until some end. */
const MAX_CONNECTIONS = 64;
/** After the reply, how long a client that keeps its side open (or keeps sending) is waited for. */
const LINGER_MS = 2_000;

export interface ControlHost {
  /** Stop accepting; drop connections still sending, answer those whose request is running. */
  close(): Promise<void>;
}

export async function hostCatalogue(socketPath: string, catalogue: Catalogue): Promise<ControlHost> {
  fs.rmSync(socketPath, { force: true });
  // What each open connection is doing: closing the host drops all but the running ones.
  const conns = new Map<net.Socket, 'reading' | 'running' | 'done'>();
  let closing = false;
  // allowHalfOpen: a client may close its side after the request (nc -N) and still read the reply.
  const server = net.createServer({ allowHalfOpen: true }, (conn) => {
    conns.set(conn, 'reading');
    const chunks: Buffer[] = [];
    let size = 0;
    let answered = false;
    conn.on('error', () => {});
    conn.on('close', () => {
      conns.delete(conn);
      clearTimeout(deadline);
    });

    const reply = (text: string) => {
      if (conn.destroyed) return;
      conns.set(conn, 'done');
      // A client that does not read its reply is dropped once nothing has moved for a while.
      conn.setTimeout(READ_TIMEOUT_MS, () => conn.destroy());
      conn.end(text, () => {
        if (closing) conn.destroy();
        else setTimeout(() => conn.destroy(), LINGER_MS).unref();
      });
    };
    const refuse = (err: Error) => reply(encodeReply({ ok: false, error: serializeError(err) }));

    const stopReading = () => {
      answered = true;
      clearTimeout(deadline);
      chunks.length = 0;
    };

    const take = (line: string) => {
      stopReading();
      conns.set(conn, 'running');
      let req;
      try {
        req = parseRequest(line);
      } catch (err) {
        refuse(err as Error);
        return;
      }
      dispatch(catalogue, req.method, req.args).then(
        (value) => reply(encodeReply({ ok: true, value })),
        (err) => refuse(err as Error),
      );
    };

    const deadline = setTimeout(() => {
      if (answered) return;
      stopReading();
      refuse(new UsageError(`control socket: no complete request (one JSON line ending in a newline) within ${READ_TIMEOUT_MS} ms`));
    }, READ_TIMEOUT_MS);

    conn.on('data', (d: Buffer) => {
      if (answered) return; // one request per connection; the rest is discarded until the client goes
      const nl = d.indexOf(10);
      const part = nl < 0 ? d : d.subarray(0, nl);
      if (size + part.length > MAX_REQUEST_BYTES) {
        stopReading();
        refuse(new UsageError(`control socket: request longer than ${MAX_REQUEST_BYTES} bytes`));
        return;
      }
      chunks.push(part);
      size += part.length;
      if (nl >= 0) take(Buffer.concat(chunks).toString('utf8'));
    });
    // The client closed its side: what it sent is the request, newline or not.
    conn.on('end', () => {
      if (answered) return;
      if (size === 0) {
        stopReading();
        refuse(new UsageError('control socket: the connection ended without a request'));
        return;
      }
      take(Buffer.concat(chunks).toString('utf8'));
    });
  });
  server.maxConnections = MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // umask-proof: create, then tighten before anyone could care.
    server.listen(socketPath, () => {
      fs.chmodSync(socketPath, 0o600);
      resolve();
    });
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        closing = true;
        server.close(() => resolve());
        // Nobody waits for a client that has not finished asking, or that has its answer.
        for (const [c, state] of conns) if (state !== 'running') c.destroy();
      }),
  };
}
