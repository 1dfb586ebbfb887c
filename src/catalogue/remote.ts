// The catalogue of a volume a live `vsnap serve` holds: each call is one
// request over the server's control socket (wire.ts), run there, so a
// snapshot cuts the NBD writes in flight at one instant.
import net from 'node:net';
import { OperationError } from '../errors.js';
import { METHODS, type Args, type Catalogue, type Method, type Result } from './catalogue.js';
import { encodeRequest, parseReply } from './wire.js';

export function remoteCatalogue(socketPath: string): Catalogue {
  const out: Partial<Record<Method, (a: never) => Promise<unknown>>> = {};
  for (const m of METHODS) out[m] = (args: never) => call(socketPath, m, args);
  return out as Catalogue;
}

function call<M extends Method>(socketPath: string, method: M, args: Args<M>): Promise<Result<M>> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socketPath);
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(encodeRequest(method, args)));
    conn.on('data', (d: string) => (buf += d));
    conn.on('error', (err) => reject(new OperationError(`cannot reach the server's control socket ${socketPath}: ${err.message}`)));
    conn.on('end', () => {
      try {
        resolve(parseReply(method, buf, socketPath));
      } catch (err) {
        reject(err);
      }
    });
  });
}
