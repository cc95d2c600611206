import { IbsError, computePrune, formatSnapshot, type GroupRef, type KeepOptions, type PruneMark } from '../core/index.ts';
import type { OpOptions } from '../storage/index.ts';
import type { Datastore } from './datastore.ts';

export interface PruneEntry {
  snapshot: string;
  time: number;
  mark: PruneMark;
  /** Set when removal was attempted and refused (protected meanwhile, base of a running backup). */
  error?: string;
}

/** Applies retention to one group; with `dryRun` only reports what it would do. */
export async function pruneGroup(ds: Datastore, group: GroupRef, keep: KeepOptions, options: OpOptions & { dryRun?: boolean } = {}): Promise<PruneEntry[]> {
  if (!options.dryRun) await ds.assertWritable('prune', options);
  const snaps = await ds.listSnapshots({ ns: group.ns, group }, options);
  const marks = computePrune(snaps.map((s) => ({ time: s.ref.time, protected: s.protected })), keep);
  const out: PruneEntry[] = snaps.map((s, i) => ({ snapshot: formatSnapshot(s.ref), time: s.ref.time, mark: marks[i] as PruneMark }));
  if (options.dryRun) return out;
  for (const [i, s] of snaps.entries()) {
    if ((marks[i] as PruneMark).action !== 'remove') continue;
    try {
      await ds.forgetSnapshot(s.ref, options);
    } catch (error) {
      if (!(error instanceof IbsError) || error.code !== 'BUSY') throw error;
      (out[i] as PruneEntry).error = error.message;
    }
  }
  return out;
}
