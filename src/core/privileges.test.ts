import { test } from 'node:test';
import assert from 'node:assert/strict';
import { effectivePrivileges, requirePrivilege, parseAclPath, type AclEntry } from './privileges.ts';
import { IbsError } from './errors.ts';

const acl: AclEntry[] = [
  { path: '/datastore', authId: 'alice@ibs', role: 'DatastoreReader', propagate: true },
  { path: '/datastore/secret', authId: 'alice@ibs', role: 'NoAccess', propagate: true },
  { path: '/datastore/store1', authId: 'alice@ibs!sync', role: 'DatastoreAdmin', propagate: true },
  { path: '/datastore/store2', authId: 'bob@ibs', role: 'DatastoreBackup', propagate: false },
];

test('propagated roles apply below their path; a deeper entry replaces what was inherited', () => {
  assert.deepEqual([...effectivePrivileges(acl, 'alice@ibs', '/datastore/store1/ns/a')].sort(), ['Datastore.Audit', 'Datastore.Read']);
  assert.deepEqual([...effectivePrivileges(acl, 'alice@ibs', '/datastore/secret/team')], []);
  assert.deepEqual([...effectivePrivileges(acl, 'alice@ibs', '/')], []);
});

test('a non-propagated entry applies to its own path only', () => {
  assert.ok(effectivePrivileges(acl, 'bob@ibs', '/datastore/store2').has('Datastore.Backup'));
  assert.equal(effectivePrivileges(acl, 'bob@ibs', '/datastore/store2/ns').size, 0);
});

test('a token never has more than its user', () => {
  assert.deepEqual([...effectivePrivileges(acl, 'alice@ibs!sync', '/datastore/store1')].sort(), ['Datastore.Audit', 'Datastore.Read']);
  assert.equal(effectivePrivileges(acl, 'alice@ibs!other', '/datastore/store1').size, 0);
});

test('denials name the missing privilege and the path; bad paths are refused', () => {
  assert.throws(() => requirePrivilege(acl, 'alice@ibs', '/datastore/store1', 'Datastore.Backup'), (e) => e instanceof IbsError && e.code === 'PERMISSION_DENIED' && e.message.includes('Datastore.Backup') && e.message.includes('/datastore/store1'));
  assert.throws(() => parseAclPath('/datastore/../etc'), IbsError);
  assert.throws(() => parseAclPath('/nowhere'), IbsError);
  assert.equal(parseAclPath('/datastore/store1/'), '/datastore/store1');
});
