/** The sync engine: one engine for pull, push and (later) offsite copies, over SyncSource / SyncTarget. */
export { groupKey, type BeginInput, type SideListing, type SideSnapshot, type SyncSide, type SyncSource, type SyncTarget, type SourceSnapshot, type TargetSnapshot } from './types.ts';
export { parseGroupFilter, parseIncludeFilter, groupPasses, includedSnapshots, describeGroup, type GroupFilter, type IncludeFilter } from './filters.ts';
export { planSync, mapNamespace, checkDepth, type SyncPolicy, type SyncPlan, type GroupPlan, type SkipReason } from './planner.ts';
export { runSync, type SyncOptions, type SyncReport } from './engine.ts';
export { DatastoreSide, listDatastore } from './datastore-side.ts';
export { RemoteSide, encodeListing, decodeListing, type ListingJson } from './remote-side.ts';
export { encryptTransform, decryptTransform, type SnapshotTransform } from './transform.ts';
