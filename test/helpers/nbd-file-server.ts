// Serves plain files over NBD for the interoperability tests:
//
//   node dist/test/helpers/nbd-file-server.js --socket PATH [--snapshot NAME[=FILE]]... [--max-options N] LIVE_FILE
//
// LIVE_FILE is the read-write export ("" and "live"). Each --snapshot adds a
// read-only export snapshot/NAME: FILE, or without one a copy of LIVE_FILE
// taken at start (next to it, removed on exit). Prints `READY <address>` once
// listening; SIGTERM or SIGINT closes gracefully and exits 0. The server's log
// goes to stderr, one line per event.

import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { createNbdServer } from '../../src/nbd/index.js';
import { FileExportProvider } from './file-device.js';

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: {
      socket: { type: 'string' },
      snapshot: { type: 'string', multiple: true, default: [] },
      'max-options': { type: 'string' },
    },
    allowPositionals: true,
  });
  if (!values.socket || positionals.length !== 1) {
    process.stderr.write('usage: nbd-file-server --socket PATH [--snapshot NAME[=FILE]]... [--max-options N] LIVE_FILE\n');
    process.exit(2);
  }
  const live = positionals[0];
  const snapshots: Record<string, string> = {};
  const copies: string[] = [];
  for (const spec of values.snapshot ?? []) {
    const eq = spec.indexOf('=');
    if (eq >= 0) {
      snapshots[spec.slice(0, eq)] = spec.slice(eq + 1);
    } else {
      const copy = `${live}.snapshot-${spec}`;
      fs.copyFileSync(live, copy);
      copies.push(copy);
      snapshots[spec] = copy;
    }
  }
  const provider = await FileExportProvider.open(live, snapshots);
  const server = createNbdServer(provider, {
    log: (m) => process.stderr.write(`${m}\n`),
    maxOptions: values['max-options'] ? Number(values['max-options']) : undefined,
  });
  const address = await server.listen({ socketPath: values.socket });
  process.stdout.write(`READY ${address}\n`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await server.close();
    await provider.close();
    for (const c of copies) fs.rmSync(c, { force: true });
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}

main().catch((err: unknown) => {
  process.stderr.write(`nbd-file-server: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
