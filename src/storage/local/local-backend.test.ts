import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runConformanceSuite } from '../conformance.ts';
import { LocalBackend } from './local-backend.ts';
import { isStorageError } from '../backend.ts';

runConformanceSuite('local', async () => {
  const root = await mkdtemp(join(tmpdir(), 'ibs-local-'));
  let noSpace = false;
  const backend = new LocalBackend({
    root,
    injectWriteError: () => (noSpace ? Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }) : undefined),
  });
  return { backend, setNoSpace: (on) => (noSpace = on), cleanup: () => rm(root, { recursive: true, force: true }) };
});

/** Why a small file system cannot be mounted here (not root, or no right to mount), or false when it can. */
function cannotMount(): string | false {
  if (process.getuid?.() !== 0) return 'mounting a small file system needs root';
  const probe = mkdtempSync(join(tmpdir(), 'ibs-mount-probe-'));
  const r = spawnSync('sh', ['-c', `mount -t tmpfs -o size=1m tmpfs '${probe}' && umount '${probe}'`], { encoding: 'utf8' });
  rmSync(probe, { recursive: true, force: true });
  return r.status === 0 ? false : `cannot mount a tmpfs here: ${r.stderr.trim()}`;
}
const mountRefused = cannotMount();

// Without the test hook, whole objects are written with direct I/O: the same contract, on a small tmpfs
// (which takes O_DIRECT) that a file of zeros fills for real in the no-space case.
runConformanceSuite(
  'local, direct I/O',
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ibs-local-direct-'));
    const mounted = !mountRefused && spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', dir]).status === 0;
    const filler = join(dir, 'filler');
    return {
      backend: new LocalBackend({ root: join(dir, 'root') }),
      ...(mounted ? { setNoSpace: (on: boolean) => void (on ? spawnSync('sh', ['-c', `head -c 64M /dev/zero > '${filler}'`]) : rmSync(filler, { force: true })) } : {}),
      cleanup: async () => {
        if (mounted) spawnSync('umount', [dir]);
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
  mountRefused ? { 'no-space': `filling a real disk: ${mountRefused}` } : {},
);

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

test('thread store: stores a new object durably as write would, touches an existing one, creates missing folders, and leaves nothing on failure', async () => {
  const { putSync } = (await import('./thread-store.ts')) as typeof import('./thread-store.ts');
  const root = await mkdtemp(join(tmpdir(), 'ibs-local-thread-'));
  try {
    const backend = new LocalBackend({ root });
    const store = backend.threadStore;
    assert.ok(store, 'a local backend offers a thread store');
    assert.equal(JSON.parse(store.location).root, root, 'its location names the root');
    assert.equal((await import(store.module)).putSync, putSync, 'its module is this one');
    assert.equal(new LocalBackend({ root, injectWriteError: () => undefined }).threadStore, undefined, 'not with a test hook a thread cannot call');

    const data = Buffer.from('chunk bytes '.repeat(1000));
    assert.deepEqual(putSync(store.location, 'deep/er/obj', data, { readBack: true }), { existed: false, same: true });
    assert.ok((await backend.read('deep/er/obj')).equals(data));
    assert.deepEqual(putSync(store.location, 'deep/er/obj2', data, { readBack: false }), { existed: false });

    const old = Date.now() / 1000 - 7200;
    await utimes(join(root, 'deep', 'er', 'obj'), old, old);
    assert.deepEqual(putSync(store.location, 'deep/er/obj', Buffer.from('other'), { readBack: true }), { existed: true });
    assert.ok((await backend.read('deep/er/obj')).equals(data), 'an existing object is not replaced');
    assert.ok(((await backend.stat('deep/er/obj'))?.mtimeMs ?? 0) > Date.now() - 60_000, 'but touched');

    // A folder in the way is a file: a storage error, and no temporary file left.
    await backend.write('file', Buffer.from('x'));
    assert.throws(() => putSync(store.location, 'file/obj', data, { readBack: true }), (e: unknown) => isStorageError(e));
    assert.throws(() => putSync(store.location, '../escape', data, { readBack: true }), RangeError);
    const names = (await readdir(root, { recursive: true })).map(String);
    assert.deepEqual(names.filter((n) => n.includes('.ibs-tmp-')), []);
    assert.deepEqual(names.sort(), ['deep', 'deep/er', 'deep/er/obj', 'deep/er/obj2', 'file']);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('a root that is no longer the directory it was (an unmounted disk, a removed datastore) gets no new folders, from either path', async () => {
  const { putSync } = (await import('./thread-store.ts')) as typeof import('./thread-store.ts');
  const parent = await mkdtemp(join(tmpdir(), 'ibs-local-root-'));
  const root = join(parent, 'store');
  try {
    await mkdir(root);
    const backend = new LocalBackend({ root });
    const location = backend.threadStore?.location as string;
    await backend.write('a/b/one', Buffer.from('1'));
    // What an unmount leaves: another, empty directory at the same path.
    await rename(root, join(parent, 'gone'));
    await mkdir(root);
    const refused = (e: unknown): boolean => isStorageError(e, 'not-found') && /the storage root \S+ is no longer the directory it was \(its file system unmounted, or it was removed and made again\): nothing is written there/.test((e as Error).message);
    await assert.rejects(backend.write('a/b/two', Buffer.from('2')), refused);
    assert.throws(() => putSync(location, 'c/d/three', Buffer.from('3'), { readBack: false }), refused);
    assert.deepEqual(await readdir(root), [], 'nothing made in the directory that took its place');
    // And when the path is gone altogether.
    await rm(root, { recursive: true });
    await assert.rejects(backend.write('a/b/two', Buffer.from('2')), (e: unknown) => isStorageError(e, 'not-found') && /is gone/.test((e as Error).message));
    await assert.rejects(stat(root), { code: 'ENOENT' });
  } finally {
    await rm(parent, { recursive: true, force: true });
  }
});
