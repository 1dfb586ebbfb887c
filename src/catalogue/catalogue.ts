// The snapshot catalogue: the operations on a volume's snapshots that run
// either in this process (local.ts, over an open store and its workers) or
// inside a `vsnap serve` that holds the volume (remote.ts, over its control
// socket). Commands get one from session.ts and cannot tell which it is;
// serve/ hosts the local one on its control socket.
//
// Every method is one entry of CatalogueCalls, which types its arguments and
// its result; the Catalogue interface, the wire schemas (wire.ts) and the
// remote client are derived from it, so a new method (clone, hold, release)
// is one entry here, one argument schema in wire.ts, one implementation in
// local.ts and one line in LOCAL_OPEN; the compiler names whichever is missing.
import type { SnapshotRecord, SnapshotPartitionRecord } from '../store/store.js';
import type { KeepRules, PrunePlan } from '../prune/plan.js';

/** What create/show print: the commit record's public part, with file paths made absolute. */
export interface SnapshotInfo extends Pick<SnapshotRecord, 'id' | 'name' | 'createdAt' | 'expiresAt' | 'size' | 'blockSize' | 'freezeMs'> {
  changedBytes: number;
  /** Created with --name: retention leaves it alone unless --include-manual. */
  manual: boolean;
  /** Held (vsnap hold): neither prune nor delete removes it until vsnap release. */
  held: boolean;
  /** Allocated bytes of the files in snapshots/<id>/ (store/space.ts). */
  usedBytes: number;
  partitions: Pick<SnapshotPartitionRecord, 'id' | 'worker' | 'pid' | 'snapshotFile' | 'changeLogFile'>[];
}

import type { SpaceReport } from '../store/space.js';

export interface StatusReport {
  name: string;
  size: number;
  blockSize: number;
  store: string;
  snapshots: number;
  latest: { id: number; name: string; createdAt: string } | null;
  heldBy: { pid: number; command: string; socket?: string } | null;
  /** clean: the last session closed in order (false: recovered after a crash); writing: written since this open (a server). */
  partitions: { id: string; worker: number; pid: number; clean: boolean; writing: boolean; stale: number[]; staleReason: string | null; loggedBlocks: number }[];
  workers: { worker: number; pid: number; rss: number }[];
  /** The first failed sync of a backing file while serving: every FLUSH fails until the server restarts. */
  syncFailure: string | null;
  /** Store, snapshots and clones (allocated bytes), free space and the recent growth (store/space.ts). */
  space: SpaceReport;
}

export type PruneResult = PrunePlan & { dryRun: boolean };

export interface CreateArgs {
  name?: string;
  expiresInMs?: number;
}

export interface PruneArgs {
  rules: KeepRules;
  dryRun: boolean;
  /** Let the rules consider manual snapshots too; absent means false (older clients). */
  includeManual?: boolean;
}

/** hold: the snapshots held now, and those that already were (holding twice changes nothing). */
export interface HoldResult {
  held: { id: number; name: string }[];
  alreadyHeld: { id: number; name: string }[];
}

/** release: the snapshots released, and those that were not held (not an error). */
export interface ReleaseResult {
  released: { id: number; name: string }[];
  notHeld: { id: number; name: string }[];
}

export interface DeleteResult {
  deleted: { id: number; name: string }[];
}

/** A writable clone as clone create/list/reset print it (`clone list --json`). */
export interface CloneInfo {
  name: string;
  snapshot: { id: number; name: string };
  createdAt: string;
  /** Bytes its overlays take on disk. */
  usedBytes: number;
  /** The NBD URI of its export `clone/<name>`, when a `vsnap serve` holds the volume. */
  uri?: string;
}

/** No arguments (JSON has no "nothing", so an empty object). */
export type NoArgs = Record<string, never>;

/** Each method's arguments and result: the one table everything else is typed from. */
export interface CatalogueCalls {
  create: { args: CreateArgs; result: SnapshotInfo };
  list: { args: NoArgs; result: SnapshotInfo[] };
  show: { args: { ref: string }; result: SnapshotInfo };
  delete: { args: { refs: string[] }; result: DeleteResult };
  prune: { args: PruneArgs; result: PruneResult };
  status: { args: NoArgs; result: StatusReport };
  hold: { args: { refs: string[] }; result: HoldResult };
  release: { args: { refs: string[] }; result: ReleaseResult };
  cloneCreate: { args: { snap: string; name: string; force?: boolean }; result: CloneInfo };
  cloneList: { args: NoArgs; result: CloneInfo[] };
  cloneReset: { args: { name: string }; result: CloneInfo };
  cloneDelete: { args: { names: string[] }; result: { deleted: string[] } };
}

export type Method = keyof CatalogueCalls;
export type Args<M extends Method> = CatalogueCalls[M]['args'];
export type Result<M extends Method> = CatalogueCalls[M]['result'];

export type Catalogue = { readonly [M in Method]: (args: Args<M>) => Promise<Result<M>> };

// A record rather than an array, so that a method missing here fails to compile.
const METHOD_SET: Record<Method, true> = {
  create: true,
  list: true,
  show: true,
  delete: true,
  prune: true,
  status: true,
  cloneCreate: true,
  cloneList: true,
  cloneReset: true,
  cloneDelete: true,
  hold: true,
  release: true,
};

/** Every method name, in a stable order (for messages and generic wrappers). */
export const METHODS = Object.keys(METHOD_SET) as Method[];

export function isMethod(name: unknown): name is Method {
  return typeof name === 'string' && Object.hasOwn(METHOD_SET, name);
}

/** Call a method chosen at run time (a request read off the control socket). */
export function dispatch<M extends Method>(catalogue: Catalogue, method: M, args: Args<M>): Promise<Result<M>> {
  // TypeScript cannot narrow catalogue[M] through a generic key; the types above tie them.
  return (catalogue[method] as (a: Args<M>) => Promise<Result<M>>)(args);
}

/** The same catalogue with every call passed through `around` (the server uses it to run calls one at a time). */
export function wrapCatalogue(inner: Catalogue, around: <T>(method: Method, run: () => Promise<T>) => Promise<T>): Catalogue {
  const out: Partial<Record<Method, (a: never) => Promise<unknown>>> = {};
  for (const m of METHODS) out[m] = (args: never) => around(m, () => dispatch(inner, m, args));
  return out as Catalogue;
}
