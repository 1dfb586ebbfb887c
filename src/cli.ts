// All flag wiring. Each action calls a command function (src/commands/*),
// which returns data; rendering for people or scripts happens here only.
import { Command } from 'commander';
import { sizeArg, intArg, waitArg } from './args.js';
import { formatSize } from './size.js';
import { UsageError } from './errors.js';
import { c, info, printJson, progress, spinner, withProgress, outputMode } from './ui.js';
import { renderPrune, renderSnapshot, renderSnapshotList, renderStatus, renderLayout, renderDiff } from './render.js';
import { registerRetention } from './cli/retention.js';
import { durationArg } from './args.js';
import type { KeepRules } from './prune/plan.js';
import { EXIT_INTEGRITY } from './errors.js';
import { VERSION } from './version.js';
import { registerClone } from './cli/clone.js';

// Command modules load on demand (await import in each action): a run pays
// only for the command it runs, which matters for scripts calling vsnap often.

/** Set the process-wide output mode and lock wait from the global flags. */
function applyGlobalOptions(o: { quiet?: boolean; scripted?: boolean; wait?: string }): void {
  outputMode.quiet = o.quiet === true;
  outputMode.scripted = o.scripted === true;
  // The lock reads its wait from this variable (store/lock.ts): the flag wins over an inherited value.
  if (o.wait !== undefined) process.env.VSNAP_LOCK_WAIT_MS = String(waitArg('--wait', o.wait));
}

export function buildProgram(): Command {
  const program = new Command('vsnap');
  program
    .description('Consistent copy-on-write snapshots of virtual volumes built from raw disk images')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) })
    // Global flags, accepted before or after the command (vsnap -q prune m.json, vsnap prune m.json -q).
    .option('-q, --quiet', 'print nothing on stderr but errors (results on stdout stay)')
    .option('-H, --scripted', 'tables for scripts: tab-separated, no header line (as zfs list -H)')
    .option('--wait <duration>', 'wait this long for the store lock held by another vsnap (0 = fail at once; default 3s)')
    .hook('preAction', (cmd) => applyGlobalOptions(cmd.opts()));

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
      const r = await (await import('./commands/init.js')).init({
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
    .description('check a volume manifest and its store (every problem at once) and print the layout')
    .argument('<manifest>', 'volume manifest (JSON)')
    .option('--json', 'print {ok, problems, ...layout} as JSON (also when there are problems)')
    .addHelpText('after', '\nExample:\n  vsnap validate vol.json --json\n')
    .action(async (manifest: string, o) => {
      const { report, layout, error } = await (await import('./commands/validate.js')).validate(manifest);
      // Problems go to stderr and set the exit code; with --json, stdout
      // carries them as well, so a script needs no second parser.
      if (o.json) printJson(report);
      else if (layout && !error) {
        const n = layout.partitions.length;
        info(`volume ${c.bold(layout.name)}: ${formatSize(layout.size)} (${layout.size} bytes), block size ${formatSize(layout.blockSize)}, ${n} partition${n === 1 ? '' : 's'}`);
        info(`store ${layout.store}`);
        process.stdout.write(renderLayout(layout));
      }
      if (error) throw error;
    });

  registerSnapshotCommands(program);
  registerWorkflowCommands(program);
  registerServe(program);
  registerVerify(program);
  registerRetention(program);
  registerClone(program);
  return program;
}

function registerSnapshotCommands(program: Command): void {
  program
    .command('create')
    .description('take a snapshot of every partition at one instant')
    .argument('<manifest>', 'volume manifest (JSON)')
    .option('--name <name>', 'snapshot name (default: UTC time YYYYMMDDTHHMMSSZ); a named snapshot is manual: prune leaves it alone')
    .option('--expires <duration>', 'let prune delete it after this long (30m, 12h, 7d, 2w)')
    .option('--json', 'print the snapshot as JSON')
    .addHelpText('after', '\nExample:\n  vsnap create vol.json --name before-upgrade\n  vsnap create vol.json --expires 1d --json\n')
    .action(async (manifest: string, o) => {
      const expiresInMs = o.expires === undefined ? undefined : durationArg('--expires', o.expires);
      const sp = spinner('taking snapshot');
      try {
        const r = await (await import('./commands/snapshots.js')).create(manifest, { name: o.name, expiresInMs });
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
    .option('--json', 'print JSON: [{id, name, createdAt, changedBytes, usedBytes, expiresAt, manual, held}]')
    .addHelpText('after', '\nExample:\n  vsnap list vol.json --json\n')
    .action(async (manifest: string, o) => {
      const r = await (await import('./commands/snapshots.js')).list(manifest);
      if (o.json) printJson(r.map((s) => ({ id: s.id, name: s.name, createdAt: s.createdAt, changedBytes: s.changedBytes, usedBytes: s.usedBytes, expiresAt: s.expiresAt, manual: s.manual, held: s.held })));
      else if (r.length === 0) info('no snapshots');
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
      const r = await (await import('./commands/snapshots.js')).show(manifest, snap);
      if (o.json) printJson(r);
      else process.stdout.write(renderSnapshot(r));
    });

  program
    .command('delete')
    .description('delete snapshots; the others read exactly as before')
    .argument('<manifest>', 'volume manifest (JSON)')
    .argument('<snap...>', 'snapshot names, ids or "latest"')
    .option('--json', 'print JSON: {deleted: [{id, name}]}')
    .addHelpText('after', '\nA held snapshot (vsnap hold) is refused, and then nothing is deleted.\n\nExample:\n  vsnap delete vol.json before-upgrade 12\n')
    .action(async (manifest: string, snaps: string[], o) => {
      const r = await (await import('./commands/snapshots.js')).remove(manifest, snaps);
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
      await (await import('./commands/io.js')).readCmd(manifest, { offset: sizeArg('--offset', o.offset), length: sizeArg('--length', o.length), snapshot: o.snapshot, output: o.output, force: o.force === true });
    });

  program
    .command('write')
    .description('write bytes into the live volume (copy-on-write), durable on exit 0')
    .argument('<manifest>', 'volume manifest (JSON)')
    .requiredOption('--offset <n>', 'volume offset (bytes or units)')
    .option('--input <file>', 'read the data from a file (default: stdin)')
    .addHelpText('after', '\nExample:\n  head -c 1M /dev/urandom | vsnap write vol.json --offset 64KiB\n')
    .action(async (manifest: string, o) => {
      // Progress from the first second: reading the input (stdin is read to
      // its end before anything is written), writing, then the final sync.
      const { writeCmd } = await import('./commands/io.js');
      const r = await withProgress('write', (bar) =>
        writeCmd(manifest, {
          offset: sizeArg('--offset', o.offset),
          input: o.input,
          onPhase: (label, t) => {
            bar.total(t);
            bar.set(label === 'syncing' ? t : 0);
            bar.phase(label === 'writing' ? '' : label);
          },
          onProgress: (n) => bar.set(n),
        }),
      );
      info(`wrote ${formatSize(r.bytes)} at offset ${o.offset}`);
    });

  program
    .command('status')
    .description('show the volume, its snapshots, who holds it and each partition\'s health')
    .argument('<manifest>', 'volume manifest (JSON)')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  vsnap status vol.json\n')
    .action(async (manifest: string, o) => {
      const r = await (await import('./commands/status.js')).status(manifest);
      if (o.json) printJson(r);
      else process.stdout.write(renderStatus(r));
    });
}


/** Collect a repeatable option's values. */
function collectValues(v: string, prev: string[]): string[] {
  return [...prev, v];
}

const KEEP_FLAGS: [keyof KeepRules, string][] = [
  ['last', '--keep-last'],
  ['hourly', '--keep-hourly'],
  ['daily', '--keep-daily'],
  ['weekly', '--keep-weekly'],
  ['monthly', '--keep-monthly'],
  ['yearly', '--keep-yearly'],
];

function addKeepOptions(cmd: Command): Command {
  for (const [k, flag] of KEEP_FLAGS) cmd.option(`${flag} <n>`, `keep the newest snapshot of each of the last N ${k === 'last' ? 'snapshots' : k.replace('ly', '') + 's'}`.replace('dais', 'days'));
  return cmd;
}

function keepRules(o: Record<string, string | undefined>): KeepRules {
  const rules: KeepRules = {};
  for (const [k, flag] of KEEP_FLAGS) {
    const key = `keep${k[0].toUpperCase()}${k.slice(1)}`;
    if (o[key] !== undefined) rules[k] = intArg(flag, o[key], 0, 1_000_000, 0);
  }
  return rules;
}

function registerWorkflowCommands(program: Command): void {
  program
    .command('restore')
    .description('make the live volume read as a snapshot again; cost follows what changed since')
    .argument('<manifest>', 'volume manifest (JSON)')
    .argument('<snap>', 'snapshot name, id or "latest"')
    .option('--partition <id>', 'restore only this partition (repeatable)', collectValues, [])
    .option('--force', 'restore a snapshot even if reported stale')
    .option('--dry-run', 'say what would be written (bytes, blocks, per partition); change nothing')
    .option('--json', 'print JSON: {snapshot, name, restoredBytes, blocks, dryRun, partitions, perPartition}')
    .addHelpText('after', '\nExample:\n  vsnap restore vol.json pristine\n  vsnap restore vol.json pristine --dry-run\n  vsnap restore vol.json latest --partition data --json\n')
    .action(async (manifest: string, snap: string, o) => {
      const dryRun = o.dryRun === true;
      // Bytes count once durable (worker/restore.ts), against the total the restore will write.
      const bar = dryRun ? undefined : progress('restoring');
      let done = 0;
      let total = 0;
      const r = await (await import('./commands/restore.js')).restore(manifest, snap, {
        partitions: o.partition,
        force: o.force === true,
        dryRun,
        onStart: (bytes) => bar?.update(0, (total = bytes)),
        onProgress: (n) => bar?.update((done += n), total),
      });
      bar?.done();
      if (dryRun) {
        info(`restore of snapshot ${r.snapshot.id} "${r.snapshot.name}" would write ${formatSize(r.restoredBytes)} (${r.blocks} blocks); nothing was changed`);
        for (const p of r.perPartition) info(`  ${p.id}: ${formatSize(p.bytes)} (${p.blocks} blocks)`);
      } else {
        info(`restored snapshot ${r.snapshot.id} "${r.snapshot.name}": ${formatSize(r.restoredBytes)} written`);
      }
      if (o.json) printJson({ snapshot: r.snapshot.id, name: r.snapshot.name, restoredBytes: r.restoredBytes, blocks: r.blocks, dryRun, partitions: r.partitions, perPartition: r.perPartition });
    });

  program
    .command('export')
    .description('write a raw image of the volume as of a snapshot (or live), or each backing file with --split')
    .argument('<manifest>', 'volume manifest (JSON)')
    .argument('<snap>', 'snapshot name, id, "latest" or "live"')
    .option('--output <file>', 'raw image of the whole volume (sparse)')
    .option('--split <dir>', 'write every backing file as of the snapshot into this directory')
    .option('--force', 'export a snapshot even if reported stale')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  vsnap export vol.json before-upgrade --output /tmp/vol.raw\n  vsnap export vol.json latest --split /tmp/images\n')
    .action(async (manifest: string, snap: string, o) => {
      const { exportCmd } = await import('./commands/export.js');
      const r = await withProgress('export', (bar) =>
        exportCmd(manifest, snap, { output: o.output, split: o.split, force: o.force === true, onTotal: bar.total, onProgress: bar.add, onPhase: bar.phase }),
      );
      info(`exported ${r.snapshot === 'live' ? 'the live volume' : `snapshot ${r.snapshot.id} "${r.snapshot.name}"`}: ${formatSize(r.bytes)}`);
      if (o.json) printJson(r);
    });

  program
    .command('diff')
    .description('byte ranges changed between two snapshots, or since one (to the live volume)')
    .argument('<manifest>', 'volume manifest (JSON)')
    .argument('<from>', 'older snapshot')
    .argument('[to]', 'newer snapshot (default: the live volume)')
    .option('--exact', 'drop blocks whose content is equal after all')
    .option('--by-file', 'also give the ranges in backing-file coordinates')
    .option('--json', 'print JSON: {from, to, ranges: [{offset, length}]}')
    .addHelpText('after', '\nExample:\n  vsnap diff vol.json nightly-1 nightly-2 --json\n  vsnap diff vol.json pristine --by-file\n')
    .action(async (manifest: string, from: string, to: string | undefined, o) => {
      const r = await (await import('./commands/diff.js')).diff(manifest, from, to, { exact: o.exact === true, byFile: o.byFile === true });
      if (o.json) {
        printJson(r);
        return;
      }
      info(`${r.ranges.length} ranges, ${formatSize(r.changedBytes)} changed from ${r.from} to ${r.to}`);
      process.stdout.write(renderDiff(r));
    });

  addKeepOptions(
    program
      .command('prune')
      .description('delete snapshots no keep rule keeps, and every expired one')
      .argument('<manifest>', 'volume manifest (JSON)'),
  )
    .option('--include-manual', 'let the rules delete manual snapshots (created with --name) too; held ones never')
    .option('--dry-run', 'only say what would be deleted')
    .option('--json', 'print JSON: {kept: [...], deleted: [...]}')
    .addHelpText(
      'after',
      '\nOnly automatic snapshots (created without --name) are considered unless --include-manual; held snapshots (vsnap hold) are never deleted.\n' +
        'Buckets are in local time (TZ); weeks are ISO weeks. Expired snapshots (create --expires) go unless held.\n' +
        'Deletions are printed on stdout; nothing is, when nothing was deleted.\n\nExample:\n  vsnap prune vol.json --keep-last 3 --keep-hourly 24 --keep-daily 7 --keep-weekly 4\n',
    )
    .action(async (manifest: string, o) => {
      const r = await (await import('./commands/prune.js')).prune(manifest, keepRules(o), { dryRun: o.dryRun === true, includeManual: o.includeManual === true });
      if (o.json) {
        printJson({ kept: r.keep, deleted: r.delete, dryRun: r.dryRun });
        return;
      }
      const out = renderPrune(r);
      process.stdout.write(out.result);
      for (const n of out.notes) info(n);
    });
}

function registerServe(program: Command): void {
  addKeepOptions(
    program
      .command('serve')
      .description('serve the live volume (read-write) and every snapshot (read-only) over NBD')
      .argument('<manifest>', 'volume manifest (JSON)')
      .option('--socket <path>', 'Unix socket to listen on (default: <store>/nbd.sock, mode 0600)')
      .option('--listen <host:port>', 'TCP address to listen on instead (loopback unless --allow-remote)')
      .option('--allow-remote', 'allow --listen on a non-loopback address (NBD has no authentication)')
      .option('--every <duration>', 'take a snapshot this often (30m, 1h, 1d), then prune with the --keep-* flags'),
  )
    .option('--include-manual', "--every's prune may delete manual snapshots (created with --name) too; held ones never")
    .option('--run <cmd>', 'captive mode: run CMD with $uri and $socket set, stop, exit with its status')
    .option('--clone <snap>', 'with --run: $uri is a throwaway clone of SNAP, deleted afterwards (through the running server, if one holds the volume)')
    .addHelpText(
      'after',
      '\nExports: "" and "live" (read-write), "snapshot/<name>", "snapshot/<id>", "snapshot/latest" (read-only), "clone/<name>" (read-write).\n' +
        'While serving, create/list/show/delete/prune/status/clone/hold/release from another shell go through the server.\n\n' +
        'Example:\n  vsnap serve vol.json --every 1h --keep-hourly 24 --keep-daily 7\n' +
        '  vsnap serve vol.json --run \'qemu-img convert -f raw -O raw "$uri" /tmp/copy.raw\'\n' +
        '  vsnap serve vol.json --clone pristine --run ./destructive-test.sh\n',
    )
    .action(async (manifest: string, o) => {
      const code = await (await import('./serve/serve.js')).serve(manifest, {
        socket: o.socket,
        listen: o.listen,
        allowRemote: o.allowRemote === true,
        everyMs: o.every === undefined ? undefined : durationArg('--every', o.every),
        keep: keepRules(o),
        includeManual: o.includeManual === true,
        run: o.run,
        clone: o.clone,
        log: (m) => info(m),
        onReady: (uri) => {
          if (!o.run) process.stdout.write(`${uri}\n`);
        },
      });
      process.exitCode = code;
    });
}

function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('read every file of the store and check it; exit 3 naming each problem')
    .argument('<manifest>', 'volume manifest (JSON)')
    .argument('[snap]', 'check only this snapshot')
    .option('--json', 'print JSON: {ok, snapshots, clones, bytesRead, problems: [{snapshot, clone, partition, file, message}]}')
    .addHelpText('after', '\nExample:\n  vsnap verify vol.json\n  vsnap verify vol.json latest --json\n')
    .action(async (manifest: string, snap: string | undefined, o) => {
      const { verify } = await import('./commands/verify.js');
      const r = await withProgress('verify', (bar) => verify(manifest, snap, { onTotal: bar.total, onProgress: bar.add }));
      if (o.json) printJson(r);
      for (const p of r.problems) info(`${c.red('problem:')} ${p.clone === null ? '' : `clone ${p.clone} of `}snapshot ${p.snapshot ?? '-'} partition ${p.partition ?? '-'}${p.file ? ` ${p.file}` : ''}: ${p.message}`);
      info(`checked ${r.snapshots} snapshot(s), ${r.clones} clone(s), read ${formatSize(r.bytesRead)}: ${r.ok ? 'no problems' : `${r.problems.length} problem(s)`}`);
      if (!r.ok) {
        // The report is printed; exit 3 without repeating it.
        process.exitCode = EXIT_INTEGRITY;
      }
    });
}
