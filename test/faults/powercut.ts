// The power-cut simulator: replays the merged journal of one command
// (io-journal.ts) over a model of the files under the volume directory and
// builds what a power cut could leave on disk just after each sync returned:
//   - data: a file holds what it held when its last completed fsync or
//     fdatasync started; writes after that are dropped ('drop') or torn at
//     512-byte sectors, every other sector of each such write reaching the
//     disk ('torn');
//   - names: a directory holds the entries it had when its last completed
//     fsync started; creates, renames, links and unlinks after that are
//     undone (a file whose entry is not durable is not there at all).
// Strict POSIX, stricter than ext4 in ordered mode: what vsnap does not sync
// it must not rely on.
import fs from 'node:fs';
import path from 'node:path';

type Node = FileNode | DirNode;
interface FileNode {
  kind: 'f';
  cur: Buffer;
  dur: Buffer;
  /** Writes since the content `dur` was taken: [pos, data]. */
  since: [number, Buffer][];
  /** Writes dropped from the front of `since` so far (a sync's write count is absolute). */
  sinceBase?: number;
  /** The sequence number of the sync whose starting content `dur` is (0: the scan). */
  durSeq?: number;
}
interface DirNode {
  kind: 'd';
  cur: Map<string, Node>;
  dur: Map<string, Node>;
  durSeq?: number;
}

export interface JournalEvent {
  t: string;
  pid: number;
  ev: string;
  path: string;
  dest?: string;
  pos?: number;
  data?: string;
  len?: number;
  create?: boolean;
  trunc?: boolean;
  id?: string;
}

export type Variant = 'drop' | 'torn';

export function readJournal(dir: string): JournalEvent[] {
  const evs: JournalEvent[] = [];
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.jsonl'))) {
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) if (line) evs.push(JSON.parse(line) as JournalEvent);
  }
  return evs.sort((a, b) => (BigInt(a.t) < BigInt(b.t) ? -1 : BigInt(a.t) > BigInt(b.t) ? 1 : 0));
}

function scan(dir: string): DirNode {
  const d: DirNode = { kind: 'd', cur: new Map(), dur: new Map() };
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    let n: Node;
    if (e.isDirectory()) n = scan(p);
    else if (e.isFile()) {
      const b = fs.readFileSync(p);
      n = { kind: 'f', cur: b, dur: Buffer.from(b), since: [] };
    } else continue;
    d.cur.set(e.name, n);
    d.dur.set(e.name, n);
  }
  return d;
}

export class DiskModel {
  private readonly top: DirNode;
  /** Per sync id: what the file or directory held when the sync started. */
  private readonly pending = new Map<string, { node: Node; content: Buffer | Map<string, Node>; writes: number; seq: number }>();
  /** Counts sync starts: two processes may sync one file or directory at once, and finish in either order. */
  private syncs = 0;

  constructor(private readonly root: string) {
    this.top = scan(root);
  }

  private parts(p: string): string[] | undefined {
    const rel = path.relative(this.root, p.replace(/ \(deleted\)$/, ''));
    if (rel.startsWith('..') || path.isAbsolute(rel)) return undefined;
    return rel === '' ? [] : rel.split(path.sep);
  }

  private lookup(p: string): Node | undefined {
    const parts = this.parts(p);
    if (!parts) return undefined;
    let n: Node = this.top;
    for (const x of parts) {
      if (n.kind !== 'd') return undefined;
      const next: Node | undefined = n.cur.get(x);
      if (!next) return undefined;
      n = next;
    }
    return n;
  }

  private parentOf(p: string): { dir: DirNode; name: string } | undefined {
    const d = this.lookup(path.dirname(p));
    return d && d.kind === 'd' ? { dir: d, name: path.basename(p) } : undefined;
  }

  private mkdirs(p: string): void {
    const parts = this.parts(p);
    if (!parts) return;
    let n: DirNode = this.top;
    for (const x of parts) {
      let next = n.cur.get(x);
      if (!next) {
        next = { kind: 'd', cur: new Map(), dur: new Map() };
        n.cur.set(x, next);
      }
      if (next.kind !== 'd') return;
      n = next;
    }
  }

  apply(e: JournalEvent): void {
    const node = this.lookup(e.path);
    switch (e.ev) {
      case 'open': {
        if (node && node.kind === 'f' && e.trunc) {
          node.cur = Buffer.alloc(0);
          node.since.push([-1, Buffer.alloc(0)]);
        }
        if (!node && e.create) {
          const at = this.parentOf(e.path);
          at?.dir.cur.set(at.name, { kind: 'f', cur: Buffer.alloc(0), dur: Buffer.alloc(0), since: [] });
        }
        return;
      }
      case 'write': {
        if (!node || node.kind !== 'f') return;
        const data = Buffer.from(e.data!, 'base64');
        const end = e.pos! + data.length;
        if (node.cur.length < end) node.cur = Buffer.concat([node.cur, Buffer.alloc(end - node.cur.length)]);
        data.copy(node.cur, e.pos!);
        node.since.push([e.pos!, data]);
        return;
      }
      case 'trunc': {
        if (!node || node.kind !== 'f') return;
        const b = Buffer.alloc(e.len!);
        node.cur.copy(b, 0, 0, Math.min(e.len!, node.cur.length));
        node.cur = b;
        node.since.push([-1, Buffer.alloc(0)]);
        return;
      }
      case 'sync0':
        if (node) {
          const writes = node.kind === 'f' ? (node.sinceBase ?? 0) + node.since.length : 0;
          this.pending.set(e.id!, { node, content: node.kind === 'f' ? Buffer.from(node.cur) : new Map(node.cur), writes, seq: ++this.syncs });
        }
        return;
      case 'sync1': {
        const s = this.pending.get(e.id!);
        if (!s) return;
        this.pending.delete(e.id!);
        // A sync that started before the one that made the node durable last
        // adds nothing when it ends later (another process's fsync of the same
        // directory, say): what a completed sync made durable stays so.
        if (s.seq <= (s.node.durSeq ?? 0)) return;
        s.node.durSeq = s.seq;
        if (s.node.kind === 'f') {
          s.node.dur = s.content as Buffer;
          s.node.since = s.node.since.slice(s.writes - (s.node.sinceBase ?? 0));
          s.node.sinceBase = s.writes;
        } else s.node.dur = s.content as Map<string, Node>;
        return;
      }
      case 'rename':
      case 'link': {
        const to = this.parentOf(e.dest!);
        const from = this.parentOf(e.path);
        if (!node || !to || !from) return;
        to.dir.cur.set(to.name, node);
        if (e.ev === 'rename') from.dir.cur.delete(from.name);
        return;
      }
      case 'unlink':
      case 'rm': {
        const at = this.parentOf(e.path);
        at?.dir.cur.delete(at.name);
        return;
      }
      case 'mkdir':
        this.mkdirs(e.path);
        return;
    }
  }

  /** Write the crash image into `dest` (an empty directory). */
  materialize(dest: string, variant: Variant): void {
    const walk = (d: DirNode, at: string) => {
      for (const [name, n] of d.dur) {
        const p = path.join(at, name);
        if (n.kind === 'd') {
          fs.mkdirSync(p);
          walk(n, p);
        } else fs.writeFileSync(p, variant === 'torn' ? torn(n) : n.dur);
      }
    };
    walk(this.top, dest);
  }
}

/** The durable content with the even-numbered 512-byte sectors of each later write applied (truncates are not applied). */
function torn(n: FileNode): Buffer {
  let b = Buffer.from(n.dur);
  for (const [pos, data] of n.since) {
    if (pos < 0 || data.length === 0) continue;
    const end = pos + data.length;
    if (b.length < end) b = Buffer.concat([b, Buffer.alloc(end - b.length)]);
    for (let k = Math.floor(pos / 512); k * 512 < end; k += 1) {
      if (k % 2 === 1) continue;
      const a = Math.max(pos, k * 512);
      const z = Math.min(end, (k + 1) * 512);
      data.copy(b, a, a - pos, z - pos);
    }
  }
  return b;
}

/** The indexes of the events after which a crash image is taken: every completed sync, and the end. */
export function boundaries(evs: JournalEvent[]): number[] {
  const out = evs.flatMap((e, i) => (e.ev === 'sync1' ? [i] : []));
  if (out[out.length - 1] !== evs.length - 1) out.push(evs.length - 1);
  return out;
}
