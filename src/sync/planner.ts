import { IbsError, MAX_NAMESPACE_DEPTH, formatNamespace, formatSnapshot, type GroupRef, type Namespace, type SnapshotRef } from '../core/index.ts';
import { describeGroup, groupPasses, includedSnapshots, type GroupFilter, type IncludeFilter } from './filters.ts';
import { groupKey, type SideListing, type SideSnapshot } from './types.ts';

export interface SyncPolicy {
  /** Namespace on the source whose tree is copied, and where it lands on the target. */
  sourceNs: Namespace;
  targetNs: Namespace;
  /** Levels below the namespace roots to include (undefined: all, 0: the root only). */
  maxDepth?: number | undefined;
  groupFilters: readonly GroupFilter[];
  includes: readonly IncludeFilter[];
  transferLast?: number | undefined;
  verifiedOnly: boolean;
  encryptedOnly: boolean;
  removeVanished: boolean;
  resyncCorrupt: boolean;
  /** Owner of target groups: new ones get it; existing ones owned by someone else are skipped. */
  owner: string;
  /** Copies found damaged (by `sync repair`, formatSnapshot of the target ref): synced again like failed ones. */
  damaged?: ReadonlySet<string> | undefined;
  /** Encrypt unencrypted snapshots on the way (push with --encrypt-on-push); partly encrypted ones are skipped. */
  encrypt: boolean;
}

export type SkipReason = 'filtered' | 'already present' | 'transfer-last' | 'not verified' | 'not encrypted' | 'partly encrypted' | 'protected' | 'differs, but the copy is protected' | 'unreadable on the source' | 'unreadable on the target';

export interface GroupPlan {
  source: GroupRef;
  target: GroupRef;
  /** Snapshots to copy, oldest first; `resync` ones replace a copy whose verification failed or whose content differs. */
  copy: Array<{ snapshot: SideSnapshot; resync?: 'failed verification' | 'content differs' | 'changed on the source since it was copied' | 'does not read' | undefined }>;
  /** `detail`: for 'unreadable on the source' or 'on the target', why (such a snapshot fails its group once the rest is copied). */
  skip: Array<{ snapshot: string; reason: SkipReason; detail?: string }>;
  /** Target snapshots the source no longer has (remove-vanished). */
  remove: SnapshotRef[];
  /** The group would be empty after removals and is removed. */
  removeGroup: boolean;
  /** Newest snapshot both sides have: notes to bring over when they changed. */
  refreshNotes?: { ref: SnapshotRef; notes: string | undefined } | undefined;
  /** Set when the whole group is skipped (owned by someone else). */
  skipped?: string | undefined;
}

export interface SyncPlan {
  createNamespaces: Namespace[];
  groups: GroupPlan[];
  /** Target namespaces the source no longer has, deepest first (remove-vanished, only when empty). */
  removeNamespaces: Namespace[];
  /** Content that differs although both sides have the snapshot (reported by diff, fixed by repair). */
  differs: Array<{ source: SnapshotRef; target: SnapshotRef }>;
}

function byGroup(snapshots: readonly SideSnapshot[]): Map<string, SideSnapshot[]> {
  const groups = new Map<string, SideSnapshot[]>();
  for (const s of snapshots) {
    const key = groupKey(s.ref);
    const list = groups.get(key);
    if (list) list.push(s);
    else groups.set(key, [s]);
  }
  return groups;
}

/** Source namespace -> target namespace under the job's roots. */
export function mapNamespace(ns: Namespace, from: Namespace, to: Namespace): Namespace {
  return [...to, ...ns.slice(from.length)];
}

/** Fails before anything is copied when the mapped tree would be deeper than namespaces may be. */
export function checkDepth(policy: Pick<SyncPolicy, 'sourceNs' | 'targetNs' | 'maxDepth'>, sourceNamespaces: readonly Namespace[] = []): void {
  const below = policy.maxDepth ?? Math.max(0, ...sourceNamespaces.map((n) => n.length - policy.sourceNs.length));
  if (policy.targetNs.length + below > MAX_NAMESPACE_DEPTH) {
    throw new IbsError(
      'INVALID_ARGUMENT',
      `Namespace mapping too deep: target namespace "${formatNamespace(policy.targetNs)}" (depth ${policy.targetNs.length}) plus ${below} level(s) below "${formatNamespace(policy.sourceNs)}" exceeds the maximum depth of ${MAX_NAMESPACE_DEPTH}; lower --max-depth or choose a shallower --ns`,
    );
  }
}

function sameFiles(a: SideSnapshot, b: SideSnapshot): boolean {
  const key = (s: SideSnapshot): string =>
    s.manifest.files
      .map((f) => `${f.filename}:${f.csum}`)
      .sort()
      .join(',');
  return key(a) === key(b);
}

/**
 * Decides what a sync does, from the two listings and the policy; pure. Copies the set difference (every
 * source snapshot that passes the filters and is missing on the target, older ones included), never by
 * newest time; says why anything is skipped.
 */
export function planSync(source: SideListing, target: SideListing, policy: SyncPolicy): SyncPlan {
  checkDepth(policy, source.namespaces);
  const targetNamespaces = new Set(target.namespaces.map(formatNamespace));
  const mappedNamespaces = new Set<string>();
  const createNamespaces: Namespace[] = [];
  for (const ns of [...source.namespaces].sort((a, b) => a.length - b.length)) {
    const mapped = mapNamespace(ns, policy.sourceNs, policy.targetNs);
    mappedNamespaces.add(formatNamespace(mapped));
    if (!targetNamespaces.has(formatNamespace(mapped))) createNamespaces.push(mapped);
  }

  const bySourceGroup = byGroup(source.snapshots);
  const byTargetGroup = byGroup(target.snapshots);
  // Copies on the target that do not read: copied again from the source with --resync-corrupt (or by repair),
  // else they fail their group; removed with remove-vanished once the source no longer has them.
  const damagedTargetByGroup = new Map<string, NonNullable<SideListing['damaged']>>();
  for (const d of target.damaged ?? []) damagedTargetByGroup.set(groupKey(d.ref), [...(damagedTargetByGroup.get(groupKey(d.ref)) ?? []), d]);
  // Source snapshots that do not read: reported, and kept from looking vanished (with their group).
  const damagedByGroup = new Map<string, Array<{ ref: SnapshotRef; reason: string }>>();
  for (const d of source.damaged ?? []) damagedByGroup.set(groupKey(d.ref), [...(damagedByGroup.get(groupKey(d.ref)) ?? []), d]);

  const groups: GroupPlan[] = [];
  const differs: SyncPlan['differs'] = [];
  const seenTargetGroups = new Set<string>();
  for (const key of [...new Set([...bySourceGroup.keys(), ...damagedByGroup.keys()])].sort()) {
    const snaps = bySourceGroup.get(key) ?? [];
    const damaged = damagedByGroup.get(key) ?? [];
    const first = (snaps[0]?.ref ?? damaged[0]?.ref) as SnapshotRef;
    const sourceGroup: GroupRef = { ns: first.ns, type: first.type, id: first.id };
    if (!groupPasses(policy.groupFilters, sourceGroup)) continue;
    const targetGroup: GroupRef = { ...sourceGroup, ns: mapNamespace(sourceGroup.ns, policy.sourceNs, policy.targetNs) };
    seenTargetGroups.add(groupKey(targetGroup));
    const plan: GroupPlan = { source: sourceGroup, target: targetGroup, copy: [], skip: [], remove: [], removeGroup: false };
    groups.push(plan);
    const owner = target.owners.get(groupKey(targetGroup));
    if (owner !== undefined && owner !== policy.owner) {
      plan.skipped = `group ${describeGroup(targetGroup)} on the target is owned by "${owner}", not by "${policy.owner}"`;
      continue;
    }
    for (const d of damaged) plan.skip.push({ snapshot: formatSnapshot(d.ref), reason: 'unreadable on the source', detail: d.reason });
    const sorted = [...snaps].sort((a, b) => a.ref.time - b.ref.time);
    const onTarget = new Map((byTargetGroup.get(groupKey(targetGroup)) ?? []).map((s) => [s.ref.time, s]));
    const unreadableThere = new Map((damagedTargetByGroup.get(groupKey(targetGroup)) ?? []).map((d) => [d.ref.time, d]));
    const included = includedSnapshots(policy.includes, sorted);
    const candidates = sorted.filter((s, i) => {
      if (included[i] === undefined) plan.skip.push({ snapshot: formatSnapshot(s.ref), reason: 'filtered' });
      return included[i] !== undefined;
    });
    const last = policy.transferLast;
    const newestCommon = [...sorted].reverse().find((s) => onTarget.has(s.ref.time));
    candidates.forEach((s, i) => {
      const name = formatSnapshot(s.ref);
      const broken = unreadableThere.get(s.ref.time);
      if (broken) {
        const resync = policy.resyncCorrupt || policy.damaged?.has(formatSnapshot(broken.ref)) === true;
        if (resync && broken.protected !== true) plan.copy.push({ snapshot: s, resync: 'does not read' });
        else {
          const todo = resync ? 'it is protected there: "snapshot unprotect" it on the target first' : 'the job with --resync-corrupt, or "sync repair", copies it again from the source';
          plan.skip.push({ snapshot: name, reason: 'unreadable on the target', detail: `${broken.reason}; ${todo}` });
        }
        return;
      }
      const there = onTarget.get(s.ref.time);
      if (there) {
        const failed = there.manifest.unprotected.verifyState?.state === 'failed' || policy.damaged?.has(formatSnapshot(there.ref)) === true;
        // Copies re-encrypted (or decrypted) on the way cannot be compared file by file.
        const differ = (s.manifest.keyFingerprint ?? null) === (there.manifest.keyFingerprint ?? null) && !sameFiles(s, there);
        if (differ) differs.push({ source: s.ref, target: there.ref });
        // The newest common snapshot may have changed on the source since it was copied (a client log added
        // afterwards, say): it is brought over again. Older copies that differ are left to repair.
        const changedSinceCopy = differ && s === newestCommon;
        if ((policy.resyncCorrupt && (failed || differ)) || (changedSinceCopy && !failed)) {
          if (there.protected) plan.skip.push({ snapshot: name, reason: 'differs, but the copy is protected' });
          else plan.copy.push({ snapshot: s, resync: failed ? 'failed verification' : changedSinceCopy ? 'changed on the source since it was copied' : 'content differs' });
        } else plan.skip.push({ snapshot: name, reason: 'already present' });
        return;
      }
      if (last !== undefined && i < candidates.length - last) return plan.skip.push({ snapshot: name, reason: 'transfer-last' });
      if (policy.verifiedOnly && s.manifest.unprotected.verifyState?.state !== 'ok') return plan.skip.push({ snapshot: name, reason: 'not verified' });
      const modes = new Set(s.manifest.files.map((f) => f.cryptMode));
      if (policy.encryptedOnly && (modes.has('none') || s.manifest.keyFingerprint === undefined)) return plan.skip.push({ snapshot: name, reason: 'not encrypted' });
      if (policy.encrypt && modes.has('encrypt') && modes.has('none')) return plan.skip.push({ snapshot: name, reason: 'partly encrypted' });
      plan.copy.push({ snapshot: s });
    });
    if (newestCommon) {
      const there = onTarget.get(newestCommon.ref.time) as SideSnapshot;
      if ((there.manifest.unprotected.notes ?? '') !== (newestCommon.manifest.unprotected.notes ?? '')) plan.refreshNotes = { ref: there.ref, notes: newestCommon.manifest.unprotected.notes };
    }
    if (policy.removeVanished) {
      const sourceTimes = new Set([...sorted, ...damaged].map((s) => s.ref.time));
      for (const t of onTarget.values()) {
        if (sourceTimes.has(t.ref.time)) continue;
        if (t.protected) plan.skip.push({ snapshot: formatSnapshot(t.ref), reason: 'protected' });
        else plan.remove.push(t.ref);
      }
      for (const d of unreadableThere.values()) {
        if (sourceTimes.has(d.ref.time)) continue;
        if (d.protected === true) plan.skip.push({ snapshot: formatSnapshot(d.ref), reason: 'protected' });
        else plan.remove.push(d.ref);
      }
    }
  }

  // Groups only the target has: vanished from the source (within the job's scope and ownership).
  const removeNamespaces: Namespace[] = [];
  if (policy.removeVanished) {
    for (const key of new Set([...byTargetGroup.keys(), ...damagedTargetByGroup.keys()])) {
      if (seenTargetGroups.has(key)) continue;
      const snaps = [...(byTargetGroup.get(key) ?? []), ...(damagedTargetByGroup.get(key) ?? [])];
      const first = (snaps[0] as { ref: SnapshotRef }).ref;
      const targetGroup: GroupRef = { ns: first.ns, type: first.type, id: first.id };
      if (!groupPasses(policy.groupFilters, targetGroup)) continue;
      if ((target.owners.get(key) ?? policy.owner) !== policy.owner) continue;
      const plan: GroupPlan = { source: targetGroup, target: targetGroup, copy: [], skip: [], remove: [], removeGroup: false };
      for (const t of snaps) {
        if (t.protected === true) plan.skip.push({ snapshot: formatSnapshot(t.ref), reason: 'protected' });
        else plan.remove.push(t.ref);
      }
      plan.removeGroup = plan.skip.length === 0;
      groups.push(plan);
    }
    for (const ns of target.namespaces) {
      if (ns.length <= policy.targetNs.length) continue;
      if (!mappedNamespaces.has(formatNamespace(ns))) removeNamespaces.push(ns);
    }
    removeNamespaces.sort((a, b) => b.length - a.length);
  }
  return { createNamespaces, groups, removeNamespaces, differs };
}
