/**
 * Full disks, for real: datastores and restore targets on tmpfs file systems of a few MiB (mounted here, so
 * root only; skipped otherwise). A backup, a local sync or a push into a full datastore fails saying so and
 * leaves no partial snapshot; once there is room, the next run completes and reuses what arrived. A restore
 * into a full target fails naming the entry; an image's partial file is removed. Verification and GC (which
 * makes room) run on a full datastore, warning about the state they cannot record. Chunks that arrive go to
 * the disk directly (O_DIRECT), and the usual way on a file system that refuses that (ramfs).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LocalBackend } from '../src/storage/local/index.ts';
import { putSync } from '../src/storage/local/thread-store.ts';
import { freePort, ibs, pageCache, sh, startServer, tempDir, type RunResult, type ServerProcess } from './helpers.ts';

const NO_SPACE_EXIT = 10;
let work: { path: string; cleanup: () => Promise<void> } | undefined;
const mounts: string[] = [];
let skip: string | false = false;

/** A tmpfs of `mib` MiB at `dir`; `grow` gives it more room, keeping its files. */
async function smallDisk(dir: string, mib: number): Promise<{ grow: (to: number) => Promise<void> }> {
  await mkdir(dir, { recursive: true });
  const r = await sh(`mount -t tmpfs -o size=${mib}m tmpfs '${dir}'`);
  if (r.code !== 0) throw new Error(`mount: ${r.stderr}`);
  mounts.push(dir);
  return {
    grow: async (to: number) => {
      const g = await sh(`mount -o remount,size=${to}m '${dir}'`);
      assert.equal(g.code, 0, g.stderr);
    },
  };
}

before(async () => {
  work = await tempDir('ibs-full-');
  if (process.getuid?.() !== 0) skip = 'mounting a small file system needs root';
  else {
    const probe = join(work.path, 'probe');
    await mkdir(probe);
    const r = await sh(`mount -t tmpfs -o size=1m tmpfs '${probe}' && umount '${probe}'`);
    if (r.code !== 0) skip = `cannot mount a tmpfs here: ${r.stderr.trim()}`;
  }
  if (skip) console.log(`disk-full tests skipped: ${skip}`);
});

after(async () => {
  for (const dir of mounts.reverse()) await sh(`umount '${dir}'`);
  await work?.cleanup();
});

const ok = async (home: string, args: string[]): Promise<string> => {
  const r = await ibs(home, args);
  assert.equal(r.code, 0, `${args.join(' ')}\n${r.stderr}`);
  return r.stdout;
};
const json = async <T = unknown>(home: string, args: string[]): Promise<T> => JSON.parse(await ok(home, [...args, '--output', 'json'])) as T;
const snapshots = async (home: string, store: string): Promise<string[]> => (await json<Array<{ snapshot: string }>>(home, ['snapshot', 'list', store])).map((s) => s.snapshot).sort();

function assertNoSpace(r: RunResult, what: RegExp): void {
  assert.equal(r.code, NO_SPACE_EXIT, `expected exit ${NO_SPACE_EXIT} (NO_SPACE):\n${r.stderr}`);
  assert.match(r.stderr, what);
  assert.match(r.stderr, /no space left on device \(ENOSPC\)/);
}

/** A test's folder under the work folder: a home for its commands and a source tree of `files` x `mib` MiB of incompressible data. */
async function testFolder(name: string, files: number, mib: number): Promise<{ root: string; home: string; src: string }> {
  const root = join(work!.path, name);
  const src = join(root, 'src');
  await mkdir(src, { recursive: true });
  for (let i = 0; i < files; i++) await writeFile(join(src, `f${i}`), randomBytes(mib * 1024 * 1024));
  return { root, home: join(root, 'home'), src };
}

test('a backup or a local sync into a full datastore fails with NO_SPACE (exit 10) and leaves no snapshot; with room, the next run completes and reuses what was written; verify and GC run on a full one', { timeout: 120_000 }, async (t) => {
  if (skip) return t.skip(skip);
  const { root, home, src } = await testFolder('backup', 10, 4);
  const disk = await smallDisk(join(root, 'disk'), 24);
  await ok(home, ['datastore', 'create', 'small', join(root, 'disk', 'small')]);

  const full = await ibs(home, ['backup', 'create', '--store', 'small', '--id', 'h1', `root.tar:${src}`]);
  assertNoSpace(full, /Error: write "\.chunks\/[0-9a-f]{4}\/[0-9a-f]{64}"/);
  assert.deepEqual(await snapshots(home, 'small'), []);
  assert.equal((await ibs(home, ['verify', 'start', 'small'])).code, 0);

  await disk.grow(128);
  const out = await ok(home, ['backup', 'create', '--store', 'small', '--id', 'h1', `root.tar:${src}`]);
  const reused = /root\.tar\.payload: .* (\d+) new .* (\d+) reused/.exec(out);
  assert.ok(reused && Number(reused[2]) > 0, `chunks written before the disk filled are reused:\n${out}`);
  const [snap] = await snapshots(home, 'small');
  assert.ok(snap);
  assert.equal((await ibs(home, ['verify', 'start', 'small'])).code, 0);
  await ok(home, ['backup', 'restore', snap, 'root.tar', join(root, 'restored'), '--store', 'small']);
  for (const f of await readdir(src)) assert.ok((await readFile(join(root, 'restored', f))).equals(await readFile(join(src, f))), f);

  // Full again: verification and GC (what makes room) still do their work, and say what they cannot record.
  await sh(`head -c 256M /dev/zero > '${join(root, 'disk', 'filler')}'`);
  // Where an administrator looks first.
  assert.match((await ibs(home, ['status'])).stdout, new RegExp(`LOW SPACE: datastore small \\(${root}/disk/small\\): [\\d.]+ \\S+ free of 128\\.00 MiB`));
  const verify = await ibs(home, ['verify', 'start', 'small']);
  assert.equal(verify.code, 0, verify.stderr);
  assert.match(verify.stderr, /warning: verify host\/h1\/\S+: its state \(ok\) could not be recorded: write "host\/h1\/\S+\/index\.json": no space left on device \(ENOSPC\)/);
  const gc = await ibs(home, ['gc', 'start', 'small']);
  assert.equal(gc.code, 0, gc.stderr);
  assert.match(gc.stderr, /warning: this run's result could not be recorded \(write "\.gc-status\.json": no space left on device \(ENOSPC\)\)/);
  await rm(join(root, 'disk', 'filler'));

  // A sync between two datastores of this host, into one on a full disk: the failure names the target.
  const copyDisk = await smallDisk(join(root, 'disk2'), 16);
  await ok(home, ['datastore', 'create', 'copy', join(root, 'disk2', 'copy')]);
  await ok(home, ['sync', 'create', '--name', 'copy', '--store', 'small', '--remote-store', 'copy', '--direction', 'push']);
  const sync = await ibs(home, ['sync', 'run', '--name', 'copy']);
  assert.equal(sync.code, NO_SPACE_EXIT, sync.stderr);
  assert.match(sync.stderr, /\[host\/h1\] failed: datastore copy is full: write "\.chunks\/[0-9a-f]{4}\/[0-9a-f]{64}": no space left on device \(ENOSPC\)/);
  assert.deepEqual(await snapshots(home, 'copy'), []);
  await copyDisk.grow(128);
  await ok(home, ['sync', 'run', '--name', 'copy']);
  assert.deepEqual(await snapshots(home, 'copy'), [snap]);
  assert.equal((await ibs(home, ['verify', 'start', 'copy'])).code, 0);
});

test('a restore into a full target fails with NO_SPACE naming the entry; a partial image is removed; standard output too', { timeout: 120_000 }, async (t) => {
  if (skip) return t.skip(skip);
  const { root, home, src } = await testFolder('restore', 4, 4);
  await writeFile(join(root, 'disk.img'), randomBytes(12 * 1024 * 1024));
  await ok(home, ['datastore', 'create', 'store']);
  await ok(home, ['backup', 'create', '--store', 'store', '--id', 'h1', `root.tar:${src}`, `disk.img:${join(root, 'disk.img')}`]);
  const [snap] = await snapshots(home, 'store');
  assert.ok(snap);
  const target = join(root, 'target');
  await smallDisk(target, 6);

  const tree = await ibs(home, ['backup', 'restore', snap, 'root.tar', join(target, 'tree'), '--store', 'store']);
  assertNoSpace(tree, new RegExp(`Cannot restore "f\\d" into "${target}/tree"`));
  await sh(`rm -rf '${join(target, 'tree')}'`);

  const image = await ibs(home, ['backup', 'restore', snap, 'disk.img', join(target, 'disk.img'), '--store', 'store']);
  assertNoSpace(image, new RegExp(`Cannot write the restore target "${target}/disk.img" \\(the partial file is removed\\)`));
  assert.deepEqual(await readdir(target), []);

  const stream = await sh(`'${process.execPath}' --no-warnings '${join(import.meta.dirname, '..', 'src', 'bin', 'ironcore-backup.ts')}' backup restore '${snap}' root.tar - --store store > '${join(target, 'root.tar')}'`, { env: { IRONCORE_HOME: home } });
  assertNoSpace(stream, /Cannot write the restore to standard output/);
});

test('a push into a full remote datastore fails naming it (exit 10) and shows no partial snapshot there; with room, the next run sends only what was missing', { timeout: 180_000 }, async (t) => {
  if (skip) return t.skip(skip);
  const { root, src } = await testFolder('push', 8, 4);
  const homeA = join(root, 'a');
  const homeB = join(root, 'b');
  const disk = await smallDisk(join(root, 'disk'), 20);
  await ok(homeA, ['datastore', 'create', 'primary']);
  await ok(homeB, ['datastore', 'create', 'archive', join(root, 'disk', 'archive')]);
  await ok(homeA, ['backup', 'create', '--store', 'primary', '--id', 'h1', `root.tar:${src}`]);
  let a: ServerProcess | undefined;
  let b: ServerProcess | undefined;
  try {
    [a, b] = [await startServer(homeA, await freePort()), await startServer(homeB, await freePort())];
    await ok(homeB, ['user', 'create', 'push@ibs']);
    const token = await json<{ secret: string }>(homeB, ['token', 'create', 'push@ibs!repl']);
    for (const id of ['push@ibs', 'push@ibs!repl']) await ok(homeB, ['acl', 'update', '/datastore/archive', 'DatastoreAdmin', '--auth-id', id]);
    await writeFile(join(root, 'secret'), `${token.secret}\n`, { mode: 0o600 });
    await ok(homeA, ['remote', 'create', 'site-b', '--host', '127.0.0.1', '--port', String(b.port), '--auth-id', 'push@ibs!repl', '--secret-file', join(root, 'secret'), '--fingerprint', b.fingerprint]);
    await ok(homeA, ['sync', 'create', '--name', 'push', '--store', 'primary', '--remote', 'site-b', '--remote-store', 'archive', '--direction', 'push']);

    const full = await ibs(homeA, ['sync', 'run', '--name', 'push']);
    console.log(`push into a full datastore: exit ${full.code}\n${full.stderr}`);
    // Through the server: the task's error code gives the exit code.
    assert.equal(full.code, NO_SPACE_EXIT, full.stderr);
    assert.match(full.stderr, /\[host\/h1\] failed: remote site-b, store archive is full: write "\.chunks\/[0-9a-f]{4}\/[0-9a-f]{64}": no space left on device \(ENOSPC\)/);
    assert.deepEqual(await snapshots(homeB, 'archive'), []);
    assert.equal((await ibs(homeB, ['verify', 'start', 'archive'])).code, 0);
    const task = await json<Array<{ status: string }>>(homeA, ['task', 'list', '--type', 'syncjob']);
    assert.match(task[0]?.status ?? '', /no space left on device/, JSON.stringify(task[0]));

    await disk.grow(128);
    const done = await json<{ summary: string }>(homeA, ['sync', 'run', '--name', 'push']);
    console.log(`with room: ${done.summary}`);
    const sent = /in (\d+) chunks/.exec(done.summary);
    const stored = (await readdir(join(homeA, 'data', 'primary', '.chunks'), { recursive: true })).filter((f) => /[0-9a-f]{64}$/.test(f)).length;
    assert.ok(sent && Number(sent[1]) < stored, `the second run sends only what did not arrive (${stored} chunks in all): ${done.summary}`);
    assert.deepEqual(await snapshots(homeB, 'archive'), await snapshots(homeA, 'primary'));
    assert.equal((await ibs(homeB, ['verify', 'start', 'archive'])).code, 0);
    assert.equal((await ibs(homeA, ['sync', 'diff', '--name', 'push'])).code, 0);
  } finally {
    await Promise.all([a?.stop(), b?.stop()]);
  }
});

test('a read-only datastore: a backup is refused naming the cause, verify and restore work; a read-only restore target is named', { timeout: 120_000 }, async (t) => {
  if (skip) return t.skip(skip);
  const { root, home, src } = await testFolder('readonly', 2, 2);
  await smallDisk(join(root, 'disk'), 32);
  await ok(home, ['datastore', 'create', 'store', join(root, 'disk', 'store')]);
  await ok(home, ['backup', 'create', '--store', 'store', '--id', 'h1', `root.tar:${src}`]);
  const [snap] = await snapshots(home, 'store');
  assert.ok(snap);
  assert.equal((await sh(`mount -o remount,ro '${join(root, 'disk')}'`)).code, 0);

  // Node's recursive mkdir says "no such file or directory" for any failure of a level it makes: the cause
  // is found and named.
  const backup = await ibs(home, ['backup', 'create', '--store', 'store', '--id', 'h1', `root.tar:${src}`]);
  assert.equal(backup.code, 5, backup.stderr);
  assert.match(backup.stderr, /Error: write "\.writers\/\S+\.json": read-only file system \(EROFS\)/);
  const verify = await ibs(home, ['verify', 'start', 'store']);
  assert.equal(verify.code, 0, verify.stderr);
  assert.match(verify.stderr, /warning: verify host\/h1\/\S+: its state \(ok\) could not be recorded: .*read-only file system \(EROFS\)/);
  await ok(home, ['backup', 'restore', snap, 'root.tar', join(root, 'restored'), '--store', 'store']);
  for (const f of await readdir(src)) assert.ok((await readFile(join(root, 'restored', f))).equals(await readFile(join(src, f))), f);

  const target = join(root, 'target');
  await smallDisk(target, 1);
  assert.equal((await sh(`mount -o remount,ro '${target}'`)).code, 0);
  const restore = await ibs(home, ['backup', 'restore', snap, 'root.tar', join(target, 'a', 'b'), '--store', 'store']);
  assert.equal(restore.code, 5, restore.stderr);
  assert.match(restore.stderr, new RegExp(`Error: Cannot create the restore target "${target}/a/b": read-only file system \\(EROFS\\)`));
});

test('a server whose state directory fills up during a task keeps running: the task ends, and is recorded once there is room', { timeout: 120_000 }, async (t) => {
  if (skip) return t.skip(skip);
  const { root, home, src } = await testFolder('state', 2, 4);
  // Only the server's own files (configuration, task index and logs, job state) on the small disk.
  await smallDisk(home, 8);
  await ok(home, ['datastore', 'create', 'primary', join(root, 'primary')]);
  await ok(home, ['datastore', 'create', 'copy', join(root, 'copy')]);
  await ok(home, ['backup', 'create', '--store', 'primary', '--id', 'h1', `root.tar:${src}`]);
  await ok(home, ['sync', 'create', '--name', 'copy', '--store', 'primary', '--remote-store', 'copy', '--direction', 'push', '--bwlimit', '2']);
  const server = await startServer(home, 0, { IBS_TASK_RECORD_RETRY_MS: '500' });
  try {
    // About 4 s at 2 MiB/s; the disk fills once the task is under way.
    const run = ibs(home, ['sync', 'run', '--name', 'copy']);
    for (let i = 0; i < 100 && !(await json<Array<{ state: string }>>(home, ['task', 'list']))[0]; i++) await new Promise((r) => setTimeout(r, 50));
    await sh(`head -c 64M /dev/zero > '${join(home, 'filler')}'`);
    const result = await run;
    assert.equal(server.child.exitCode, null, `the server stopped:\n${server.output()}`);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await snapshots(home, 'copy'), await snapshots(home, 'primary'));
    const [task] = await json<Array<{ upid: string; state: string }>>(home, ['task', 'list']);
    assert.equal(task?.state, 'ok', 'answered from memory while the index is full');
    assert.deepEqual((await json<Array<{ upid: string }>>(home, ['task', 'list', '--state', 'ok'])).map((t) => t.upid), [task.upid], 'filtered on that state too');
    assert.deepEqual(await json(home, ['task', 'list', '--state', 'running']), []);

    // It did fail: the worker's log (or standard error, when the log would not take it either) says so.
    const said = async (re: RegExp): Promise<boolean> => re.test(server.output()) || re.test(await readFile(join(home, 'log', 'worker.log'), 'utf8').catch(() => ''));
    assert.ok(await said(new RegExp(`Cannot record the state ok of task ${task.upid.replace(/[$^]/g, '\\$&')} in \\S+tasks\\.db: database or disk is full; kept in memory`)), server.output());
    assert.match((await ibs(home, ['status'])).stdout, new RegExp(`LOW SPACE: server state, log, configuration \\(${home}/lib\\): [\\d.]+ \\S+ free of 8\\.00 MiB`));
    // While it is full, a new task cannot be recorded: refused (exit 10), and the server still stops cleanly.
    const refused = await ibs(home, ['sync', 'run', '--name', 'copy']);
    assert.equal(refused.code, NO_SPACE_EXIT, refused.stderr);
    assert.match(refused.stderr, /Error: Cannot record a new task \(UPID:\S+\) in \S+tasks\.db: database or disk is full/);
    await rm(join(home, 'filler'));
    for (let i = 0; i < 50 && !(await said(/the task index takes states again/)); i++) await new Promise((r) => setTimeout(r, 100));
    await server.stop();
    // What the index itself holds: a server started again marks a task it still has as running "stopped
    // unexpectedly".
    const again = await startServer(home, 0);
    try {
      const [recorded] = await json<Array<{ upid: string; state: string }>>(home, ['task', 'list']);
      assert.deepEqual([recorded?.upid, recorded?.state], [task.upid, 'ok']);
    } finally {
      await again.stop();
    }
  } finally {
    await server.stop();
  }
});

test('chunks that arrive bypass the page cache (direct I/O), and so do reads of them; on a file system that refuses it (ramfs) they are written the usual way; both verify and restore', { timeout: 120_000 }, async (t) => {
  if (skip) return t.skip(skip);
  const { root, home, src } = await testFolder('direct', 3, 3);
  await ok(home, ['datastore', 'create', 'primary', join(root, 'primary')]);
  await ok(home, ['backup', 'create', '--store', 'primary', '--id', 'h1', `root.tar:${src}`]);
  const [snap] = await snapshots(home, 'primary');
  assert.ok(snap);
  const ramfs = join(root, 'ramfs');
  await mkdir(ramfs);
  assert.equal((await sh(`mount -t ramfs ramfs '${ramfs}'`)).code, 0);
  mounts.push(ramfs);
  // The thread that checked a chunk stores it there itself, the usual way (Linux creates the file before it
  // refuses O_DIRECT: that file is not in the way).
  const location = new LocalBackend({ root: join(ramfs, 'objects') }).threadStore?.location as string;
  assert.deepEqual(putSync(location, 'a/b/one', Buffer.from('one'), { readBack: true }), { existed: false, same: true });
  assert.deepEqual(await readdir(join(ramfs, 'objects', 'a', 'b')), ['one']);
  for (const [name, path] of [['copy', join(root, 'copy')], ['ram', join(ramfs, 'ram')]] as const) {
    await ok(home, ['datastore', 'create', name, path]);
    await ok(home, ['sync', 'create', '--name', name, '--store', 'primary', '--remote-store', name, '--direction', 'push']);
    await ok(home, ['sync', 'run', '--name', name]);
    assert.deepEqual(await snapshots(home, name), [snap]);
    assert.equal((await ibs(home, ['verify', 'start', name])).code, 0, name);
    await ok(home, ['backup', 'restore', snap, 'root.tar', join(root, `restored-${name}`), '--store', name]);
    for (const f of await readdir(src)) assert.ok((await readFile(join(root, `restored-${name}`, f))).equals(await readFile(join(src, f))), `${name}: ${f}`);
  }
  // On a disk (not memory, where every page is cached), none of a copied chunk is in the page cache, and a
  // verify (which reads every chunk; a restore or a sync reads them the same way) leaves none there either.
  // Asked of a new copy: the stores above were read back by the comparisons of their restores' files.
  await ok(home, ['datastore', 'create', 'fresh', join(root, 'fresh')]);
  await ok(home, ['sync', 'create', '--name', 'fresh', '--store', 'primary', '--remote-store', 'fresh', '--direction', 'push']);
  await ok(home, ['sync', 'run', '--name', 'fresh']);
  const chunkDir = join(root, 'fresh', '.chunks');
  const chunks = (await readdir(chunkDir, { recursive: true })).map(String).filter((n) => /[0-9a-f]{64}$/.test(n));
  assert.ok(chunks.length > 0);
  const written = await pageCache(chunkDir, chunks);
  if (!written) return t.diagnostic('the work folder is on tmpfs: page-cache check skipped');
  assert.ok(written.some((c) => c.size > 1024 * 1024), 'some chunks are large');
  assert.deepEqual(written.filter((c) => c.cached !== 0), [], 'no chunk has bytes in the page cache');
  assert.equal((await ibs(home, ['verify', 'start', 'fresh'])).code, 0);
  assert.deepEqual((await pageCache(chunkDir, chunks))?.filter((c) => c.cached !== 0), [], 'verify read the chunks past the page cache');
});
