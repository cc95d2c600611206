import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { computePrune, isoWeek, retentionWindows, type RetentionItem } from './retention.ts';

process.env.TZ = 'UTC';
const at = (iso: string): number => Date.parse(iso) / 1000;

test('keep-last keeps the N newest', () => {
  const items = [1, 2, 3, 4, 5].map((d) => ({ time: at(`2026-01-0${d}T12:00:00Z`), protected: false }));
  const marks = computePrune(items, { 'keep-last': 2 });
  assert.deepEqual(marks.map((m) => m.action), ['remove', 'remove', 'remove', 'keep', 'keep']);
});

test('keep-daily keeps the newest of each day; days covered by keep-last do not count (PBS semantics)', () => {
  const items = [
    at('2026-01-01T08:00:00Z'),
    at('2026-01-01T20:00:00Z'),
    at('2026-01-02T08:00:00Z'),
    at('2026-01-02T20:00:00Z'),
    at('2026-01-03T08:00:00Z'),
    at('2026-01-03T20:00:00Z'),
  ].map((time) => ({ time, protected: false }));
  const marks = computePrune(items, { 'keep-last': 1, 'keep-daily': 2 });
  // keep-last keeps 01-03 20:00; day 01-03 is covered, so keep-daily keeps 01-02 20:00 and 01-01 20:00.
  assert.deepEqual(marks.map((m) => m.action), ['remove', 'keep', 'remove', 'keep', 'remove', 'keep']);
  assert.deepEqual(marks.map((m) => (m.action === 'keep' ? m.rule : '')), ['', 'keep-daily', '', 'keep-daily', '', 'keep-last']);
});

test('protected snapshots are never removed and do not count', () => {
  const items = [
    { time: at('2026-01-01T00:00:00Z'), protected: false },
    { time: at('2026-01-02T00:00:00Z'), protected: false },
    { time: at('2026-01-03T00:00:00Z'), protected: true },
  ];
  const marks = computePrune(items, { 'keep-last': 1 });
  assert.deepEqual(marks.map((m) => m.action), ['remove', 'keep', 'protected']);
});

test('ISO weeks: 2026-01-01 (Thursday) is week 1 of 2026, 2027-01-01 (Friday) is week 53 of 2026', () => {
  assert.deepEqual(isoWeek(new Date('2026-01-01T12:00:00Z')), { year: 2026, week: 1 });
  assert.deepEqual(isoWeek(new Date('2027-01-01T12:00:00Z')), { year: 2026, week: 53 });
  assert.deepEqual(isoWeek(new Date('2024-12-30T12:00:00Z')), { year: 2025, week: 1 });
});

const items = fc.uniqueArray(fc.integer({ min: 1_600_000_000, max: 1_800_000_000 }), { maxLength: 60 }).chain((times) =>
  fc.tuple(fc.constant(times), fc.array(fc.boolean(), { minLength: times.length, maxLength: times.length })).map(([t, p]) => t.map((time, i) => ({ time, protected: p[i] ?? false }) as RetentionItem)),
);
const keep = fc.record({ 'keep-last': fc.nat(5), 'keep-hourly': fc.nat(5), 'keep-daily': fc.nat(5), 'keep-weekly': fc.nat(5), 'keep-monthly': fc.nat(5), 'keep-yearly': fc.nat(5) }, { requiredKeys: [] });

test('property: protected never removed; each rule keeps at most N; the newest unprotected is kept', () => {
  fc.assert(
    fc.property(items, keep, (list, options) => {
      const marks = computePrune(list, options);
      list.forEach((item, i) => {
        if (item.protected) assert.equal(marks[i]?.action, 'protected');
      });
      for (const [rule, n] of Object.entries(options)) {
        const kept = marks.filter((m) => m.action === 'keep' && m.rule === rule).length;
        assert.ok(kept <= (n as number), `${rule} kept ${kept} > ${n}`);
      }
      const anyRule = Object.values(options).some((n) => (n as number) > 0);
      const unprotected = list.filter((i) => !i.protected);
      if (unprotected.length > 0) {
        const newest = list.indexOf(unprotected.reduce((a, b) => (a.time > b.time ? a : b)));
        assert.equal(marks[newest]?.action, 'keep', `newest must be kept (any rule: ${anyRule})`);
      }
    }),
  );
});

test('property: retentionWindows marks exactly the newest snapshot of each period', () => {
  fc.assert(
    fc.property(items, (list) => {
      const windows = retentionWindows(list);
      const weekly = list.filter((_, i) => windows[i]?.has('keep-weekly'));
      const weeks = new Set(list.map((i) => JSON.stringify(isoWeek(new Date(i.time * 1000)))));
      assert.equal(weekly.length, weeks.size);
      assert.ok(list.every((_, i) => windows[i]?.has('keep-last')));
    }),
  );
});
