// The qemu:dirty-bitmap:<snap> contexts of an export (design.md §9), under
// QEMU's names so that existing backup tools read them:
//   - live export: one per snapshot S, the blocks changed since S;
//   - snapshot T's export: one per snapshot S older than T, the blocks that
//     differ between S and T (logged in L_S .. L_{T-1});
//   - alias export snapshot/<T>@<S>: exactly the one for S.
// Listed by snapshot name; a client may also select one by snapshot id
// (`qemu:dirty-bitmap:3`) or `latest`. The set follows the catalogue: a
// snapshot created after the connection opened is offered to the next one.
import type { MetaContext } from '../block.js';
import type { Cluster } from '../coordinator/cluster.js';
import { changedExtents, STATE_DIRTY } from '../coordinator/changed-extents.js';
import { DIRTY_BITMAP_PREFIX } from '../nbd/constants.js';
import { resolveRef } from '../store/names.js';

export class DirtyBitmaps {
  /**
   * view: 0 for the live volume, else the snapshot id T the export shows;
   * only: the one snapshot an alias export offers; wrap: maps errors to what a client sees.
   */
  constructor(
    private readonly cluster: Cluster,
    private readonly view: number,
    private readonly only: number | undefined,
    private readonly wrap: <T>(p: Promise<T>) => Promise<T>,
  ) {}

  private offers(id: number): boolean {
    if (this.only !== undefined) return id === this.only;
    return this.view === 0 || id < this.view;
  }

  names(): string[] {
    return this.cluster.store.snapshots.filter((s) => this.offers(s.id)).map((s) => DIRTY_BITMAP_PREFIX + s.name);
  }

  context(name: string): MetaContext | undefined {
    if (!name.startsWith(DIRTY_BITMAP_PREFIX)) return undefined;
    let from: number;
    try {
      from = resolveRef(this.cluster.store.snapshots, name.slice(DIRTY_BITMAP_PREFIX.length)).id;
    } catch {
      return undefined;
    }
    if (!this.offers(from)) return undefined;
    const to = this.view === 0 ? null : this.view;
    return {
      flagMask: STATE_DIRTY,
      status: (offset, length) => this.wrap(changedExtents(this.cluster, from, to, offset, length)),
    };
  }
}
