// Metadata contexts: which ones an export offers (NBD_OPT_LIST_META_CONTEXT),
// which ones a client selects (NBD_OPT_SET_META_CONTEXT), with the ids the
// BLOCK_STATUS chunks carry. base:allocation is always offered and answered
// by BlockDevice.blockStatus; a device may offer more (BlockDevice.metaContexts,
// e.g. qemu:dirty-bitmap:<snap>). Queries that match nothing are ignored, as
// the spec requires: a client learns what it got from the replies.

import type { BlockDevice, MetaContext } from '../block.js';
import { BASE_ALLOCATION, BASE_ALLOCATION_ID, STATE_HOLE, STATE_ZERO } from './constants.js';

/** A context selected for the connection: its id on the wire, the name the client used, and what answers it. */
export interface SelectedContext {
  id: number;
  name: string;
  context: MetaContext;
}

/** base:allocation as a MetaContext over the device's blockStatus. */
function baseAllocation(device: BlockDevice): MetaContext {
  return { flagMask: STATE_HOLE | STATE_ZERO, status: (offset, length) => device.blockStatus(offset, length) };
}

/** Every context the device offers, base:allocation first. */
export function offeredContexts(device: BlockDevice): string[] {
  return [BASE_ALLOCATION, ...(device.metaContexts?.() ?? [])];
}

/**
 * The names LIST_META_CONTEXT answers for these queries. No query: every
 * context offered. A query ending in ':' (a namespace such as `base:` or
 * `qemu:`, or QEMU's `qemu:dirty-bitmap:`) lists every offered name it
 * prefixes. Any other query is listed when the device accepts it exactly (a
 * bitmap by snapshot id, for instance), under the name the client used.
 */
export function listContexts(device: BlockDevice, queries: readonly string[]): string[] {
  const offered = offeredContexts(device);
  if (queries.length === 0) return offered;
  // Sets, not arrays: a 64 KiB option can carry 16,384 queries against thousands of snapshots.
  const out = new Set<string>();
  const add = (n: string) => out.add(n);
  for (const q of new Set(queries)) {
    if (q.endsWith(':')) {
      for (const n of offered) if (n.startsWith(q)) add(n);
    } else if (q === BASE_ALLOCATION || device.metaContext?.(q)) add(q);
  }
  return [...out];
}

/**
 * SET_META_CONTEXT: the exact names the device accepts, in the client's
 * order, each once, with distinct nonzero ids (base:allocation keeps its
 * historic id 1). Namespace queries select nothing: SET takes only names.
 */
export function selectContexts(device: BlockDevice, queries: readonly string[]): SelectedContext[] {
  const out: SelectedContext[] = [];
  let next = BASE_ALLOCATION_ID + 1;
  for (const q of new Set(queries)) {
    if (q === BASE_ALLOCATION) out.push({ id: BASE_ALLOCATION_ID, name: q, context: baseAllocation(device) });
    else {
      const context = device.metaContext?.(q);
      if (context) out.push({ id: next++, name: q, context });
    }
  }
  return out;
}

/**
 * The contexts SET selected, bound to the device GO or EXPORT_NAME opened,
 * with the ids SET handed out. The export is opened again at GO, so a name
 * such as `snapshot/latest` is resolved once more; a context it no longer
 * offers (its snapshot deleted meanwhile) is dropped.
 */
export function rebindContexts(device: BlockDevice, selected: readonly { id: number; name: string }[]): SelectedContext[] {
  const out: SelectedContext[] = [];
  for (const s of selected) {
    const context = s.name === BASE_ALLOCATION ? baseAllocation(device) : device.metaContext?.(s.name);
    if (context) out.push({ id: s.id, name: s.name, context });
  }
  return out;
}
