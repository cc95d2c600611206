import { IbsError, parseGroup, parseNamespace, parseSnapshot, validateKeepOptions, KEEP_RULES, type CryptKey, type KeepOptions } from '../core/index.ts';
import { collectGarbage, pruneGroup, readGcStatus, verifyDatastore, type GcResult, type PruneEntry, type VerifyResult } from '../datastore/index.ts';
import { withDatastore, type AppContext } from './context.ts';

export async function verifyStore(
  ctx: AppContext,
  input: { store: string; ns?: string; snapshot?: string; ignoreVerified?: boolean; outdatedAfterDays?: number; key?: CryptKey | undefined },
): Promise<VerifyResult> {
  const ns = parseNamespace(input.ns ?? '');
  const snapshot = input.snapshot !== undefined ? parseSnapshot(input.snapshot, ns) : undefined;
  if (input.outdatedAfterDays !== undefined && (!Number.isInteger(input.outdatedAfterDays) || input.outdatedAfterDays < 0)) {
    throw new IbsError('INVALID_ARGUMENT', `Invalid --outdated-after ${input.outdatedAfterDays}: expected a whole number of days`);
  }
  return withDatastore(ctx, input.store, async (ds) => {
    await ds.assertNamespace(ns);
    return verifyDatastore(ds, {
      ns,
      ...(snapshot ? { snapshot } : {}),
      ignoreVerified: input.ignoreVerified ?? false,
      ...(input.outdatedAfterDays !== undefined ? { outdatedAfterDays: input.outdatedAfterDays } : {}),
      key: input.key,
      signal: ctx.signal,
      onLog: (m) => ctx.reporter.info(m),
      onProgress: (e) => ctx.reporter.progress({ phase: `verify ${e.snapshot}`, done: e.chunksDone, total: e.chunksTotal, unit: 'items' }),
    });
  });
}

export async function pruneStore(ctx: AppContext, input: { store: string; ns?: string; group: string; keep: KeepOptions; dryRun?: boolean }): Promise<PruneEntry[]> {
  const ns = parseNamespace(input.ns ?? '');
  const group = parseGroup(input.group, ns);
  return withDatastore(ctx, input.store, async (ds, config) => {
    const keep = validateKeepOptions(Object.keys(input.keep).length > 0 ? input.keep : config.keep);
    if (!KEEP_RULES.some((r) => (keep[r] ?? 0) > 0)) {
      throw new IbsError('INVALID_ARGUMENT', 'No retention given: expected at least one of --keep-last/-hourly/-daily/-weekly/-monthly/-yearly (or keep-* settings on the datastore)');
    }
    await ds.assertNamespace(ns);
    return pruneGroup(ds, group, keep, { signal: ctx.signal, dryRun: input.dryRun ?? false });
  });
}

export async function gcStore(ctx: AppContext, input: { store: string; marginMinutes?: number }): Promise<GcResult> {
  if (input.marginMinutes !== undefined && !(input.marginMinutes >= 0 && input.marginMinutes <= 7 * 24 * 60)) {
    throw new IbsError('INVALID_ARGUMENT', `Invalid --margin-minutes ${input.marginMinutes}: expected 0 to 10080`);
  }
  return withDatastore(ctx, input.store, (ds) =>
    collectGarbage(ds, {
      signal: ctx.signal,
      ...(input.marginMinutes !== undefined ? { marginMs: input.marginMinutes * 60_000 } : {}),
      onLog: (m) => ctx.reporter.info(m),
      onProgress: (e) => ctx.reporter.progress({ phase: `gc ${e.phase}`, done: e.done, unit: 'items' }),
    }),
  );
}

export async function gcStatus(ctx: AppContext, store: string): Promise<GcResult | undefined> {
  return withDatastore(ctx, store, (ds) => readGcStatus(ds));
}
