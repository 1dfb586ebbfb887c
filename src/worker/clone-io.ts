// The data requests of a clone export, routed to its overlays (clone-overlay.ts):
// a read takes the overlay's blocks, else the clone's base snapshot view; writes
// and zeroes go to the overlay only, never to the backing files or a change log.
import { DataOp, FLAG_FUA, type DataRequest } from './protocol.js';
import type { WorkerClones } from './clone-overlay.js';

export function cloneIo(clones: WorkerClones, r: DataRequest, payload: Buffer | undefined): Promise<Buffer | undefined> {
  const h = r.clone!;
  switch (r.op) {
    case DataOp.Read:
      return clones.read(h, r.partition, r.offset, r.length);
    case DataOp.Write:
      return clones.write(h, r.partition, r.offset, payload ?? Buffer.alloc(0), (r.flags & FLAG_FUA) !== 0).then(() => undefined);
    case DataOp.Zero:
      return clones.zero(h, r.partition, r.offset, r.length, (r.flags & FLAG_FUA) !== 0).then(() => undefined);
    case DataOp.Flush:
      return clones.flush(h).then(() => undefined);
    default:
      return Promise.reject(new Error(`unknown data op ${r.op} on a clone`));
  }
}
