import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runConformanceSuite } from '../conformance.ts';
import { LocalBackend } from './local-backend.ts';

runConformanceSuite('local', async () => {
  const root = await mkdtemp(join(tmpdir(), 'ibs-local-'));
  let noSpace = false;
  const backend = new LocalBackend({
    root,
    injectWriteError: () => (noSpace ? Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }) : undefined),
  });
  return { backend, setNoSpace: (on) => (noSpace = on), cleanup: () => rm(root, { recursive: true, force: true }) };
});

test('cleanTemporary() removes old leftovers of interrupted writes, and listing never shows them', async () => {
  const root = await mkdtemp(join(tmpdir(), 'ibs-local-tmp-'));
  try {
    const backend = new LocalBackend({ root });
    await backend.write('a/obj', Buffer.from('x'));
    await writeFile(join(root, 'a', 'obj2.ibs-tmp-abcdef'), 'partial');
    await writeFile(join(root, 'a', 'obj3.ibs-tmp-123456'), 'partial');
    const old = Date.now() / 1000 - 7200;
    await utimes(join(root, 'a', 'obj2.ibs-tmp-abcdef'), old, old);
    const listed: string[] = [];
    for await (const e of backend.list('')) listed.push(e.key);
    assert.deepEqual(listed, ['a/obj']);
    assert.equal(await backend.cleanTemporary(3_600_000), 1);
    assert.deepEqual((await readdir(join(root, 'a'))).sort(), ['obj', 'obj3.ibs-tmp-123456']);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
