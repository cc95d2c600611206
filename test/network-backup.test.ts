import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { ibs, startIbs, tempDir } from './helpers.ts';

let work: { path: string; cleanup: () => Promise<void> };
let serverHome: string;
let clientHome: string;
let server: ChildProcess;
let repository: string;
let fingerprint: string;
let secretFile: string;
let output = '';
let src: string;

before(async () => {
  work = await tempDir('ibs-net-');
  serverHome = join(work.path, 'server');
  clientHome = join(work.path, 'client');
  src = join(work.path, 'src');
  await mkdir(join(src, 'sub'), { recursive: true });
  for (let i = 0; i < 10; i++) await writeFile(join(src, 'sub', `f${i}.bin`), randomBytes(1024 * 1024 + i));
  await writeFile(join(src, 'hello.txt'), 'hello over the network\n');
  assert.equal((await ibs(serverHome, ['datastore', 'create', 'store1'])).code, 0);
  server = startIbs(serverHome, ['server', '--listen', '127.0.0.1', '--port', '0']);
  server.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  server.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  for (let i = 0; i < 300 && !/certificate fingerprint: [0-9a-f:]{95}/.test(output); i++) await new Promise((r) => setTimeout(r, 50));
  const port = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1];
  fingerprint = /certificate fingerprint: ([0-9a-f:]{95})/.exec(output)?.[1] as string;
  assert.ok(port && fingerprint, output);
  assert.equal((await ibs(serverHome, ['user', 'create', 'client@ibs'])).code, 0);
  const token = JSON.parse((await ibs(serverHome, ['token', 'create', 'client@ibs!backup', '--output', 'json'])).stdout);
  for (const authId of ['client@ibs', 'client@ibs!backup']) {
    assert.equal((await ibs(serverHome, ['acl', 'update', '/datastore/store1', 'DatastoreBackup', '--auth-id', authId])).code, 0);
  }
  secretFile = join(work.path, 'secret');
  await writeFile(secretFile, `${token.secret}\n`, { mode: 0o600 });
  repository = `client@ibs!backup@127.0.0.1:${port}:store1`;
});

after(async () => {
  if (server.exitCode === null) {
    const exited = new Promise((resolve) => server.on('exit', resolve));
    server.kill('SIGTERM');
    await exited;
  }
  await work.cleanup();
});

const remoteArgs = (): string[] => ['--repository', repository, '--fingerprint', fingerprint, '--secret-file', secretFile];

test('a backup over HTTPS arrives complete, restores identically, and the next one sends only new chunks', async () => {
  const first = await ibs(clientHome, ['backup', 'create', ...remoteArgs(), '--id', 'client1', '--time', '2026-11-01T00:00:00Z', '--output', 'json', `root.tar:${src}`]);
  assert.equal(first.code, 0, first.stderr);
  const stats = JSON.parse(first.stdout).archives[0];
  assert.ok(stats.newChunks > 0);
  // The server's datastore holds it, owned by the token; restore it there and compare.
  const groups = JSON.parse((await ibs(serverHome, ['group', 'list', 'store1', '--output', 'json'])).stdout);
  assert.deepEqual(groups.map((g: { group: string; owner: string }) => [g.group, g.owner]), [['host/client1', 'client@ibs!backup']]);
  const out = join(work.path, 'restored');
  const r = await ibs(serverHome, ['backup', 'restore', 'host/client1/2026-11-01T00:00:00Z', 'root.tar', out, '--store', 'store1']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await readFile(join(out, 'hello.txt'), 'utf8'), 'hello over the network\n');
  assert.deepEqual(await readFile(join(out, 'sub', 'f7.bin')), await readFile(join(src, 'sub', 'f7.bin')));
  assert.equal((await ibs(serverHome, ['verify', 'start', 'store1'])).code, 0);
  // Second run: the previous snapshot's chunks are known, nothing is sent again.
  await writeFile(join(src, 'hello.txt'), 'changed\n');
  const second = await ibs(clientHome, ['backup', 'create', ...remoteArgs(), '--id', 'client1', '--time', '2026-11-02T00:00:00Z', '--output', 'json', `root.tar:${src}`]);
  assert.equal(second.code, 0, second.stderr);
  const s2 = JSON.parse(second.stdout).archives[0];
  assert.ok(s2.newChunks <= 2, `only the chunk with the changed file is new: ${JSON.stringify(s2)}`);
  assert.ok(s2.reusedChunks >= stats.chunks - 2);
  // Change detection over the network: unchanged files were taken from the previous snapshot unread, whole
  // chunks of them (how much depends on where the 2 MiB-average chunks fall; the chunk around the change is read).
  assert.ok(s2.copiedBytes > 1024 * 1024, `unchanged files taken over unread: ${JSON.stringify(s2)}`);
  assert.equal(stats.copiedBytes, 0);
  // And the result is right: the second snapshot restores identically.
  const again = join(work.path, 'restored-2');
  const r2 = await ibs(clientHome, ['backup', 'restore', 'host/client1/2026-11-02T00:00:00Z', 'root.tar', again, ...remoteArgs()]);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(await readFile(join(again, 'hello.txt'), 'utf8'), 'changed\n');
  for (let i = 0; i < 10; i++) assert.deepEqual(await readFile(join(again, 'sub', `f${i}.bin`)), await readFile(join(src, 'sub', `f${i}.bin`)));
});

test('a restore over HTTPS returns identical bytes (whole archive, one path, a tar stream)', async () => {
  const out = join(work.path, 'net-restore');
  const r = await ibs(clientHome, ['backup', 'restore', 'host/client1/2026-11-01T00:00:00Z', 'root.tar', out, ...remoteArgs()]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await readFile(join(out, 'hello.txt'), 'utf8'), 'hello over the network\n');
  assert.deepEqual(await readFile(join(out, 'sub', 'f3.bin')), await readFile(join(src, 'sub', 'f3.bin')));
  const one = join(work.path, 'net-one');
  const p = await ibs(clientHome, ['backup', 'restore', 'host/client1/2026-11-01T00:00:00Z', 'root.tar', one, ...remoteArgs(), '--path', 'sub/f5.bin']);
  assert.equal(p.code, 0, p.stderr);
  assert.deepEqual(await readFile(join(one, 'sub', 'f5.bin')), await readFile(join(src, 'sub', 'f5.bin')));
});

test('readers see only what they may: another user is refused; a chunk outside the opened snapshot is refused', async () => {
  assert.equal((await ibs(serverHome, ['user', 'create', 'other@ibs'])).code, 0);
  const other = JSON.parse((await ibs(serverHome, ['token', 'create', 'other@ibs!t', '--output', 'json'])).stdout);
  for (const authId of ['other@ibs', 'other@ibs!t']) assert.equal((await ibs(serverHome, ['acl', 'update', '/datastore/store1', 'DatastoreBackup', '--auth-id', authId])).code, 0);
  await writeFile(join(work.path, 'other-secret'), other.secret);
  const denied = await ibs(clientHome, ['backup', 'restore', 'host/client1/2026-11-01T00:00:00Z', 'root.tar', join(work.path, 'x'), '--repository', repository.replace('client@ibs!backup', 'other@ibs!t'), '--fingerprint', fingerprint, '--secret-file', join(work.path, 'other-secret')]);
  assert.equal(denied.code, 5, denied.stderr);
  assert.match(denied.stderr, /lacks Datastore\.Read on \/datastore\/store1/);
  // The other user backs up data of its own; the owner of client1 then opens its snapshot and asks for one
  // of the other user's chunks.
  const otherSrc = join(work.path, 'other-src');
  await mkdir(otherSrc);
  await writeFile(join(otherSrc, 'secret.bin'), randomBytes(100_000));
  const ob = await ibs(clientHome, ['backup', 'create', '--repository', repository.replace('client@ibs!backup', 'other@ibs!t'), '--fingerprint', fingerprint, '--secret-file', join(work.path, 'other-secret'), '--id', 'other', '--time', '2026-11-01T00:00:00Z', `root.tar:${otherSrc}`]);
  assert.equal(ob.code, 0, ob.stderr);
  const { ApiClient } = await import('../src/client/index.ts');
  const port = Number(/:(\d+):store1$/.exec(repository)?.[1]);
  const client = await ApiClient.connect({ host: '127.0.0.1', port, fingerprint, authId: 'client@ibs!backup', secret: (await readFile(secretFile, 'utf8')).trim() });
  try {
    const { session } = await client.request<{ session: string }>('POST', '/reader/start', { store: 'store1', snapshot: 'host/client1/2026-11-01T00:00:00Z' });
    const otherIndex = await readFile(join(serverHome, 'data', 'store1', 'host', 'other', '2026-11-01T00:00:00Z', 'root.tar.payload.didx'));
    const foreign = otherIndex.subarray(64 + 8, 64 + 40).toString('hex');
    await assert.rejects(client.requestBytes(`/reader/${session}/chunk`, { digest: foreign }), /not part of the snapshot this reader opened/);
  } finally {
    await client.close();
  }
});

test('a wrong fingerprint is refused before anything is sent; a token without Datastore.Backup is refused naming it', async () => {
  const wrong = await ibs(clientHome, ['backup', 'create', '--repository', repository, '--fingerprint', fingerprint.replace(/^../, '00'), '--secret-file', secretFile, '--id', 'x', `root.tar:${src}`]);
  assert.equal(wrong.code, 15);
  assert.match(wrong.stderr, new RegExp(fingerprint));
  const token = JSON.parse((await ibs(serverHome, ['token', 'create', 'client@ibs!readonly', '--output', 'json'])).stdout);
  await writeFile(join(work.path, 'ro-secret'), token.secret);
  const denied = await ibs(clientHome, ['backup', 'create', '--repository', repository.replace('!backup', '!readonly'), '--fingerprint', fingerprint, '--secret-file', join(work.path, 'ro-secret'), '--id', 'x', `root.tar:${src}`]);
  assert.equal(denied.code, 5);
  assert.match(denied.stderr, /client@ibs!readonly lacks Datastore\.Backup on \/datastore\/store1/);
});

test('a client killed in the middle of an upload leaves no snapshot; the next run sends only what did not arrive', async () => {
  const big = join(work.path, 'big');
  await mkdir(big);
  for (let i = 0; i < 20; i++) await writeFile(join(big, `g${i}.bin`), randomBytes(2 * 1024 * 1024));
  const { readdir } = await import('node:fs/promises');
  const chunkDir = join(serverHome, 'data', 'store1', '.chunks');
  const chunkCount = async (): Promise<number> => {
    let n = 0;
    for (const d of await readdir(chunkDir)) n += (await readdir(join(chunkDir, d))).filter((f) => /^[0-9a-f]{64}$/.test(f)).length;
    return n;
  };
  const before = await chunkCount();
  const child = startIbs(clientHome, ['backup', 'create', ...remoteArgs(), '--id', 'killed', '--quiet', `root.tar:${big}`]);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // Kill once a few chunks of this data have arrived.
  for (let i = 0; i < 400 && (await chunkCount()) - before < 4; i++) await new Promise((r) => setTimeout(r, 10));
  child.kill('SIGKILL');
  assert.equal(await exited, null);
  const arrived = (await chunkCount()) - before;
  assert.ok(arrived >= 4, `${arrived} chunks arrived before the kill`);
  const list = JSON.parse((await ibs(serverHome, ['snapshot', 'list', 'store1', 'host/killed', '--output', 'json'])).stdout);
  assert.deepEqual(list, []);
  const again = await ibs(clientHome, ['backup', 'create', ...remoteArgs(), '--id', 'killed', '--output', 'json', `root.tar:${big}`]);
  assert.equal(again.code, 0, again.stderr);
  const result = JSON.parse(again.stdout);
  const stats = result.archives[0];
  // 40 MiB of random data: what had arrived (about 2 MiB a chunk) is not sent again.
  assert.ok(result.sentBytes < 40 * 1024 * 1024 - (arrived - 1) * 1024 * 1024, `sent ${result.sentBytes} bytes though ${arrived} chunks had arrived`);
  assert.ok(stats.reusedChunks >= arrived, `${arrived} chunks had arrived; the next run reused ${stats.reusedChunks} of ${stats.chunks} without sending them`);
  assert.equal(stats.newChunks + stats.reusedChunks, stats.chunks);
  assert.equal(JSON.parse((await ibs(serverHome, ['snapshot', 'list', 'store1', 'host/killed', '--output', 'json'])).stdout).length, 1);
  assert.equal((await ibs(serverHome, ['verify', 'start', 'store1', '--snapshot', JSON.parse((await ibs(serverHome, ['snapshot', 'list', 'store1', 'host/killed', '--output', 'json'])).stdout)[0].snapshot])).code, 0);
});

test('snapshot, namespace, group, stats, verify, prune and GC commands work on a server with --repository (or IBS_REPOSITORY)', async () => {
  assert.equal((await ibs(serverHome, ['user', 'create', 'ops@ibs'])).code, 0);
  const token = JSON.parse((await ibs(serverHome, ['token', 'create', 'ops@ibs!cli', '--output', 'json'])).stdout) as { secret: string };
  for (const authId of ['ops@ibs', 'ops@ibs!cli']) assert.equal((await ibs(serverHome, ['acl', 'update', '/datastore/store1', 'DatastoreAdmin', '--auth-id', authId])).code, 0);
  const opsRepo = repository.replace('client@ibs!backup', 'ops@ibs!cli');
  const env = { IBS_REPOSITORY: opsRepo, IBS_FINGERPRINT: fingerprint, IBS_SECRET: token.secret };
  const on = async (args: string[]): Promise<string> => {
    const r = await ibs(clientHome, args, env);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  // The datastore comes from the repository: no STORE argument.
  const snaps = JSON.parse(await on(['snapshot', 'list', '--output', 'json'])) as Array<{ snapshot: string }>;
  assert.ok(snaps.length >= 2, JSON.stringify(snaps));
  const snap = (snaps[0] as { snapshot: string }).snapshot;
  assert.match(await on(['snapshot', 'list', 'host/client1']), /host\/client1\//);
  assert.match(await on(['snapshot', 'show', snap]), new RegExp(snap.replaceAll('/', '\\/')));
  await on(['snapshot', 'notes', snap, '--set', 'checked over the API']);
  assert.equal((await on(['snapshot', 'notes', snap])).trim(), 'checked over the API');
  assert.match(await on(['snapshot', 'protect', snap]), /is protected/);
  assert.match(await on(['group', 'list']), /host\/client1/);
  assert.match(await on(['datastore', 'stats', '--repository', opsRepo]), /dedup factor/);
  await on(['namespace', 'create', 'remote-made']);
  assert.match(await on(['namespace', 'list']), /remote-made/);
  await on(['namespace', 'remove', 'remote-made']);
  // Long work runs as a task on the server; its log is followed, its result printed like a local run's.
  const verified = await ibs(clientHome, ['verify', 'start', '--max-concurrent-snapshots', '2'], env);
  assert.equal(verified.code, 0, verified.stderr);
  assert.match(verified.stdout, /Verified \d+ snapshots .*all ok/);
  assert.match(verified.stderr, /task UPID:/);
  const dry = await on(['prune', 'host/client1', '--keep-last', '1', '--dry-run']);
  assert.match(dry, /keep \(keep-last\)/);
  assert.match(dry, /protected|keep/);
  const pruned = await on(['prune', 'host/client1', '--keep-last', '1']);
  assert.match(pruned, /keep \(keep-last\)/);
  assert.match(await on(['gc', 'start']), /removed chunks/);
  assert.match(await on(['gc', 'status']), /removed/i);
  // The protected snapshot survived the prune; forget refuses it until unprotected.
  assert.notEqual((await ibs(clientHome, ['snapshot', 'forget', snap], env)).code, 0);
  await on(['snapshot', 'unprotect', snap]);
  // Both a STORE argument and --repository: refused, nothing done.
  const both = await ibs(clientHome, ['snapshot', 'list', 'store1', '--repository', opsRepo], env);
  assert.notEqual(both.code, 0);
  // A token that may only back up is refused naming the privilege.
  const denied = await ibs(clientHome, ['snapshot', 'notes', snap, '--set', 'x', ...remoteArgs()]);
  assert.equal(denied.code, 5, denied.stderr);
  assert.match(denied.stderr, /lacks Datastore\.Modify on \/datastore\/store1/);
});
