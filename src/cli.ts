// All flag wiring. Each action calls a command function (src/commands/*),
// which returns data; rendering for people or scripts happens here only.
import { Command, Option } from 'commander';
import Table from 'cli-table3';
import { sizeArg, intArg } from './args.js';
import { parseSize, formatSize } from './size.js';
import { UsageError } from './errors.js';
import { init } from './commands/init.js';
import { validate, type LayoutReport } from './commands/validate.js';
import { c, info, printJson } from './ui.js';
import { VERSION } from './version.js';

function table(head: string[]): Table.Table {
  return new Table({ head, style: { head: c.level > 0 ? ['cyan'] : [], border: c.level > 0 ? ['grey'] : [] } });
}

function renderLayout(r: LayoutReport): void {
  info(`volume ${c.bold(r.name)}: ${formatSize(r.size)} (${r.size} bytes), block size ${formatSize(r.blockSize)}, ${r.partitions.length} partitions`);
  info(`store ${r.store}`);
  const t = table(['partition', 'worker', 'extents', 'volume range', 'size']);
  for (const p of r.partitions) {
    t.push([
      p.id,
      String(p.worker),
      p.extents.map((e) => `${e.file} @${e.offset} +${e.length}`).join('\n'),
      `${p.volumeOffset}-${p.volumeOffset + p.length - 1}`,
      formatSize(p.length),
    ]);
  }
  // The table is the result of `validate`, so it goes to stdout.
  process.stdout.write(`${t.toString()}\n`);
}

export function buildProgram(): Command {
  const program = new Command('vsnap');
  program
    .description('Consistent copy-on-write snapshots of virtual volumes built from raw disk images')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) });

  program
    .command('init')
    .description('make a demo volume: sparse backing files and a manifest')
    .argument('<dir>', 'directory to create the volume in')
    .option('--files <n>', 'number of backing files', '3')
    .option('--file-size <size>', 'size of each backing file', '1GiB')
    .option('--partitions <n>', 'number of partitions', '4')
    .option('--workers <n>', 'number of worker processes', '2')
    .option('--block-size <size>', 'copy-on-write block size', '64KiB')
    .option('--name <name>', 'volume name', 'demo')
    .addHelpText('after', '\nExample:\n  vsnap init /tmp/demo --files 3 --file-size 256MiB\n')
    .action(async (dir: string, o) => {
      if (!/^(?!\.)[A-Za-z0-9._-]{1,64}$/.test(o.name)) throw new UsageError(`--name: must be 1-64 of [A-Za-z0-9._-], not starting with "." (got ${JSON.stringify(o.name)})`);
      const r = await init({
        dir,
        files: intArg('--files', o.files, 1, 64, 3),
        fileSize: sizeArg('--file-size', o.fileSize),
        partitions: intArg('--partitions', o.partitions, 1, 1024, 4),
        workers: intArg('--workers', o.workers, 1, 64, 2),
        blockSize: sizeArg('--block-size', o.blockSize),
        name: o.name,
      });
      info(`created ${r.files.length} sparse backing files (${formatSize(r.size)}) and ${r.manifest}`);
      process.stdout.write(`${r.manifest}\n`);
    });

  program
    .command('validate')
    .description('check a volume manifest and print its layout')
    .argument('<manifest>', 'volume manifest (JSON)')
    .option('--json', 'print the layout as JSON')
    .addHelpText('after', '\nExample:\n  vsnap validate vol.json --json\n')
    .action(async (manifest: string, o) => {
      const r = await validate(manifest);
      if (o.json) printJson(r);
      else renderLayout(r);
    });

  return program;
}

// Re-exported for commands that take size flags.
export { parseSize, Option };
