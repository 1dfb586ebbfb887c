// The captive mode's command (`serve --run CMD`): run it under /bin/sh with
// the URIs in its environment and report its status as a shell would; and
// `--run CMD --clone SNAP` against a volume another `vsnap serve` already
// holds: a throwaway clone made through that server's control socket, CMD
// run on it, the clone deleted afterwards (also when CMD fails or on a
// signal), so several test runs can share one server, each on its own clone.
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { OperationError } from '../errors.js';
import { remoteCatalogue } from '../catalogue/remote.js';

export interface RunningCommand {
  /** CMD's status: its exit code, or 128 + the signal's number when it was killed. */
  exited: Promise<number>;
  signal(sig: NodeJS.Signals): void;
}

export function runCommand(cmd: string, vars: Record<string, string>, log: (m: string) => void): RunningCommand {
  const env: Record<string, string> = { ...(process.env as Record<string, string>), ...vars };
  const child = spawn('/bin/sh', ['-c', cmd], { stdio: 'inherit', env });
  const exited = new Promise<number>((resolve) => {
    child.on('exit', (status, signal) => resolve(status ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1)));
    child.on('error', (err) => {
      log(`--run: ${err.message}`);
      resolve(127);
    });
  });
  return { exited, signal: (sig) => void child.kill(sig) };
}

/** A name no other run picks: `run-<pid>-<6 hex>` (valid as a snapshot name). */
export function throwawayCloneName(): string {
  return `run-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** The Unix socket of an nbd+unix URI, if it is one. */
export function socketOf(uri: string): string | undefined {
  return /[?&]socket=([^&]+)/.exec(uri)?.[1];
}

/**
 * `serve --run CMD --clone SNAP` while another server holds the volume: the
 * clone is made and deleted through that server; CMD gets its export's URI.
 */
export async function runOnServedClone(control: string, cmd: string, snap: string, log: (m: string) => void): Promise<number> {
  const catalogue = remoteCatalogue(control);
  const name = throwawayCloneName();
  // A signal to this process goes on to CMD (whose status is what we exit
  // with) and never stops us before the clone is deleted; one that comes
  // before CMD started means CMD does not start.
  let run: RunningCommand | undefined;
  let stopped: NodeJS.Signals | undefined;
  const on = (sig: NodeJS.Signals) => () => {
    stopped ??= sig;
    run?.signal(sig);
  };
  const onInt = on('SIGINT');
  const onTerm = on('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    const made = await catalogue.cloneCreate({ snap, name });
    try {
      if (!made.uri) throw new OperationError(`the server on ${control} did not say where clone ${name} is served`);
      if (stopped) return 128 + (os.constants.signals[stopped] ?? 0);
      log(`running on clone ${name} of snapshot ${made.snapshot.id} "${made.snapshot.name}" at ${made.uri} (served by the server on ${control})`);
      const sock = socketOf(made.uri);
      run = runCommand(cmd, { uri: made.uri, control, ...(sock ? { socket: sock } : {}) }, log);
      const status = await run.exited;
      // Stopped by a signal but CMD says 0: still not a pass.
      return stopped && status === 0 ? 128 + (os.constants.signals[stopped] ?? 0) : status;
    } finally {
      await catalogue.cloneDelete({ names: [name] }).then(
        () => log(`clone ${name} deleted`),
        (err: Error) => log(`cannot delete clone ${name}: ${err.message}; delete it with vsnap clone delete`),
      );
    }
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
}
