import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IbsError } from '../core/index.ts';
import { SessionRegistry } from './session-registry.ts';

test('a session serves only its owner, and one left idle is ended as expired', async () => {
  const ended: Array<[string, boolean]> = [];
  const registry = new SessionRegistry<string>('test', { idleMs: 40, onEnd: async (v, expired) => void ended.push([v, expired]) });
  const a = registry.open('alice@ibs', 'A');
  const b = registry.open('bob@ibs', 'B');
  assert.equal(await registry.use(a, 'alice@ibs', async (v) => v), 'A');
  await assert.rejects(registry.use(a, 'bob@ibs', async () => {}), (e) => e instanceof IbsError && e.code === 'PERMISSION_DENIED');
  await registry.end(b);
  assert.deepEqual(ended, [['B', false]]);
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(ended, [['B', false], ['A', true]]);
  await assert.rejects(registry.use(a, 'alice@ibs', async () => {}), (e) => e instanceof IbsError && e.code === 'NOT_FOUND');
  await registry.close();
});
