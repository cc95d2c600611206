import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IbsError, effectivePrivileges } from '../core/index.ts';
import { AccessConfig } from './access.ts';

async function withAccess(fn: (a: AccessConfig, dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ibs-access-'));
  try {
    await fn(new AccessConfig(dir), dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('users: passwords verify, are stored hashed in a 0600 file, and disabled or expired users are refused', async () => {
  await withAccess(async (a, dir) => {
    await a.createUser({ userid: 'alice@ibs', password: 'correct horse' });
    assert.equal(await a.verifyPassword('alice@ibs', 'correct horse'), true);
    assert.equal(await a.verifyPassword('alice@ibs', 'wrong horse!'), false);
    const shadow = await readFile(join(dir, 'shadow.json'), 'utf8');
    assert.ok(!shadow.includes('correct horse'));
    assert.equal((await stat(join(dir, 'shadow.json'))).mode & 0o777, 0o600);
    await a.updateUser('alice@ibs', { enable: false });
    assert.equal(await a.verifyPassword('alice@ibs', 'correct horse'), false);
    await a.updateUser('alice@ibs', { enable: true, expire: 1 });
    assert.equal(await a.verifyPassword('alice@ibs', 'correct horse'), false);
    await assert.rejects(a.createUser({ userid: 'alice@ibs' }), (e) => e instanceof IbsError && e.code === 'EXISTS');
    await assert.rejects(a.createUser({ userid: 'bad/user@ibs' }), (e) => e instanceof IbsError && e.code === 'INVALID_ARGUMENT');
    await assert.rejects(a.createUser({ userid: 'bob@ibs', password: 'short' }), /at least 8/);
  });
});

test('tokens: the secret is returned once, verifies, is stored only as a hash, and dies with its user', async () => {
  await withAccess(async (a, dir) => {
    await a.createUser({ userid: 'sync@ibs' });
    const { secret } = await a.createToken({ tokenid: 'sync@ibs!replication' });
    assert.equal(await a.verifyToken('sync@ibs!replication', secret), true);
    assert.equal(await a.verifyToken('sync@ibs!replication', `${secret}x`), false);
    assert.equal(await a.verifyToken('sync@ibs!other', secret), false);
    assert.ok(!(await readFile(join(dir, 'token.shadow'), 'utf8')).includes(secret));
    await a.updateAcl({ path: '/datastore/store1', authId: 'sync@ibs!replication', role: 'DatastoreReader' });
    await a.removeUser('sync@ibs');
    assert.equal(await a.verifyToken('sync@ibs!replication', secret), false);
    assert.deepEqual(await a.acl(), []);
  });
});

test('an enable or expire edited by hand into something unreadable fails closed: refused, named, corrected only by giving it', async () => {
  await withAccess(async (a, dir) => {
    await a.createUser({ userid: 'alice@ibs', password: 'correct horse' });
    const { secret } = await a.createToken({ tokenid: 'alice@ibs!sync' });
    const path = join(dir, 'user.cfg');
    const stored = await readFile(path, 'utf8');
    // It used to read as enabled and never expiring.
    await writeFile(path, stored.replace(/(user: alice@ibs\n(?:\t.*\n)*?\texpire )0/, '$1never').replace(/(token: alice@ibs!sync\n(?:\t.*\n)*?\tenable )1/, '$1yes'));
    assert.equal(await a.verifyPassword('alice@ibs', 'correct horse'), false);
    assert.equal(await a.userActive('alice@ibs'), false);
    assert.equal(await a.verifyToken('alice@ibs!sync', secret), false, 'the token of a refused user, and itself unreadable');
    assert.match((await a.user('alice@ibs')).problem ?? '', /user alice@ibs: invalid expire "never" \(expected seconds since the epoch, 0 for never\); refused until corrected \(user update alice@ibs with --enable or --disable and --expire/);
    assert.match((await a.tokens('alice@ibs'))[0]?.problem ?? '', /token alice@ibs!sync: invalid enable "yes" \(expected 1 or 0\)/);
    // An update that does not give the unreadable setting changes nothing; one that gives it corrects it.
    await assert.rejects(a.updateUser('alice@ibs', { comment: 'x' }), (e) => e instanceof IbsError && e.code === 'INVALID_ARGUMENT' && /expire "never" \(expected seconds since the epoch, 0 for never\) stored: give --expire to correct it/.test(e.message));
    await a.updateUser('alice@ibs', { expire: 0 });
    assert.equal((await a.user('alice@ibs')).problem, undefined);
    assert.equal(await a.verifyPassword('alice@ibs', 'correct horse'), true);
    assert.equal(await a.verifyToken('alice@ibs!sync', secret), false, 'the token stays refused until it is corrected');
  });
});

test('ACL updates replace, remove, and validate; evaluation uses them', async () => {
  await withAccess(async (a) => {
    await a.createUser({ userid: 'op@ibs' });
    await a.updateAcl({ path: '/datastore/store1', authId: 'op@ibs', role: 'DatastoreReader' });
    await a.updateAcl({ path: '/datastore/store1', authId: 'op@ibs', role: 'DatastoreAdmin' });
    assert.equal((await a.acl()).length, 1);
    assert.ok(effectivePrivileges(await a.acl(), 'op@ibs', '/datastore/store1/ns').has('Datastore.Prune'));
    await assert.rejects(a.updateAcl({ path: '/datastore/store1', authId: 'op@ibs', role: 'Superuser' }), /Unknown role "Superuser"/);
    await assert.rejects(a.updateAcl({ path: '/etc', authId: 'op@ibs', role: 'Admin' }), /Invalid ACL path/);
    await assert.rejects(a.updateAcl({ path: '/', authId: 'ghost@ibs', role: 'Admin' }), /does not exist/);
    await a.updateAcl({ path: '/datastore/store1', authId: 'op@ibs', role: 'DatastoreAdmin', remove: true });
    assert.deepEqual(await a.acl(), []);
  });
});

test('a line of acl.cfg that does not parse is CORRUPT, with its line number in the file (blank and comment lines count)', async () => {
  await withAccess(async (a, dir) => {
    await writeFile(join(dir, 'acl.cfg'), '# granted by hand\n\nacl:1:/:admin@ibs:Admin\nacl:1:/datastore:ops@ibs\n');
    await assert.rejects(a.acl(), (e) => e instanceof IbsError && e.code === 'CORRUPT' && /^acl\.cfg:4: cannot parse "acl:1:\/datastore:ops@ibs"/.test(e.message));
  });
});
