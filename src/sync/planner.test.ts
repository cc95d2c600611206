import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Manifest, Namespace, SnapshotRef } from '../core/index.ts';
import { parseGroupFilter, parseIncludeFilter } from './filters.ts';
import { planSync, type SyncPolicy } from './planner.ts';
import { groupKey, type SideListing, type SideSnapshot } from './types.ts';

const day = (iso: string): number => Date.parse(`${iso}T03:00:00Z`) / 1000;

function snap(ns: string, group: string, iso: string, extra: Partial<Manifest['unprotected']> = {}, crypt: 'none' | 'encrypt' = 'none', prot = false): SideSnapshot {
  const [type, id] = group.split('/') as ['host', string];
  const ref: SnapshotRef = { ns: ns ? ns.split('/') : [], type, id, time: day(iso) };
  const manifest: Manifest = { format: 1, backupType: type, backupId: id, backupTime: ref.time, files: [{ filename: 'root.tar.didx', size: 1, csum: `${iso}${group}`, cryptMode: crypt }], ...(crypt === 'encrypt' ? { keyFingerprint: 'k' } : {}), unprotected: { ...extra } };
  return { ref, manifest, protected: prot };
}

function listing(snaps: SideSnapshot[], namespaces: string[] = [''], owner?: string): SideListing {
  const owners = new Map<string, string>();
  if (owner) for (const s of snaps) owners.set(groupKey(s.ref), owner);
  return { namespaces: namespaces.map((n): Namespace => (n ? n.split('/') : [])), snapshots: snaps, owners };
}

const policy = (p: Partial<SyncPolicy> = {}): SyncPolicy => ({ sourceNs: [], targetNs: [], groupFilters: [], includes: [], verifiedOnly: false, encryptedOnly: false, removeVanished: false, resyncCorrupt: false, owner: 'root@pam', encrypt: false, ...p });
const copied = (plan: ReturnType<typeof planSync>): string[] => plan.groups.flatMap((g) => g.copy.map((c) => `${g.target.ns.join('/')}:${c.snapshot.ref.type}/${c.snapshot.ref.id}@${new Date(c.snapshot.ref.time * 1000).toISOString().slice(0, 10)}`));

test('set difference: every missing snapshot is copied, older ones included, oldest first', () => {
  const src = listing([snap('', 'host/a', '2026-11-01'), snap('', 'host/a', '2026-11-02'), snap('', 'host/a', '2026-11-03')]);
  const dst = listing([snap('', 'host/a', '2026-11-03')]);
  assert.deepEqual(copied(planSync(src, dst, policy())), [':host/a@2026-11-01', ':host/a@2026-11-02']);
});

test('keep-weekly=* copies the newest snapshot of each ISO week; filters are OR-combined', () => {
  const days = ['2026-11-02', '2026-11-04', '2026-11-08', '2026-11-10', '2026-11-15'];
  const src = listing([...days.map((d) => snap('', 'host/a', d)), snap('', 'vm/12345', '2026-11-03'), snap('', 'ct/7', '2026-11-03'), snap('', 'ct/7', '2026-11-04')]);
  const plan = planSync(src, listing([]), policy({ includes: [parseIncludeFilter('keep-weekly=*'), parseIncludeFilter('backup-id:vm/12345')] }));
  assert.deepEqual(copied(plan), [':ct/7@2026-11-04', ':host/a@2026-11-08', ':host/a@2026-11-15', ':vm/12345@2026-11-03']);
  assert.equal(plan.groups.flatMap((g) => g.skip).filter((s) => s.reason === 'filtered').length, 3 + 1);
});

test('group filters: includes then excludes; regex is unanchored against type/id', () => {
  const src = listing(['host/web1', 'host/web2', 'vm/100', 'ct/200'].map((g) => snap('', g, '2026-11-01')));
  const plan = planSync(src, listing([]), policy({ groupFilters: ['regex:web', 'type:vm', 'exclude:group:host/web2'].map(parseGroupFilter) }));
  assert.deepEqual(copied(plan), [':host/web1@2026-11-01', ':vm/100@2026-11-01']);
  assert.throws(() => parseGroupFilter('regex:('), /Invalid group filter "regex:\(": not a regular expression/);
  assert.throws(() => parseGroupFilter('kind:vm'), /expected \[include:\|exclude:\]type:T/);
  assert.throws(() => parseIncludeFilter('keep-fortnightly=*'), /Invalid include filter/);
});

test('namespace mapping: the tree under the source root lands under the target root, nothing else', () => {
  const src = listing([snap('location_a/department_x/team_one', 'host/t1', '2026-11-01'), snap('location_a/department_x/team_two', 'host/t2', '2026-11-01')], ['location_a/department_x', 'location_a/department_x/team_one', 'location_a/department_x/team_two']);
  const plan = planSync(src, listing([]), policy({ sourceNs: ['location_a', 'department_x'], targetNs: ['location_a_dep_x'] }));
  assert.deepEqual(plan.createNamespaces.map((n) => n.join('/')), ['location_a_dep_x', 'location_a_dep_x/team_one', 'location_a_dep_x/team_two']);
  assert.deepEqual(copied(plan), ['location_a_dep_x/team_one:host/t1@2026-11-01', 'location_a_dep_x/team_two:host/t2@2026-11-01']);
  assert.throws(() => planSync(src, listing([]), policy({ sourceNs: ['location_a'], targetNs: ['a', 'b', 'c', 'd', 'e', 'f'], maxDepth: 2 })), /exceeds the maximum depth of 7/);
});

test('transfer-last, verified-only, encrypted-only and partly encrypted snapshots are skipped with a reason', () => {
  const src = listing([snap('', 'host/a', '2026-11-01'), snap('', 'host/a', '2026-11-02', { verifyState: { state: 'ok', time: 1 } }), snap('', 'host/a', '2026-11-03', {}, 'encrypt')]);
  const reasons = (p: Partial<SyncPolicy>): string[] => planSync(src, listing([]), policy(p)).groups.flatMap((g) => g.skip.map((s) => s.reason));
  assert.deepEqual(reasons({ transferLast: 1 }), ['transfer-last', 'transfer-last']);
  assert.deepEqual(reasons({ verifiedOnly: true }), ['not verified', 'not verified']);
  assert.deepEqual(reasons({ encryptedOnly: true }), ['not encrypted', 'not encrypted']);
});

test('remove-vanished removes within scope and ownership, never protected snapshots; owner mismatch skips a group', () => {
  const src = listing([snap('', 'host/a', '2026-11-02')]);
  const dst = listing([snap('', 'host/a', '2026-11-01'), snap('', 'host/a', '2026-11-02'), snap('', 'host/a', '2026-10-01', {}, 'none', true), snap('', 'host/gone', '2026-11-01'), snap('', 'vm/other', '2026-11-01')], [''], 'root@pam');
  const plan = planSync(src, dst, policy({ removeVanished: true, groupFilters: [parseGroupFilter('type:host')] }));
  const removed = plan.groups.flatMap((g) => g.remove.map((r) => `${r.type}/${r.id}@${r.time}`));
  assert.deepEqual(removed.sort(), [`host/a@${day('2026-11-01')}`, `host/gone@${day('2026-11-01')}`].sort());
  assert.ok(plan.groups.some((g) => g.skip.some((s) => s.reason === 'protected')));
  assert.ok(plan.groups.find((g) => g.target.id === 'gone')?.removeGroup);
  const foreign = planSync(src, listing([], [''], undefined), policy());
  assert.equal(foreign.groups[0]?.skipped, undefined);
  const owned = { ...listing([snap('', 'host/a', '2026-11-02')]), owners: new Map([[groupKey({ ns: [], type: 'host', id: 'a' }), 'someone@ibs']]) };
  assert.match(String(planSync(listing([snap('', 'host/a', '2026-11-03')]), owned, policy()).groups[0]?.skipped), /owned by "someone@ibs"/);
});

test('resync-corrupt copies again a copy whose verification failed or whose content differs', () => {
  const src = listing([snap('', 'host/a', '2026-11-01')]);
  const bad = listing([snap('', 'host/a', '2026-11-01', { verifyState: { state: 'failed', time: 1 } })]);
  assert.deepEqual(planSync(src, bad, policy()).groups[0]?.copy, []);
  assert.equal(planSync(src, bad, policy({ resyncCorrupt: true })).groups[0]?.copy[0]?.resync, 'failed verification');
});

test('the newest common snapshot is synced again when it changed on the source (a log added); older differing ones are left to repair', () => {
  const withLog = (x: SideSnapshot): SideSnapshot => ({ ...x, manifest: { ...x.manifest, files: [...x.manifest.files, { filename: 'client.log.blob', size: 5, csum: 'log', cryptMode: 'none' }] } });
  const src = listing([withLog(snap('', 'host/a', '2026-11-01')), withLog(snap('', 'host/a', '2026-11-02'))]);
  const dst = listing([snap('', 'host/a', '2026-11-01'), snap('', 'host/a', '2026-11-02')]);
  const plan = planSync(src, dst, policy());
  assert.deepEqual(plan.groups[0]?.copy.map((c) => [new Date(c.snapshot.ref.time * 1000).toISOString().slice(0, 10), c.resync]), [['2026-11-02', 'changed on the source since it was copied']]);
  assert.equal(plan.differs.length, 2, 'both reported by diff');
  // A protected copy is left alone, with the reason.
  const kept = planSync(src, listing([snap('', 'host/a', '2026-11-01'), snap('', 'host/a', '2026-11-02', {}, 'none', true)]), policy());
  assert.deepEqual(kept.groups[0]?.copy, []);
  assert.ok(kept.groups[0]?.skip.some((x) => x.reason === 'differs, but the copy is protected'));
  // Unchanged: nothing to do.
  assert.deepEqual(copied(planSync(src, src, policy())), []);
});

test('a source snapshot that does not read is reported, never copied, and never taken for vanished', () => {
  const a2 = snap('', 'host/a', '2026-11-02');
  const b1 = snap('', 'host/b', '2026-11-01');
  const src: SideListing = { ...listing([snap('', 'host/a', '2026-11-01'), snap('', 'host/a', '2026-11-03')]), damaged: [{ ref: a2.ref, reason: 'a2 does not read' }, { ref: b1.ref, reason: 'b1 does not read' }] };
  const dst = listing([a2, b1]);
  const plan = planSync(src, dst, policy({ removeVanished: true }));
  assert.deepEqual(copied(plan), [':host/a@2026-11-01', ':host/a@2026-11-03']);
  assert.deepEqual(plan.groups.flatMap((g) => g.remove), [], 'their copies stay, in a group with other snapshots and in one with none');
  assert.ok(plan.groups.every((g) => !g.removeGroup));
  assert.deepEqual(plan.groups.map((g) => g.skip.map((s) => [s.reason, s.detail])), [[['unreadable on the source', 'a2 does not read']], [['unreadable on the source', 'b1 does not read']]]);
  // Excluded groups are not reported.
  assert.deepEqual(planSync(src, dst, policy({ groupFilters: [parseGroupFilter('group:host/a')] })).groups.map((g) => g.skip.length), [1]);
});

test('a copy that does not read on the target fails its group, is copied again with --resync-corrupt or by repair, and is removed when vanished', () => {
  const a1 = snap('', 'host/a', '2026-11-01');
  const a2 = snap('', 'host/a', '2026-11-02');
  const a3 = snap('', 'host/a', '2026-11-03');
  const c1 = snap('', 'host/c', '2026-11-01');
  const src = listing([a1, a2, a3]);
  const dst: SideListing = { ...listing([a1]), damaged: [{ ref: a2.ref, reason: 'a2 copy does not read', protected: false }, { ref: c1.ref, reason: 'c1 copy does not read' }] };
  // Without: the others are copied, the unreadable copy is reported with what to do (the engine fails the group).
  const plain = planSync(src, dst, policy());
  assert.deepEqual(copied(plain), [':host/a@2026-11-03'], 'never copied as if missing');
  const skip = plain.groups[0]?.skip.find((s) => s.reason === 'unreadable on the target');
  assert.equal(skip?.snapshot, 'host/a/2026-11-02T03:00:00Z');
  assert.match(skip?.detail ?? '', /^a2 copy does not read; the job with --resync-corrupt, or "sync repair", copies it again/);
  // A group only the target has, of unreadable copies alone: left alone without remove-vanished.
  assert.equal(plain.groups.length, 1);
  // With --resync-corrupt, or named by repair: copied again (the engine forgets the copy first).
  for (const p of [policy({ resyncCorrupt: true }), policy({ damaged: new Set(['host/a/2026-11-02T03:00:00Z']) })]) {
    const plan = planSync(src, dst, p);
    assert.deepEqual(plan.groups[0]?.copy.map((c) => [formatTime(c.snapshot.ref.time), c.resync]), [['2026-11-02', 'does not read'], ['2026-11-03', undefined]]);
    assert.ok(!plan.groups[0]?.skip.some((s) => s.reason === 'unreadable on the target'));
  }
  // A protected unreadable copy cannot be replaced: reported, saying so.
  const prot: SideListing = { ...dst, damaged: [{ ref: a2.ref, reason: 'a2 copy does not read', protected: true }] };
  assert.match(planSync(src, prot, policy({ resyncCorrupt: true })).groups[0]?.skip.find((s) => s.reason === 'unreadable on the target')?.detail ?? '', /protected there: "snapshot unprotect"/);
  // Vanished from the source: removed with remove-vanished, in a group with others and in one of its own.
  const gone = planSync(listing([a1, a3]), dst, policy({ removeVanished: true }));
  assert.deepEqual(gone.groups.map((g) => [g.target.id, g.remove.map((r) => formatTime(r.time)), g.removeGroup]), [['a', ['2026-11-02'], false], ['c', ['2026-11-01'], true]]);
  // Protected ones stay, as readable protected copies do.
  const keep = planSync(listing([a1, a3]), prot, policy({ removeVanished: true }));
  assert.deepEqual(keep.groups[0]?.remove, []);
  assert.ok(keep.groups[0]?.skip.some((s) => s.reason === 'protected' && s.snapshot === 'host/a/2026-11-02T03:00:00Z'));
});

const formatTime = (t: number): string => new Date(t * 1000).toISOString().slice(0, 10);
