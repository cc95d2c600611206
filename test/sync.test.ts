/**
 * Replication between two real servers on 127.0.0.1 (separate homes and ports): pull and push with filters,
 * namespace mapping, transfer-last, worker threads and a bandwidth limit; remove-vanished; pinned identity;
 * missing privileges; a corrupted copy repaired from the source.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ibs, startServer, tempDir, type ServerProcess } from './helpers.ts';
import { addSnapshotFile } from '../src/datastore/test-support.ts';
import { Datastore } from '../src/datastore/index.ts';
import { LocalBackend } from '../src/storage/local/index.ts';
import { decodeIndex, indexChunks, parseSnapshot } from '../src/core/index.ts';

let work: { path: string; cleanup: () => Promise<void> };
let homeA: string; // primary site
let homeB: string; // backup site
let a: ServerProcess;
let b: ServerProcess;
let src: string;

const ok = async (home: string, args: string[]): Promise<string> => {
  const r = await ibs(home, args);
  assert.equal(r.code, 0, `${args.join(' ')}\n${r.stderr}`);
  return r.stdout;
};
const json = async <T = unknown>(home: string, args: string[]): Promise<T> => JSON.parse(await ok(home, [...args, '--output', 'json'])) as T;
const snapshots = async (home: string, store: string, ns = ''): Promise<string[]> =>
  (await json<Array<{ snapshot: string }>>(home, ['snapshot', 'list', store, ...(ns ? ['--ns', ns] : [])])).map((s) => s.snapshot.replace(/^[^:]*:(?=(host|vm|ct)\/)/, '')).sort();

async function token(home: string, user: string, role: string, path: string): Promise<string> {
  await ok(home, ['user', 'create', user.split('!')[0] as string]).catch(() => {});
  const t = await json<{ secret: string }>(home, ['token', 'create', user]);
  // A token never has more than its user: both get the role.
  for (const id of [user.split('!')[0] as string, user]) await ok(home, ['acl', 'update', path, role, '--auth-id', id]);
  const file = join(work.path, `${user.replace(/[@!]/g, '_')}.secret`);
  await writeFile(file, `${t.secret}\n`, { mode: 0o600 });
  return file;
}

async function backup(home: string, store: string, id: string, time: string, ns = '', type = 'host'): Promise<void> {
  await writeFile(join(src, 'changing.bin'), randomBytes(300_000));
  await ok(home, ['backup', 'create', '--store', store, ...(ns ? ['--ns', ns] : []), '--type', type, '--id', id, '--time', time, `root.tar:${src}`]);
}

before(async () => {
  work = await tempDir('ibs-sync-');
  homeA = join(work.path, 'primary');
  homeB = join(work.path, 'backup');
  src = join(work.path, 'src');
  await mkdir(join(src, 'sub'), { recursive: true });
  for (let i = 0; i < 4; i++) await writeFile(join(src, 'sub', `f${i}.bin`), randomBytes(700_000 + i));
  await ok(homeA, ['datastore', 'create', 'ibs-primary']);
  await ok(homeB, ['datastore', 'create', 'ibs-archival']);
  for (const ns of ['location_a', 'location_a/department_x', 'location_a/department_x/team_one', 'location_a/department_x/team_two', 'location_a/other']) {
    await ok(homeA, ['namespace', 'create', 'ibs-primary', ns]);
  }
  // Root: web1 daily over two weeks (Mon 2026-11-02 … Sun 2026-11-15), vm/100 once; namespaced groups.
  for (const day of ['2026-11-02', '2026-11-04', '2026-11-08', '2026-11-10', '2026-11-15']) await backup(homeA, 'ibs-primary', 'web1', `${day}T03:00:00Z`);
  await backup(homeA, 'ibs-primary', '100', '2026-11-09T03:00:00Z', '', 'vm');
  await backup(homeA, 'ibs-primary', 't1', '2026-11-09T03:00:00Z', 'location_a/department_x/team_one');
  await backup(homeA, 'ibs-primary', 't2', '2026-11-09T03:00:00Z', 'location_a/department_x/team_two');
  await backup(homeA, 'ibs-primary', 'o1', '2026-11-09T03:00:00Z', 'location_a/other');
  a = await startServer(homeA);
  b = await startServer(homeB);
  // The backup site pulls with a reader token on the primary; the primary pushes with a backup token on the backup site.
  const pullSecret = await token(homeA, 'sync@ibs!replication', 'DatastoreReader', '/datastore/ibs-primary');
  await ok(homeB, ['remote', 'create', 'primary-site', '--host', '127.0.0.1', '--port', String(a.port), '--auth-id', 'sync@ibs!replication', '--secret-file', pullSecret, '--fingerprint', a.fingerprint]);
  const pushSecret = await token(homeB, 'push@ibs!replication', 'DatastoreAdmin', '/datastore/ibs-archival');
  await ok(homeA, ['remote', 'create', 'backup-site', '--host', '127.0.0.1', '--port', String(b.port), '--auth-id', 'push@ibs!replication', '--secret-file', pushSecret, '--fingerprint', b.fingerprint]);
});

after(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await work.cleanup();
});

test('remote test reports each check on its own line; secrets are never shown', async () => {
  const out = await ok(homeB, ['remote', 'test', 'primary-site', '--store', 'ibs-primary']);
  for (const check of ['reachable', 'tls: TLSv1.3', 'fingerprint: matches', 'authentication: accepted as sync@ibs!replication', 'privileges: on /datastore/ibs-primary: Datastore.Audit, Datastore.Read', 'version']) assert.match(out, new RegExp(`ok +${check.replace(/[.*+?^${}()|[\]\\!]/g, '\\$&')}`), out);
  const shown = await ok(homeB, ['remote', 'show', '--name', 'primary-site', '--output', 'json']);
  const secret = (await readFile(join(work.path, 'sync_ibs_replication.secret'), 'utf8')).trim();
  assert.ok(!shown.includes(secret) && !(await readFile(join(homeB, 'etc', 'remote.cfg'), 'utf8')).includes(secret));
  assert.equal((await stat(join(homeB, 'etc', 'remote.secrets'))).mode & 0o777, 0o600);
});

test('the seed pull job copies weekly snapshots from every namespace, restorable at the backup site', async () => {
  await ok(homeB, ['sync', 'create', '--name', 'backup-pulls-from-primary', '--source', 'ibs-archival', '--remote', 'primary-site', '--remote-repository', 'ibs-primary', '--direction', 'pull', '--schedule', 'Sun 04:30', '--include', 'keep-weekly=*', '--bwlimit', '100']);
  const list = await json<Array<{ id: string; nextRun?: string; schedule: string }>>(homeB, ['sync', 'list']);
  assert.equal(list[0]?.id, 'backup-pulls-from-primary');
  assert.ok(list[0]?.nextRun, 'a scheduled job shows its next run');
  const run = await ibs(homeB, ['sync', 'run', '--name', 'backup-pulls-from-primary']);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /transferred .* in \d+ chunks at .*copied 6 snapshot/);
  // Weekly: newest of each ISO week per group — web1 2026-11-08 (week 45) and 2026-11-15 (week 46); the rest once each.
  assert.deepEqual(await snapshots(homeB, 'ibs-archival'), ['host/web1/2026-11-08T03:00:00Z', 'host/web1/2026-11-15T03:00:00Z', 'vm/100/2026-11-09T03:00:00Z']);
  assert.deepEqual(await snapshots(homeB, 'ibs-archival', 'location_a/department_x/team_one'), ['host/t1/2026-11-09T03:00:00Z']);
  const groups = await json<Array<{ group: string; owner: string }>>(homeB, ['group', 'list', 'ibs-archival']);
  assert.ok(groups.every((g) => g.owner === 'root@pam'), 'a pull creates groups owned by the job owner');
  // The copy restores byte for byte at the backup site, and was verified on arrival.
  const out = join(work.path, 'restored');
  await ok(homeB, ['backup', 'restore', 'host/web1/2026-11-15T03:00:00Z', 'root.tar', out, '--store', 'ibs-archival']);
  assert.deepEqual(await readFile(join(out, 'sub', 'f2.bin')), await readFile(join(src, 'sub', 'f2.bin')));
  const shown = await json<{ manifest: { unprotected: { verifyState?: { state: string }; syncOrigin?: { source: string } } } }>(homeB, ['snapshot', 'show', 'ibs-archival', 'host/web1/2026-11-15T03:00:00Z']);
  assert.equal(shown.manifest.unprotected.verifyState?.state, 'ok');
  assert.equal(shown.manifest.unprotected.syncOrigin?.source, 'remote primary-site, store ibs-primary');
  // Nothing left to do: the next run sends nothing; diff says aligned for the filtered set.
  const again = await json<{ summary?: string }>(homeB, ['sync', 'run', '--name', 'backup-pulls-from-primary']);
  assert.match(String(again.summary), /transferred 0 B in 0 chunks/);
  const tasks = await json<Array<{ type: string; state: string }>>(homeB, ['task', 'list', '--type', 'syncjob']);
  assert.ok(tasks.length >= 2 && tasks.every((t) => t.state === 'ok'), JSON.stringify(tasks));
  const shownStore = await json<{ lastSync?: { job: string; result: string; summary?: string } }>(homeB, ['datastore', 'show', 'ibs-archival']);
  assert.deepEqual([shownStore.lastSync?.job, shownStore.lastSync?.result], ['backup-pulls-from-primary', 'ok'], 'the last sync result per datastore');
  // What the last run did, kept with the job's state by the server that ran it.
  assert.match(String(shownStore.lastSync?.summary), /^transferred 0 B in 0 chunks .*copied 0 snapshot/);
  const listed = await json<Array<{ id: string; lastSummary?: string }>>(homeB, ['sync', 'list']);
  assert.match(String(listed.find((j) => j.id === 'backup-pulls-from-primary')?.lastSummary), /^transferred 0 B in 0 chunks/);
});

test('namespace mapping, group filters, transfer-last and worker threads', async () => {
  await ok(homeB, ['sync', 'create', '--name', 'team-pull', '--store', 'ibs-archival', '--remote', 'primary-site', '--remote-store', 'ibs-primary', '--direction', 'pull', '--remote-ns', 'location_a/department_x', '--ns', 'location_a_dep_x', '--worker-threads', '4', '--group-filter', 'exclude:group:host/t2']);
  await ok(homeB, ['sync', 'run', '--name', 'team-pull']);
  const namespaces = await json<string[]>(homeB, ['namespace', 'list', 'ibs-archival']);
  assert.ok(namespaces.includes('location_a_dep_x/team_one') && namespaces.includes('location_a_dep_x/team_two'), namespaces.join(' '));
  assert.ok(!namespaces.some((n) => n.startsWith('location_a_dep_x/') && !/team_(one|two)$/.test(n)), 'nothing else is mapped');
  assert.deepEqual(await snapshots(homeB, 'ibs-archival', 'location_a_dep_x/team_one'), ['host/t1/2026-11-09T03:00:00Z']);
  assert.deepEqual(await snapshots(homeB, 'ibs-archival', 'location_a_dep_x/team_two'), [], 'excluded by the group filter');
  await ok(homeB, ['sync', 'create', '--name', 'last-one', '--store', 'ibs-archival', '--remote', 'primary-site', '--remote-store', 'ibs-primary', '--direction', 'pull', '--ns', 'last', '--max-depth', '0', '--transfer-last', '1', '--group-filter', 'group:host/web1']);
  await ok(homeB, ['sync', 'run', '--name', 'last-one']);
  assert.deepEqual(await snapshots(homeB, 'ibs-archival', 'last'), ['host/web1/2026-11-15T03:00:00Z']);
  // Too deep a mapping fails before anything is copied.
  const deep = await ibs(homeB, ['sync', 'create', '--name', 'too-deep', '--store', 'ibs-archival', '--remote', 'primary-site', '--remote-store', 'ibs-primary', '--direction', 'pull', '--ns', 'a/b/c/d/e/f', '--max-depth', '3']);
  assert.equal(deep.code, 2);
  assert.match(deep.stderr, /exceeds the maximum depth of 7/);
});

test('push with remove-vanished: copies owned by the remote identity, vanished ones removed, protected ones kept', async () => {
  await ok(homeA, ['sync', 'create', '--name', 'primary-to-backup-archival', '--store', 'ibs-primary', '--remote', 'backup-site', '--remote-store', 'ibs-archival', '--direction', 'push', '--remote-ns', 'pushed', '--max-depth', '0', '--remove-vanished', '--group-filter', 'type:host']);
  await ok(homeA, ['sync', 'run', '--name', 'primary-to-backup-archival']);
  assert.equal((await snapshots(homeB, 'ibs-archival', 'pushed')).length, 5);
  // Which chunks the remote has was asked along with opening each upload: no separate query per snapshot.
  const requests = (await readFile(join(homeB, 'log', 'api.log'), 'utf8')).split('\n').filter((l) => l.includes('"path":"/api2/json/backup/'));
  assert.equal(requests.filter((l) => l.includes('/start"')).length >= 5, true, 'uploads were opened');
  assert.deepEqual(requests.filter((l) => l.includes('/known"')), []);
  const groups = await json<Array<{ group: string; owner: string }>>(homeB, ['group', 'list', 'ibs-archival', '--ns', 'pushed']);
  assert.deepEqual(groups.map((g) => g.owner), ['push@ibs!replication']);
  await ok(homeA, ['snapshot', 'forget', 'ibs-primary', 'host/web1/2026-11-02T03:00:00Z']);
  await ok(homeA, ['snapshot', 'forget', 'ibs-primary', 'host/web1/2026-11-04T03:00:00Z']);
  await ok(homeB, ['snapshot', 'protect', 'ibs-archival', 'host/web1/2026-11-04T03:00:00Z', '--ns', 'pushed']);
  const diff = await ibs(homeA, ['sync', 'diff', '--source', 'ibs-primary', '--remote', 'backup-site', '--remote-repository', 'ibs-archival', '--remote-ns', 'pushed', '--output', 'json']);
  assert.equal(diff.code, 1, 'not aligned');
  assert.equal(JSON.parse(diff.stdout).rows.filter((r: { where: string }) => r.where === 'target only').length, 2 + 0);
  const run = await json<{ summary: string }>(homeA, ['sync', 'run', '--name', 'primary-to-backup-archival']);
  assert.match(run.summary, /removed vanished 1/);
  assert.deepEqual(await snapshots(homeB, 'ibs-archival', 'pushed'), ['host/web1/2026-11-04T03:00:00Z', 'host/web1/2026-11-08T03:00:00Z', 'host/web1/2026-11-10T03:00:00Z', 'host/web1/2026-11-15T03:00:00Z']);
  // A client log added to the newest snapshot after it was pushed: the copy on the remote is amended over
  // HTTPS (it stays whole until the new manifest replaces it), and no chunk travels again.
  const primary = await Datastore.open(new LocalBackend({ root: join(homeA, 'data', 'ibs-primary') }));
  await addSnapshotFile(primary, parseSnapshot('host/web1/2026-11-15T03:00:00Z'), 'client.log.blob', 'backup finished');
  const amended = await ibs(homeA, ['sync', 'run', '--name', 'primary-to-backup-archival']);
  assert.equal(amended.code, 0, amended.stderr);
  const said = amended.stdout + amended.stderr;
  assert.match(said, / in 0 chunks .*copied 1 snapshot/);
  assert.match(said, /changed on the source since it was copied; syncing it again \(the copy stays until the new one is complete\)/);
  const shown = await json<{ manifest: { files: Array<{ filename: string }> } }>(homeB, ['snapshot', 'show', 'ibs-archival', 'host/web1/2026-11-15T03:00:00Z', '--ns', 'pushed']);
  assert.deepEqual(shown.manifest.files.map((f) => f.filename).sort(), ['client.log.blob', 'root.tar.catalog.didx', 'root.tar.payload.didx']);
  await ok(homeB, ['verify', 'start', 'ibs-archival', '--ns', 'pushed']);
});

test('a certificate other than the registered one is refused, both fingerprints shown', async () => {
  // "backup-site" as registered, but answered by the primary's certificate (as a man in the middle would).
  await ok(homeA, ['remote', 'create', 'imposter', '--host', '127.0.0.1', '--port', String(b.port), '--auth-id', 'push@ibs!replication', '--secret-file', join(work.path, 'push_ibs_replication.secret'), '--fingerprint', a.fingerprint]);
  const t = await ibs(homeA, ['remote', 'test', 'imposter']);
  assert.notEqual(t.code, 0);
  assert.ok(t.stderr.includes(a.fingerprint) && t.stderr.includes(b.fingerprint), t.stderr);
  assert.match(t.stderr, /remote update --name imposter --fingerprint/);
  await ok(homeA, ['sync', 'create', '--name', 'to-imposter', '--store', 'ibs-primary', '--remote', 'imposter', '--remote-store', 'ibs-archival', '--direction', 'push']);
  const run = await ibs(homeA, ['sync', 'run', '--name', 'to-imposter']);
  assert.notEqual(run.code, 0);
  const log = run.stderr + run.stdout;
  assert.ok(log.includes(b.fingerprint) && log.includes(a.fingerprint), log);
});

test('a remote token without Datastore.Read: the job fails naming the privilege and the path', async () => {
  const weak = await token(homeA, 'weak@ibs!replication', 'DatastoreAudit', '/datastore/ibs-primary');
  await ok(homeB, ['remote', 'create', 'weak-primary', '--host', '127.0.0.1', '--port', String(a.port), '--auth-id', 'weak@ibs!replication', '--secret-file', weak, '--fingerprint', a.fingerprint]);
  await ok(homeB, ['sync', 'create', '--name', 'weak-pull', '--store', 'ibs-archival', '--remote', 'weak-primary', '--remote-store', 'ibs-primary', '--direction', 'pull', '--ns', 'weak', '--max-depth', '0']);
  const run = await ibs(homeB, ['sync', 'run', '--name', 'weak-pull']);
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, /Datastore\.Read on \/datastore\/ibs-primary/);
});

test('a corrupted chunk on the target: verify finds it, sync repair fixes it from the source', async () => {
  const store = (await json<{ path: string }>(homeB, ['datastore', 'show', 'ibs-archival'])).path;
  // A chunk the copy of host/web1 references (unreferenced leftovers would not be noticed by verify).
  const index = decodeIndex(await readFile(join(store, 'host', 'web1', '2026-11-15T03:00:00Z', 'root.tar.payload.didx')), 'root.tar.payload.didx');
  const digest = indexChunks(index)[0]?.digest as string;
  const file = join(store, '.chunks', digest.slice(0, 4), digest);
  const data = await readFile(file);
  data[data.length - 10] = (data[data.length - 10] as number) ^ 0xff;
  await writeFile(file, data);
  const verify = await ibs(homeB, ['verify', 'start', 'ibs-archival']);
  assert.notEqual(verify.code, 0, `verification notices the damage to ${file}: ${verify.stdout}${verify.stderr}`);
  // The pull job's copies include host/web1 of 2026-11-15: its repair re-sends the chunk from the primary.
  const repair = await ibs(homeB, ['sync', 'repair', '--name', 'backup-pulls-from-primary']);
  assert.equal(repair.code, 0, repair.stderr);
  assert.match(repair.stderr, /host\/web1\/2026-11-15T03:00:00Z: 1 chunk\(s\) missing or damaged on the target; it will be synced again/);
  const after = await ibs(homeB, ['verify', 'start', 'ibs-archival']);
  assert.equal(after.code, 0, after.stderr);
});

test('encrypt on push with a server key; restore at the backup site with the right key only; pull decrypts with an associated key; key rotation', async () => {
  const keyfile = join(work.path, 'site.key');
  const pass = join(work.path, 'pass');
  await writeFile(pass, 'a long passphrase\n');
  await ok(homeA, ['key', 'create', keyfile, '--passphrase-file', pass]);
  await ok(homeA, ['key', 'create', '--name', 'site-key', '--from-keyfile', keyfile, '--passphrase-file', pass]);
  await ok(homeA, ['key', 'create', '--name', 'next-key']);
  await ok(homeA, ['sync', 'create', '--name', 'encrypted-push', '--store', 'ibs-primary', '--remote', 'backup-site', '--remote-store', 'ibs-archival', '--direction', 'push', '--remote-ns', 'enc', '--max-depth', '0', '--group-filter', 'type:vm', '--encrypt-on-push', '--active-encryption-key', 'site-key']);
  await ok(homeA, ['sync', 'run', '--name', 'encrypted-push']);
  const shown = await json<{ manifest: { keyFingerprint?: string; files: Array<{ cryptMode: string }> } }>(homeB, ['snapshot', 'show', 'ibs-archival', 'vm/100/2026-11-09T03:00:00Z', '--ns', 'enc']);
  const fp = (await json<{ fingerprint: string }>(homeA, ['key', 'show', keyfile])).fingerprint;
  assert.equal(shown.manifest.keyFingerprint, fp);
  assert.ok(shown.manifest.files.every((f) => f.cryptMode === 'encrypt'));
  // Restore at the backup site: with the key file it works, without (or with another key) it says which key it needs.
  const out = join(work.path, 'enc-restore');
  await ok(homeB, ['backup', 'restore', 'vm/100/2026-11-09T03:00:00Z', 'root.tar', out, '--store', 'ibs-archival', '--ns', 'enc', '--keyfile', keyfile, '--passphrase-file', pass]);
  assert.deepEqual(await readFile(join(out, 'sub', 'f1.bin')), await readFile(join(src, 'sub', 'f1.bin')));
  const other = join(work.path, 'other.key');
  await ok(homeA, ['key', 'create', other, '--kdf', 'none']);
  const wrong = await ibs(homeB, ['backup', 'restore', 'vm/100/2026-11-09T03:00:00Z', 'root.tar', join(work.path, 'x'), '--store', 'ibs-archival', '--ns', 'enc', '--keyfile', other]);
  assert.notEqual(wrong.code, 0);
  assert.ok(wrong.stderr.includes(fp), wrong.stderr);
  // Nothing left to send; the copies are not reported as differing.
  const again = await json<{ summary: string }>(homeA, ['sync', 'run', '--name', 'encrypted-push']);
  assert.match(again.summary, /in 0 chunks/);
  // Pull back with the key associated: the copy arrives decrypted and restores without a key.
  await ok(homeA, ['sync', 'create', '--name', 'decrypting-pull', '--store', 'ibs-primary', '--ns', 'decrypted', '--remote', 'backup-site', '--remote-store', 'ibs-archival', '--remote-ns', 'enc', '--direction', 'pull', '--associated-key', 'site-key']);
  await ok(homeA, ['sync', 'run', '--name', 'decrypting-pull']);
  const back = await json<{ manifest: { keyFingerprint?: string } }>(homeA, ['snapshot', 'show', 'ibs-primary', 'vm/100/2026-11-09T03:00:00Z', '--ns', 'decrypted']);
  assert.equal(back.manifest.keyFingerprint, undefined);
  await ok(homeA, ['backup', 'restore', 'vm/100/2026-11-09T03:00:00Z', 'root.tar', join(work.path, 'dec-restore'), '--store', 'ibs-primary', '--ns', 'decrypted']);
  // Rotation: the old active key stays associated; a key in use cannot be removed; an archived key never encrypts.
  const updated = await json<{ associatedKeys: string[] }>(homeA, ['sync', 'update', '--name', 'encrypted-push', '--active-encryption-key', 'next-key']);
  assert.deepEqual(updated.associatedKeys, ['site-key']);
  const rm = await ibs(homeA, ['key', 'remove', '--name', 'site-key']);
  assert.equal(rm.code, 9);
  assert.match(rm.stderr, /still used by sync job\(s\) encrypted-push, decrypting-pull/);
  await ok(homeA, ['key', 'archive', '--name', 'next-key']);
  const archived = await ibs(homeA, ['sync', 'run', '--name', 'encrypted-push']);
  assert.notEqual(archived.code, 0);
  assert.match(archived.stderr, /archived: it decrypts but never encrypts/);
});

test('a push onto a copy that does not read copies the rest and fails naming it; diff reports it; repair replaces it from the source', async () => {
  await ok(homeA, ['namespace', 'create', 'ibs-primary', 'dmgt']);
  for (const t of ['2026-11-20T03:00:00Z', '2026-11-21T03:00:00Z']) await backup(homeA, 'ibs-primary', 'e1', t, 'dmgt');
  await ok(homeA, ['sync', 'create', '--name', 'dmgt-push', '--store', 'ibs-primary', '--ns', 'dmgt', '--remote', 'backup-site', '--remote-store', 'ibs-archival', '--remote-ns', 'dmgt', '--direction', 'push']);
  await ok(homeA, ['sync', 'run', '--name', 'dmgt-push']);
  const store = await json<{ path: string }>(homeB, ['datastore', 'show', 'ibs-archival']);
  await writeFile(join(store.path, 'ns', 'dmgt', 'host', 'e1', '2026-11-20T03:00:00Z', 'index.json'), '{"cut short');
  await backup(homeA, 'ibs-primary', 'e1', '2026-11-22T03:00:00Z', 'dmgt');
  const states = async (): Promise<string[]> =>
    (await json<Array<{ snapshot: string; verifyState?: string }>>(homeB, ['snapshot', 'list', 'ibs-archival', '--ns', 'dmgt'])).map((s) => `${s.snapshot.replace(/^[^:]*:/, '')} ${s.verifyState === 'damaged' ? 'damaged' : 'reads'}`).sort();
  const run = await ibs(homeA, ['sync', 'run', '--name', 'dmgt-push']);
  assert.notEqual(run.code, 0, 'the job fails, so that someone looks');
  assert.match(run.stderr, /dmgt:host\/e1\/2026-11-20T03:00:00Z: not valid JSON.*the job with --resync-corrupt, or "sync repair", copies it again from the source/);
  assert.deepEqual(await states(), ['host/e1/2026-11-20T03:00:00Z damaged', 'host/e1/2026-11-21T03:00:00Z reads', 'host/e1/2026-11-22T03:00:00Z reads'], 'the new one arrived; the unreadable copy was neither overwritten nor removed');
  const diff = await ibs(homeA, ['sync', 'diff', '--name', 'dmgt-push', '--output', 'json']);
  assert.equal(diff.code, 1, 'not aligned');
  assert.deepEqual(JSON.parse(diff.stdout).rows, [{ where: 'differs', snapshot: 'dmgt:host/e1/2026-11-20T03:00:00Z (unreadable on the target)' }]);
  const repair = await ibs(homeA, ['sync', 'repair', '--name', 'dmgt-push']);
  assert.equal(repair.code, 0, repair.stderr);
  assert.match(repair.stderr, /dmgt:host\/e1\/2026-11-20T03:00:00Z: its manifest does not read on the target; it will be synced again/);
  assert.deepEqual(await states(), ['host/e1/2026-11-20T03:00:00Z reads', 'host/e1/2026-11-21T03:00:00Z reads', 'host/e1/2026-11-22T03:00:00Z reads']);
  await ok(homeB, ['verify', 'start', 'ibs-archival', '--ns', 'dmgt']);
  assert.equal((await ibs(homeA, ['sync', 'diff', '--name', 'dmgt-push'])).code, 0, 'aligned again');
});

test('a pull from a server with a snapshot that does not read copies the rest, keeps that snapshot\'s copy (remove-vanished too), and fails naming it', async () => {
  await ok(homeA, ['namespace', 'create', 'ibs-primary', 'dmg']);
  for (const t of ['2026-11-20T03:00:00Z', '2026-11-21T03:00:00Z']) await backup(homeA, 'ibs-primary', 'd1', t, 'dmg');
  await ok(homeB, ['sync', 'create', '--name', 'dmg-pull', '--store', 'ibs-archival', '--ns', 'dmg', '--remote', 'primary-site', '--remote-store', 'ibs-primary', '--remote-ns', 'dmg', '--direction', 'pull', '--remove-vanished']);
  await ok(homeB, ['sync', 'run', '--name', 'dmg-pull']);
  const store = await json<{ path: string }>(homeA, ['datastore', 'show', 'ibs-primary']);
  await writeFile(join(store.path, 'ns', 'dmg', 'host', 'd1', '2026-11-20T03:00:00Z', 'index.json'), '{"cut short');
  await backup(homeA, 'ibs-primary', 'd1', '2026-11-22T03:00:00Z', 'dmg');
  const run = await ibs(homeB, ['sync', 'run', '--name', 'dmg-pull']);
  assert.notEqual(run.code, 0, 'the job fails, so that someone looks');
  assert.match(run.stderr, /remote primary-site, store ibs-primary: Manifest of dmg:host\/d1\/2026-11-20T03:00:00Z: not valid JSON/);
  assert.deepEqual(await snapshots(homeB, 'ibs-archival', 'dmg'), ['host/d1/2026-11-20T03:00:00Z', 'host/d1/2026-11-21T03:00:00Z', 'host/d1/2026-11-22T03:00:00Z'], 'the new one arrived; the copy of the unreadable one stayed');
});
