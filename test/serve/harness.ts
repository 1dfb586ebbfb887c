// Starting `vsnap serve` as users do (the real binary, a separate process)
// for the tests that drive it with real NBD clients.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import assert from 'node:assert/strict';
import { BIN } from '../helpers/cli.js';
import { runOk } from '../nbd/harness.js';

export interface Server {
  uri: string;
  socket: string;
  proc: ChildProcess;
  log(): string;
  exportUri(name: string): string;
  /** SIGTERM, then assert exit 0 and the socket removed. */
  stop(): Promise<void>;
}

export async function startServe(manifest: string, args: string[] = [], env: Record<string, string> = {}): Promise<Server> {
  const proc = spawn(process.execPath, [BIN, 'serve', manifest, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', ...env } });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const uri = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    void exited.then((code) => reject(new Error(`vsnap serve exited ${code} before listening: ${stderr}`)));
    setTimeout(() => reject(new Error(`vsnap serve did not start in 20 s: ${stderr}`)), 20_000).unref();
  });
  const socket = /socket=([^&]+)$/.exec(uri)?.[1] ?? '';
  return {
    uri,
    socket,
    proc,
    log: () => stderr,
    exportUri: (name: string) => `nbd+unix:///${name}?socket=${socket}`,
    async stop() {
      proc.kill('SIGTERM');
      const code = await exited;
      assert.equal(code, 0, `vsnap serve exit code; log:\n${stderr}`);
      if (socket) assert.equal(fs.existsSync(socket), false, 'socket removed on shutdown');
    },
  };
}

/**
 * Serve the volume, run qemu-io on each export named (its commands, then a
 * flush), and stop the server: writes through the real data path, durable
 * before this returns. E.g. [['clone/c', 'write -P 0x5a 0 1M']].
 */
export async function qemuIoThroughServer(manifest: string, jobs: [exportName: string, ...commands: string[]][]): Promise<void> {
  const srv = await startServe(manifest);
  try {
    for (const [name, ...commands] of jobs) {
      await runOk('qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), '-c', 'flush', srv.exportUri(name)]);
    }
  } finally {
    await srv.stop();
  }
}
