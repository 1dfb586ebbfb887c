// Runs the server in the test process over a file device, for tests that
// drive it with RawClient and inspect its state directly.

import fs from 'node:fs';
import path from 'node:path';
import type { BlockDevice, ExportProvider } from '../../src/block.js';
import { createNbdServer, type NbdServer, type NbdServerOptions } from '../../src/nbd/index.js';
import { tmpdir } from '../helpers/cli.js';
import { FileExportProvider } from '../helpers/file-device.js';

export interface InProcess {
  server: NbdServer;
  socket: string;
  dir: string;
  livePath: string;
  logs: string[];
  readLive(): Buffer;
}

/** Serve `live` (and read-only snapshots) from files; wrap lets a test put a device in between. */
export async function withInProcess(
  opts: { live: Buffer; snapshots?: Record<string, Buffer>; wrap?: (d: BlockDevice) => BlockDevice; server?: NbdServerOptions },
  fn: (s: InProcess) => Promise<void>,
): Promise<void> {
  const tmp = tmpdir('vsnap-nbd-unit-');
  const livePath = path.join(tmp.dir, 'live.img');
  fs.writeFileSync(livePath, opts.live);
  const snaps: Record<string, string> = {};
  for (const [name, data] of Object.entries(opts.snapshots ?? {})) {
    snaps[name] = path.join(tmp.dir, `snap-${name}.img`);
    fs.writeFileSync(snaps[name], data);
  }
  const files = await FileExportProvider.open(livePath, snaps);
  const wrap = opts.wrap ?? ((d) => d);
  const provider: ExportProvider = {
    list: () => files.list(),
    open: (name) => {
      const d = files.open(name);
      return d && wrap(d);
    },
  };
  const logs: string[] = [];
  const server = createNbdServer(provider, { log: (m) => logs.push(m), ...opts.server });
  const socket = path.join(tmp.dir, 'nbd.sock');
  try {
    await server.listen({ socketPath: socket });
    await fn({ server, socket, dir: tmp.dir, livePath, logs, readLive: () => fs.readFileSync(livePath) });
  } finally {
    await server.close();
    await files.close();
    tmp.cleanup();
  }
}

/** A device whose operations wait `delay(offset)` ms first, to force out-of-order completion. */
export function delayed(d: BlockDevice, delay: (offset: number) => number): BlockDevice {
  const wait = (o: number) => new Promise((r) => setTimeout(r, delay(o)));
  return {
    get size() {
      return d.size;
    },
    get readOnly() {
      return d.readOnly;
    },
    get preferredBlockSize() {
      return d.preferredBlockSize;
    },
    read: async (o, l) => (await wait(o), d.read(o, l)),
    write: async (o, b, f) => (await wait(o), d.write(o, b, f)),
    zero: async (o, l, f) => (await wait(o), d.zero(o, l, f)),
    trim: async (o, l, f) => (await wait(o), d.trim(o, l, f)),
    flush: () => d.flush(),
    blockStatus: async (o, l) => (await wait(o), d.blockStatus(o, l)),
  };
}

