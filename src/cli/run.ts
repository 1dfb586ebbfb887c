// The one error boundary: every typed error becomes its exit code here, and
// nothing else in vsnap decides how the process exits. Run by src/main.ts.
import { CommanderError } from 'commander';
import { VsnapError, EXIT_FAILED, EXIT_USAGE, isErrnoError, describeErrnoError } from '../errors.js';
import { buildProgram } from '../cli.js';
import { c, clearStatusLine } from '../ui.js';
import { installSignalHandlers, removeTemps } from '../interrupt.js';
import { VERSION } from '../version.js';

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // Timing marks for scripts/cli-startup.mjs (loaded only when asked for).
  if (process.env.VSNAP_STARTUP_TRACE) (await import('./startup-trace.js')).installStartupTrace(program, performance.now());
  installSignalHandlers(clearStatusLine);
  try {
    await program.parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed its message (or help/version).
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return EXIT_USAGE;
    }
    clearStatusLine();
    if (err instanceof VsnapError) {
      process.stderr.write(`${c.red('vsnap:')} ${err.message}\n`);
      return err.exitCode;
    }
    // An I/O failure of the coordinator itself (a read-only or private store,
    // a full disk, a failed rename or fsync) is an operation failure that
    // names the call, the file and the errno, never an "internal error".
    if (isErrnoError(err)) {
      process.stderr.write(`${c.red('vsnap:')} ${describeErrnoError(err)}\n`);
      return EXIT_FAILED;
    }
    const e = err as Error;
    process.stderr.write(
      `${c.red('vsnap: internal error')} (vsnap ${VERSION}, node ${process.version}); please report this with the output below\n${e?.stack ?? String(err)}\n`,
    );
    return EXIT_FAILED;
  }
}

/** Run the command in process.argv; then exit, once `beforeExit` (the preforked workers' end) has settled. */
export async function run(beforeExit: () => Promise<void>): Promise<void> {
  const code = await main(process.argv);
  // Whatever happened, no temporary file outlives the command (src/interrupt.ts).
  removeTemps();
  await beforeExit();
  // Let stdout drain before exiting (a piped `vsnap read` may be large).
  process.stdout.write('', () => process.exit(code));
}
