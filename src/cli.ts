// All flag wiring. Each action calls a command function (src/commands/*),
// which returns data; rendering for people or scripts happens here only.
import { Command, Option } from 'commander';
import Table from 'cli-table3';
import { sizeArg, intArg } from './args.js';
import { parseSize, formatSize } from './size.js';
import { UsageError } from './errors.js';
import { init } from './commands/init.js';
import { validate, type LayoutReport } from './commands/validate.js';
import { c, info, printJson, spinner } from './ui.js';
import { create, list, show, remove } from './commands/snapshots.js';
import { readCmd, writeCmd } from './commands/io.js';
import { status } from './commands/status.js';
import { renderSnapshot, renderSnapshotList, renderStatus } from './render.js';
import { durationArg } from './args.js';
import { VERSION } from './version.js';

function table(head: string[]): Table.Table {
  return new Table({ head, style: { head: c.level > 0 ? ['cyan'] : [], border: c.level > 0 ? ['grey'] : [] } });
}

function renderLayout(r: LayoutReport): void {
  const n = r.partitions.length;
  info(`volume ${c.bold(r.name)}: ${formatSize(r.size)} (${r.size} bytes), block size ${formatSize(r.blockSize)}, ${n} partition${n === 1 ? '' : 's'}`);
  info(`store ${r.store}`);
  // The table is the result of `validate`, so it goes to stdout, and colour
  // follows stdout: `vsnap validate m.json | less` must get no escapes even
  // when stderr is a terminal.
  const colour = c.level > 0 && process.stdout.isTTY === true;
  const t = new Table({
    head: ['partition', 'worker', 'extents', 'volume range', 'size'],
    style: { head: colour ? ['cyan'] : [], border: colour ? ['grey'] : [] },
  });
  for (const p of r.partitions) {
    t.push([
      p.id,
      String(p.worker),
      p.extents.map((e) => `${e.file} @${e.offset} +${e.length}`).join('\n'),
      `${p.volumeOffset}-${p.volumeOffset + p.length - 1}`,
      formatSize(p.length),
    ]);
  }
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

  registerSnapshotCommands(program);
  return program;
}

function registerSnapshotCommands(program: Command): void {
  program
    .command('create')
    .description('take a snapshot of every partition at one instant')
    .argument('<manifest>', 'volume manifest (JSON)')
    .option('--name <name>', 'snapshot name (default: UTC time YYYYMMDDTHHMMSSZ)')
    .option('--expires <duration>', 'let prune delete it after this long (30m, 12h, 7d, 2w)')
    .option('--json', 'print the snapshot as JSON')
    .addHelpText('after', '\nExample:\n  vsnap create vol.json --name before-upgrade\n  vsnap create vol.json --expires 1d --json\n')
    .action(async (manifest: string, o) => {
      const expiresInMs = o.expires === undefined ? undefined : durationArg('--expires', o.expires);
      const sp = spinner('taking snapshot');
      try {
        const r = await create(manifest, { name: o.name, expiresInMs });
        sp.succeed(`snapshot ${r.id} "${r.name}" taken (writes frozen ${r.freezeMs.toFixed(1)} ms)`);
        if (o.json) printJson(r);
        else process.stdout.write(`${r.id} ${r.name}\n`);
      } catch (err) {
        sp.fail('snapshot failed');
        throw err;
      }
    });

  program
    .command('list')
    .description('list snapshots in id order')
    .argument('<manifest>', 'volume manifest (JSON)')
    .option('--json', 'print JSON: [{id, name, createdAt, changedBytes}]')
    .addHelpText('after', '\nExample:\n  vsnap list vol.json --json\n')
    .action(async (manifest: string, o) => {
      const r = await list(manifest);
      if (o.json) printJson(r.map((s) => ({ id: s.id, name: s.name, createdAt: s.createdAt, changedBytes: s.changedBytes, expiresAt: s.expiresAt })));
      else process.stdout.write(renderSnapshotList(r));
    });

  program
    .command('show')
    .description('show one snapshot and its files')
    .argument('<manifest>', 'volume manifest (JSON)')
    .argument('<snap>', 'snapshot name, id or "latest"')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  vsnap show vol.json latest --json\n')
    .action(async (manifest: string, snap: string, o) => {
      const r = await show(manifest, snap);
      if (o.json) printJson(r);
      else process.stdout.write(renderSnapshot(r));
    });

  program
    .command('delete')
    .description('delete snapshots; the others read exactly as before')
    .argument('<manifest>', 'volume manifest (JSON)')
    .argument('<snap...>', 'snapshot names, ids or "latest"')
    .option('--json', 'print JSON: {deleted: [{id, name}]}')
    .addHelpText('after', '\nExample:\n  vsnap delete vol.json before-upgrade 12\n')
    .action(async (manifest: string, snaps: string[], o) => {
      const r = await remove(manifest, snaps);
      if (o.json) printJson(r);
      else for (const d of r.deleted) info(`deleted snapshot ${d.id} "${d.name}"`);
    });

  program
    .command('read')
    .description('read bytes of the live volume or of a snapshot to stdout or a file')
    .argument('<manifest>', 'volume manifest (JSON)')
    .requiredOption('--offset <n>', 'volume offset (bytes or units: 4K, 1MiB)')
    .requiredOption('--length <n>', 'number of bytes')
    .option('--snapshot <snap>', 'read this snapshot instead of the live volume')
    .option('--output <file>', 'write to a file instead of stdout')
    .option('--force', 'read a snapshot even if reported stale')
    .addHelpText('after', '\nExample:\n  vsnap read vol.json --offset 1MiB --length 4K --snapshot before-upgrade | xxd | head\n')
    .action(async (manifest: string, o) => {
      await readCmd(manifest, { offset: sizeArg('--offset', o.offset), length: sizeArg('--length', o.length), snapshot: o.snapshot, output: o.output, force: o.force === true });
    });

  program
    .command('write')
    .description('write bytes into the live volume (copy-on-write), durable on exit 0')
    .argument('<manifest>', 'volume manifest (JSON)')
    .requiredOption('--offset <n>', 'volume offset (bytes or units)')
    .option('--input <file>', 'read the data from a file (default: stdin)')
    .addHelpText('after', '\nExample:\n  head -c 1M /dev/urandom | vsnap write vol.json --offset 64KiB\n')
    .action(async (manifest: string, o) => {
      const r = await writeCmd(manifest, { offset: sizeArg('--offset', o.offset), input: o.input });
      info(`wrote ${formatSize(r.bytes)} at offset ${o.offset}`);
    });

  program
    .command('status')
    .description('show the volume, its snapshots, who holds it and each partition\'s health')
    .argument('<manifest>', 'volume manifest (JSON)')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  vsnap status vol.json\n')
    .action(async (manifest: string, o) => {
      const r = await status(manifest);
      if (o.json) printJson(r);
      else process.stdout.write(renderStatus(r));
    });
}

// Re-exported for commands that take size flags.
export { parseSize, Option };
