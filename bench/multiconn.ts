// Multi-connection copies (issue 11, design.md §10: `nbdcopy -C 4` in and
// out >= the same against qemu-nbd): nbdcopy with four connections
//   - out: the whole volume from vsnap's snapshot export (a quarter of it in
//     the change log, as in nbd-read) to null:, against qemu-nbd -r -e 4;
//   - in: a raw file of the volume's size into vsnap's live export (no
//     snapshot), with --flush, against a writable qemu-nbd -e 4.
// nbdcopy opens more than one connection only when the server advertises
// CAN_MULTI_CONN (qemu-nbd does with -e > 1), so each row names what nbdinfo
// saw. Images on tmpfs, each side's images prepared once: a rewrite with no
// snapshot costs the same every run.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { have, must, mbps, spread, perRun, missing, type Goal, type Row } from './lib.js';
import { exportUri, freshCopy, makePristine, multiConn, placeLabel, serveQemuNbd, serveVsnap, type Server } from './servers.js';
import { LOGGED_SHARE, loggedNote, snapshotWithLog } from './reads.js';

const MiB = 1 << 20;
const FILES = 2;
const FILE_SIZE = 512 * MiB;
const VOLUME = FILES * FILE_SIZE;
const CONNECTIONS = 4;
const TIMEOUT_S = 300;

type Dir = 'out' | 'in';
type Side = 'vsnap' | 'qemu-nbd';

export async function benchMultiConn(base: string, runs: number): Promise<Row[]> {
  const qemuMissing = have('qemu-nbd') ? null : 'qemu-nbd not installed';
  if (!have('nbdcopy')) return (['out', 'in'] as Dir[]).map((d) => missing('multiconn', `nbdcopy -C ${CONNECTIONS} ${d}`, 'nbdcopy not installed'));
  if (!fs.existsSync(base)) base = os.tmpdir();
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const where = placeLabel(base);
  const work = fs.mkdtempSync(path.join(base, 'vsnap-bench-mc-'));
  const ms = new Map<string, number[]>();
  const conns = new Map<string, string>();
  let snapNote = '';
  try {
    log(`multiconn: preparing 1 GiB of images in ${work}`);
    const pristine = await makePristine(work, FILES, FILE_SIZE);
    const snap = await snapshotWithLog(pristine, path.join(work, 'snap'), VOLUME, LOGGED_SHARE);
    snapNote = `; ${loggedNote(snap.changed)}`;
    const liveDir = path.join(work, 'live');
    await freshCopy(pristine.volDir, liveDir);
    const peerImg = path.join(work, 'peer-rw.img');
    await freshCopy(pristine.raw, peerImg);
    const start: Record<`${Dir}|${Side}`, () => Promise<Server>> = {
      'out|vsnap': async () => {
        const s = await serveVsnap(snap.manifest);
        return { ...s, uri: exportUri(s.socket, 'snapshot/base') };
      },
      'out|qemu-nbd': () => serveQemuNbd(pristine.raw, path.join(work, 'qemu.sock'), { readOnly: true, shared: CONNECTIONS }),
      'in|vsnap': async () => {
        const s = await serveVsnap(path.join(liveDir, 'volume.json'));
        return { ...s, uri: exportUri(s.socket, 'live') };
      },
      'in|qemu-nbd': () => serveQemuNbd(peerImg, path.join(work, 'qemu.sock'), { shared: CONNECTIONS }),
    };
    const sides: Side[] = qemuMissing ? ['vsnap'] : ['vsnap', 'qemu-nbd'];
    for (let i = 0; i < runs; i++) {
      for (const d of ['out', 'in'] as Dir[]) {
        // Alternate who goes first, run by run.
        for (const side of i % 2 ? [...sides].reverse() : sides) {
          const key = `${d}|${side}` as const;
          const srv = await start[key]();
          let t: number;
          try {
            if (!conns.has(key)) conns.set(key, multiConn(srv.uri));
            const [src, dst] = d === 'out' ? [srv.uri, 'null:'] : [pristine.raw, srv.uri];
            // --flush on the way in: the copy counts once it is durable, and
            // a FLUSH on one connection must cover the other three's writes.
            const args = [String(TIMEOUT_S), 'nbdcopy', `--connections=${CONNECTIONS}`, ...(d === 'in' ? ['--flush'] : []), src, dst];
            t = (await must('timeout', args, { cwd: work })).ms;
          } finally {
            await srv.stop();
          }
          log(`multiconn run ${i + 1}/${runs} ${d} ${side}: ${mbps(VOLUME, t).toFixed(0)} MiB/s`);
          ms.set(key, [...(ms.get(key) ?? []), t]);
        }
      }
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const suffix = runs === 1 ? `${where}, 1 run` : where;
  const goal: Goal | undefined = where === 'tmpfs' ? { op: '>=', target: 1.0 } : undefined;
  const label: Record<Dir, string> = {
    out: `nbdcopy -C ${CONNECTIONS} out of a snapshot export (${LOGGED_SHARE * 100}% logged) to null: (discarded)`,
    in: `nbdcopy -C ${CONNECTIONS} --flush of a 1 GiB file into the live export (no snapshot)`,
  };
  const rows: Row[] = [];
  for (const d of ['out', 'in'] as Dir[]) {
    const rate = (side: Side) => (ms.get(`${d}|${side}`) ?? []).map((t) => mbps(VOLUME, t));
    for (const side of ['vsnap', 'qemu-nbd'] as Side[]) {
      const what = `${label[d]}: ${side === 'vsnap' ? 'vsnap serve' : `qemu-nbd -e ${CONNECTIONS}${d === 'out' ? ' -r' : ''}`} (${suffix})`;
      const r = rate(side);
      if (!r.length) rows.push(missing('multiconn', what, (side === 'qemu-nbd' && qemuMissing) || 'not run'));
      else rows.push({ group: 'multiconn', what, ...spread(r), unit: 'MiB/s', note: `multi-conn advertised: ${conns.get(`${d}|${side}`)}${side === 'vsnap' && d === 'out' ? snapNote : ''}` });
    }
    const what = `${label[d]}: vsnap / qemu-nbd (${suffix})`;
    if (!rate('qemu-nbd').length) rows.push(missing('multiconn', what, qemuMissing ?? 'not run', goal));
    else rows.push({ group: 'multiconn', what, ...spread(perRun(rate('vsnap'), rate('qemu-nbd'))), unit: 'ratio', goal, note: goal ? '' : 'for reference (the goal is on tmpfs)' });
  }
  return rows;
}
