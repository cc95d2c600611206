/**
 * The disaster-recovery workflow of docs/replication.md, end to end between two servers: the primary pushes
 * to the backup site; the primary is lost; restore from the backup site (there and over the network); re-seed
 * a rebuilt primary with a reverse (pull) sync; restore the normal direction, which sends only what is new.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, ibs, startServer, tempDir, type ServerProcess } from './helpers.ts';

let work: { path: string; cleanup: () => Promise<void> } | undefined;
const servers: ServerProcess[] = [];

after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await work?.cleanup();
});

test('DR workflow: restore from the backup site, reverse sync to re-seed the primary, restore the direction', { timeout: 240_000 }, async () => {
  work = await tempDir('ibs-dr-');
  const homeA = join(work.path, 'primary');
  const homeB = join(work.path, 'backup');
  const src = join(work.path, 'src');
  await mkdir(src, { recursive: true });
  await writeFile(join(src, 'db.bin'), randomBytes(3 * 1024 * 1024));
  await writeFile(join(src, 'notes.txt'), 'before the disaster\n');
  const ok = async (home: string, args: string[]): Promise<string> => {
    const r = await ibs(home, args);
    assert.equal(r.code, 0, `${args.join(' ')}\n${r.stderr}`);
    return r.stdout;
  };
  const list = async (home: string, store: string): Promise<string[]> => (JSON.parse(await ok(home, ['snapshot', 'list', store, '--output', 'json'])) as Array<{ snapshot: string }>).map((s) => s.snapshot).sort();

  await ok(homeA, ['datastore', 'create', 'ibs-primary']);
  await ok(homeB, ['datastore', 'create', 'ibs-archival']);
  const portA = await freePort();
  let a = await startServer(homeA, portA);
  const b = await startServer(homeB);
  servers.push(b);
  await ok(homeB, ['user', 'create', 'push@ibs']);
  const token = JSON.parse(await ok(homeB, ['token', 'create', 'push@ibs!replication', '--output', 'json'])) as { secret: string };
  for (const id of ['push@ibs', 'push@ibs!replication']) await ok(homeB, ['acl', 'update', '/datastore/ibs-archival', 'DatastoreAdmin', '--auth-id', id]);
  const secret = join(work.path, 'backup-site.secret');
  await writeFile(secret, `${token.secret}\n`, { mode: 0o600 });
  const remote = ['--host', '127.0.0.1', '--port', String(b.port), '--auth-id', 'push@ibs!replication', '--secret-file', secret, '--fingerprint', b.fingerprint];

  // Normal operation: backups at the primary, pushed to the backup site.
  await ok(homeA, ['backup', 'create', '--store', 'ibs-primary', '--id', 'web1', '--time', '2026-11-08T03:00:00Z', `root.tar:${src}`]);
  await ok(homeA, ['backup', 'create', '--store', 'ibs-primary', '--id', 'web1', '--time', '2026-11-15T03:00:00Z', `root.tar:${src}`]);
  await ok(homeA, ['remote', 'create', 'backup-site', ...remote]);
  await ok(homeA, ['sync', 'create', '--name', 'primary-to-backup-archival', '--store', 'ibs-primary', '--remote', 'backup-site', '--remote-store', 'ibs-archival', '--direction', 'push']);
  await ok(homeA, ['sync', 'run', '--name', 'primary-to-backup-archival']);

  // Disaster: the primary's datastore is gone.
  await a.kill();
  await rm(join(homeA, 'data', 'ibs-primary'), { recursive: true, force: true });

  // 1. Restore from the backup site: there, and over the network with the backup site's token.
  await ok(homeB, ['backup', 'restore', 'host/web1/2026-11-15T03:00:00Z', 'root.tar', join(work.path, 'r1'), '--store', 'ibs-archival']);
  assert.equal(await readFile(join(work.path, 'r1', 'notes.txt'), 'utf8'), 'before the disaster\n');
  await ok(join(work.path, 'client'), ['backup', 'restore', 'host/web1/2026-11-15T03:00:00Z', 'root.tar', join(work.path, 'r2'), '--repository', `push@ibs!replication@127.0.0.1:${b.port}:ibs-archival`, '--fingerprint', b.fingerprint, '--secret-file', secret]);
  assert.deepEqual(await readFile(join(work.path, 'r2', 'db.bin')), await readFile(join(src, 'db.bin')));

  // 2. Rebuild the primary and re-seed it with a reverse (pull) sync.
  await ok(homeA, ['datastore', 'remove', 'ibs-primary']).catch(() => '');
  await ok(homeA, ['datastore', 'create', 'ibs-primary']);
  a = await startServer(homeA, portA);
  servers.push(a);
  await ok(homeA, ['sync', 'create', '--name', 'reseed-from-backup', '--store', 'ibs-primary', '--remote', 'backup-site', '--remote-store', 'ibs-archival', '--direction', 'pull', '--owner', 'push@ibs!replication']);
  await ok(homeA, ['sync', 'run', '--name', 'reseed-from-backup']);
  assert.equal((await ibs(homeA, ['sync', 'diff', '--name', 'reseed-from-backup'])).code, 0);
  assert.deepEqual(await list(homeA, 'ibs-primary'), ['host/web1/2026-11-08T03:00:00Z', 'host/web1/2026-11-15T03:00:00Z']);
  await ok(homeA, ['verify', 'start', 'ibs-primary']);

  // 3. Restore the normal direction: new backups at the primary go to the backup site again, only they are sent.
  await ok(homeA, ['sync', 'remove', '--name', 'reseed-from-backup']);
  await writeFile(join(src, 'notes.txt'), 'after the rebuild\n');
  const owner = await ibs(homeA, ['backup', 'create', '--store', 'ibs-primary', '--id', 'web1', '--time', '2026-11-22T03:00:00Z', `root.tar:${src}`]);
  // The re-seeded group belongs to the replication identity: the local admin backs up into a group of its own.
  if (owner.code !== 0) await ok(homeA, ['backup', 'create', '--store', 'ibs-primary', '--id', 'web1-rebuilt', '--time', '2026-11-22T03:00:00Z', `root.tar:${src}`]);
  const run = JSON.parse(await ok(homeA, ['sync', 'run', '--name', 'primary-to-backup-archival', '--output', 'json'])) as { summary: string };
  assert.match(run.summary, /copied 1 snapshot/);
  assert.match(run.summary, /skipped 2 already present/);
  assert.equal((await ibs(homeA, ['sync', 'diff', '--name', 'primary-to-backup-archival'])).code, 0);
});
