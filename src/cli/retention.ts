// Flag wiring of the retention and staleness commands: hold, release (ZFS's
// words: protect snapshots from prune and delete) and accept (clear stale
// marks once an admin has checked the files). Rendering happens here only.
import type { Command } from 'commander';
import { info, printJson } from '../ui.js';

const snap = (s: { id: number; name: string }) => `${s.id} "${s.name}"`;

export function registerRetention(program: Command): void {
  program
    .command('hold')
    .description('protect snapshots from prune, serve --every and delete until released')
    .argument('<manifest>', 'volume manifest (JSON)')
    .argument('<snap...>', 'snapshot names, ids or "latest"')
    .option('--json', 'print JSON: {held: [{id, name}], alreadyHeld: [{id, name}]}')
    .addHelpText('after', '\nHolding a held snapshot again changes nothing.\n\nExample:\n  vsnap hold vol.json before-upgrade\n')
    .action(async (manifest: string, refs: string[], o) => {
      const r = await (await import('../commands/hold.js')).hold(manifest, refs);
      if (o.json) return printJson(r);
      for (const s of r.held) info(`held snapshot ${snap(s)}: prune and delete leave it until vsnap release`);
      for (const s of r.alreadyHeld) info(`snapshot ${snap(s)} was already held`);
    });

  program
    .command('release')
    .description('free held snapshots: prune and delete may remove them again')
    .argument('<manifest>', 'volume manifest (JSON)')
    .argument('<snap...>', 'snapshot names, ids or "latest"')
    .option('--json', 'print JSON: {released: [{id, name}], notHeld: [{id, name}]}')
    .addHelpText('after', '\nReleasing a snapshot that is not held changes nothing and says so (exit 0).\n\nExample:\n  vsnap release vol.json before-upgrade\n')
    .action(async (manifest: string, refs: string[], o) => {
      const r = await (await import('../commands/hold.js')).release(manifest, refs);
      if (o.json) return printJson(r);
      for (const s of r.released) info(`released snapshot ${snap(s)}`);
      for (const s of r.notHeld) info(`snapshot ${snap(s)} was not held: nothing to release`);
    });

  program
    .command('accept')
    .description('clear the stale marks of the snapshots on backing files an admin has checked are unchanged')
    .argument('<manifest>', 'volume manifest (JSON)')
    .argument('<file...>', 'backing files of the manifest (paths relative to the working directory)')
    .option('--json', 'print JSON: {files: [...], cleared: [{partition, file, snapshots, reason}]}')
    .addHelpText(
      'after',
      '\nSafe only when the data is byte for byte what vsnap left (a touch, a copy back of the same bytes).\n' +
        'After any real change the snapshots on the file would read wrong data: delete them instead.\n' +
        'Not while vsnap serve holds the volume (stop it first).\n\nExample:\n  vsnap accept vol.json /srv/vol/disk0.img\n',
    )
    .action(async (manifest: string, files: string[], o) => {
      const r = await (await import('../commands/accept.js')).accept(manifest, files);
      if (o.json) return printJson(r);
      for (const c of r.cleared) info(`cleared: snapshot${c.snapshots.length > 1 ? 's' : ''} ${c.snapshots.join(', ')} of partition ${c.partition} on ${c.file} (${c.reason})`);
      const none = r.files.filter((f) => !r.cleared.some((c) => c.file.split(', ').includes(f)));
      for (const f of none) info(`${f}: no stale snapshots to clear; its current state is recorded as vsnap's`);
    });
}
