// `vsnap clone create|list|reset|repair|delete`: flag wiring and rendering for
// writable clones (src/commands/clone.ts does the work).
import type { Command } from 'commander';
import { info, printJson } from '../ui.js';
import { formatSize } from '../size.js';
import { table } from '../render.js';
import type { CloneInfo } from '../catalogue/catalogue.js';

function renderCloneList(list: CloneInfo[]): string {
  if (list.length === 0) return 'no clones\n';
  const t = table(['name', 'snapshot', 'created (UTC)', 'used']);
  for (const x of list) t.push([x.name, `${x.snapshot.id} ${x.snapshot.name}`, x.createdAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'), formatSize(x.usedBytes)]);
  return `${t.toString()}\n`;
}

const json = (x: CloneInfo) => ({ name: x.name, snapshot: x.snapshot, createdAt: x.createdAt, usedBytes: x.usedBytes, ...(x.uri ? { uri: x.uri } : {}) });

export function registerClone(program: Command): void {
  const clone = program
    .command('clone')
    .description('writable clones of snapshots: writes go to the clone\'s own overlay, never to the images')
    .addHelpText('after', '\nWhile `vsnap serve` runs, a clone is the read-write NBD export "clone/<name>".\n\nExample:\n  vsnap clone create vol.json pristine test-1\n  vsnap clone reset vol.json test-1\n  vsnap clone delete vol.json test-1\n');

  clone
    .command('create')
    .description('make a writable clone of a snapshot')
    .argument('<manifest>', 'volume manifest (JSON)')
    .argument('<snap>', 'snapshot name, id or "latest"')
    .argument('<name>', 'clone name (as snapshot names: 1-128 of [A-Za-z0-9._:-])')
    .option('--force', 'clone a snapshot even if reported stale')
    .option('--json', 'print JSON: {name, snapshot: {id, name}, createdAt, usedBytes}')
    .action(async (manifest: string, snap: string, name: string, o) => {
      const r = await (await import('../commands/clone.js')).cloneCreate(manifest, snap, name, { force: o.force === true });
      if (o.json) printJson(json(r));
      else {
        info(`clone "${r.name}" of snapshot ${r.snapshot.id} "${r.snapshot.name}" created${r.uri ? ` (served at ${r.uri})` : ''}`);
        process.stdout.write(`${r.name}\n`);
      }
    });

  clone
    .command('list')
    .description('list the clones')
    .argument('<manifest>', 'volume manifest (JSON)')
    .option('--json', 'print JSON: [{name, snapshot: {id, name}, createdAt, usedBytes}]')
    .action(async (manifest: string, o) => {
      const r = await (await import('../commands/clone.js')).cloneList(manifest);
      if (o.json) printJson(r.map(json));
      else process.stdout.write(renderCloneList(r));
    });

  clone
    .command('reset')
    .description('discard every write made to a clone (it reads as its snapshot again)')
    .argument('<manifest>', 'volume manifest (JSON)')
    .argument('<name>', 'clone name')
    .action(async (manifest: string, name: string) => {
      const r = await (await import('../commands/clone.js')).cloneReset(manifest, name);
      info(`clone "${r.name}" reset to snapshot ${r.snapshot.id} "${r.snapshot.name}"`);
    });

  clone
    .command('repair')
    .description('accept the loss of damaged map records of a clone (vsnap verify names them): drop them, after printing each')
    .argument('<manifest>', 'volume manifest (JSON)')
    .argument('<name>', 'clone name')
    .option('--dry-run', 'print what would be dropped, change nothing')
    .option('--json', 'print JSON: {name, snapshot, dryRun, maps: [{partition, file, dropped: [{offset, fault, block}], kept, tornBytes, sizeBefore, sizeAfter}]}')
    .addHelpText('after', '\nA map record whose bytes are damaged makes the clone refuse to open (its NBD export is refused).\nrepair keeps every valid record; the blocks of the dropped ones read as the snapshot again.\nOffline only: stop `vsnap serve` first. `vsnap clone reset` discards every write instead.\n')
    .action(async (manifest: string, name: string, o) => {
      const r = await (await import('../commands/clone.js')).cloneRepair(manifest, name, { dryRun: o.dryRun === true });
      if (o.json) {
        printJson({ name: r.name, snapshot: r.snapshot, dryRun: r.dryRun, maps: r.maps.map((m) => ({ partition: m.partition, ...m.repair, dropped: m.repair.dropped.map((d) => ({ ...d, block: d.block.toString() })) })) });
        return;
      }
      const verb = r.dryRun ? 'would drop' : 'dropped';
      let n = 0;
      for (const m of r.maps) {
        for (const d of m.repair.dropped) {
          n++;
          process.stdout.write(`${verb}: clone ${r.name} partition ${m.partition} ${m.repair.file} map record at offset ${d.offset}: ${d.fault} (block field ${d.block})\n`);
        }
        if (m.repair.kept) info(`partition ${m.partition}: ${m.repair.kept} valid record(s) after the first bad one kept`);
      }
      if (!r.maps.length) info(`clone "${r.name}": no damaged map records, nothing to repair`);
      else info(`clone "${r.name}": ${n} map record(s) ${r.dryRun ? 'would be dropped' : 'dropped'}; the blocks they named read as snapshot ${r.snapshot.id} "${r.snapshot.name}" again${r.dryRun ? ' (dry run: nothing changed)' : ''}`);
    });

  clone
    .command('delete')
    .description('delete clones and their writes')
    .argument('<manifest>', 'volume manifest (JSON)')
    .argument('<name...>', 'clone names')
    .action(async (manifest: string, names: string[]) => {
      const r = await (await import('../commands/clone.js')).cloneDelete(manifest, names);
      for (const n of r.deleted) info(`deleted clone "${n}"`);
    });
}
