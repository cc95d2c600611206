import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AccessConfig, resolvePaths } from '../config/index.ts';
import { encodeBlobSync, sha256Hex } from '../core/index.ts';
import { TaskManager, TaskStore } from '../jobs/index.ts';
import { silentReporter } from '../lib/index.ts';
import { MemoryBackend } from '../storage/memory/index.ts';
import type { AppContext } from '../app/index.ts';
import { BackupSessions, ReaderSessions, configStores, createDatastore } from '../app/index.ts';
import { ROUTES } from './routes.ts';
import { ApiDispatcher } from './server.ts';

let dir: string;
let dispatcher: ApiDispatcher;
let store: TaskStore;
let adminSecret: string;
let readerSecret: string;
let access: AccessConfig;
/** One store shared by every request: closing it is a no-op here. */
class SharedMemoryBackend extends MemoryBackend {
  override async close(): Promise<void> {}
}
const backend = new SharedMemoryBackend();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ibs-api-'));
  const paths = resolvePaths({ IRONCORE_HOME: dir });
  access = new AccessConfig(paths.configDir);
  const ctx = (authId: string, signal?: AbortSignal): AppContext => ({
    ...configStores(paths),
    access,
    openBackend: () => backend,
    authId,
    reporter: silentReporter,
    signal,
  });
  await createDatastore(ctx('root@pam'), { name: 'store1', path: join(dir, 'unused') });
  await access.createUser({ userid: 'admin@ibs', password: 'admin password' });
  await access.createUser({ userid: 'reader@ibs' });
  adminSecret = (await access.createToken({ tokenid: 'admin@ibs!t' })).secret;
  readerSecret = (await access.createToken({ tokenid: 'reader@ibs!t' })).secret;
  await access.updateAcl({ path: '/', authId: 'admin@ibs', role: 'Admin' });
  await access.updateAcl({ path: '/', authId: 'admin@ibs!t', role: 'Admin' });
  await access.updateAcl({ path: '/datastore/store1', authId: 'reader@ibs', role: 'DatastoreReader' });
  await access.updateAcl({ path: '/datastore/store1', authId: 'reader@ibs!t', role: 'DatastoreReader' });
  store = await TaskStore.open(paths.stateDir);
  const tasks = await TaskManager.start({ store, node: 'test' });
  dispatcher = new ApiDispatcher({ routes: ROUTES, auth: access, tasks, backups: new BackupSessions(), readers: new ReaderSessions(), ticketKey: Buffer.alloc(32, 7), makeContext: (authId, signal) => ctx(authId, signal) });
});
after(async () => {
  store.close();
  await rm(dir, { recursive: true, force: true });
});

const call = (method: string, path: string, secret: string | undefined, body = '') =>
  dispatcher.dispatch(method, `/api2/json${path}`, secret ? { authorization: `IBSAPIToken=${secret === readerSecret ? 'reader@ibs!t' : 'admin@ibs!t'}:${secret}` } : {}, body, new AbortController().signal);

/** A binary POST as the admin token (chunk batches, finish bodies). */
const postBinary = (path: string, body: Buffer, signal = new AbortController().signal) =>
  dispatcher.dispatch('POST', `/api2/json${path}`, { authorization: `IBSAPIToken=admin@ibs!t:${adminSecret}` }, [body], signal);

/** Opens an upload of host/ID at TIME (in namespace NS) as the admin token; returns the session. */
async function startUpload(id: string, time: number, ns?: string): Promise<string> {
  const r = await call('POST', '/backup/start', adminSecret, JSON.stringify({ store: 'store1', ...(ns ? { ns } : {}), 'backup-type': 'host', 'backup-id': id, 'backup-time': time }));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return (r.body as { data: { session: string } }).data.session;
}

/** A client log: the snapshot file every finish below carries. */
const LOG = encodeBlobSync(Buffer.from('backup finished'), { compress: false });
const LOG_FILE = { filename: 'client.log.blob', size: LOG.length, csum: sha256Hex(LOG), 'crypt-mode': 'none' };

/** A finish body for host/ID at TIME after batches 1..after: its head's length, and the head with the files' bytes. */
function finishBody(id: string, time: number, after: number, files = [LOG_FILE], tail = LOG): { head: number; body: Buffer } {
  const listed = files.map((f) => ({ filename: f.filename, size: f.size, csum: f.csum, cryptMode: f['crypt-mode'] }));
  const head = Buffer.from(JSON.stringify({ after, manifest: { format: 1, backupType: 'host', backupId: id, backupTime: time, files: listed, unprotected: {} }, files }));
  return { head: head.length, body: Buffer.concat([head, tail]) };
}

test('every route declares an input schema, an output schema and its permission', () => {
  for (const route of ROUTES) {
    const where = `${route.method} ${route.path}`;
    assert.equal(route.input.type, 'object', `${where}: input schema`);
    assert.ok(route.output, `${where}: output schema`);
    assert.ok(['public', 'authenticated', 'privilege', 'handler'].includes(route.permission.kind), `${where}: permission`);
    for (const param of route.path.match(/\{(\w+)\}/g) ?? []) assert.ok(param.slice(1, -1) in route.input.properties, `${where}: path parameter ${param} in the input schema`);
    assert.ok(route.summary.length > 0, `${where}: summary`);
  }
});

test('requests without a valid token get 401; missing privileges get 403 naming privilege and path', async () => {
  assert.equal((await call('GET', '/version', undefined)).status, 401);
  assert.equal((await call('GET', '/version', 'not-the-secret')).status, 401);
  const denied = await call('POST', '/admin/datastore/store1/verify', readerSecret, '{}');
  assert.equal(denied.status, 403);
  assert.match((denied.body as { message: string }).message, /reader@ibs!t lacks Datastore\.Verify on \/datastore\/store1/);
  const ok = await call('GET', '/admin/datastore/store1/snapshots', readerSecret);
  assert.equal(ok.status, 200);
});

test('invalid input gets 400 naming the field and the expectation; unknown paths 404, wrong methods 405', async () => {
  const bad = await call('GET', '/admin/datastore/store1/snapshots?group=server/x', readerSecret);
  assert.equal(bad.status, 400);
  assert.match(JSON.stringify(bad.body), /group/);
  const extra = await call('POST', '/admin/datastore/store1/verify', adminSecret, '{"bogus": 1}');
  assert.equal(extra.status, 400);
  assert.match((extra.body as { message: string }).message, /"bogus": unknown parameter/);
  const notJson = await call('POST', '/admin/datastore/store1/verify', adminSecret, '{');
  assert.equal(notJson.status, 400);
  assert.equal((await call('GET', '/nowhere', adminSecret)).status, 404);
  assert.equal((await call('DELETE', '/version', adminSecret)).status, 405);
  assert.equal((await call('GET', '/admin/datastore/nosuch/status', adminSecret)).status, 404);
});

test('a verify started through the API runs as a task whose log ends in TASK OK', async () => {
  const started = await call('POST', '/admin/datastore/store1/verify', adminSecret, '{}');
  assert.equal(started.status, 200, JSON.stringify(started.body));
  const upid = (started.body as { data: string }).data;
  for (let i = 0; i < 100; i++) {
    const s = await call('GET', `/nodes/localhost/tasks/${encodeURIComponent(upid)}/status`, adminSecret);
    if ((s.body as { data: { state: string } }).data.state !== 'running' && (s.body as { data: { state: string } }).data.state !== 'queued') break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const log = await call('GET', `/nodes/localhost/tasks/${encodeURIComponent(upid)}/log`, adminSecret);
  assert.match((log.body as { data: { text: string } }).data.text, /TASK OK\n$/);
  const others = await call('GET', `/nodes/localhost/tasks/${encodeURIComponent(upid)}/status`, readerSecret);
  assert.equal(others.status, 403, 'another user without Sys.Audit cannot see the task');
  const list = await call('GET', '/nodes/localhost/tasks?type=verify', readerSecret);
  assert.deepEqual((list.body as { data: unknown[] }).data, []);
});

test('the OpenAPI document lists every route', async () => {
  const doc = await dispatcher.dispatch('GET', '/api2/json/openapi', {}, '', new AbortController().signal);
  const paths = (doc.body as { data: { paths: Record<string, unknown> } }).data.paths;
  for (const route of ROUTES) assert.ok(`/api2/json${route.path}` in paths, route.path);
});

test('login tickets: a password login gives a cookie ticket; reads work with it, writes need the CSRF token', async () => {
  const signal = new AbortController().signal;
  const bad = await dispatcher.dispatch('POST', '/api2/json/access/ticket', {}, JSON.stringify({ username: 'admin@ibs', password: 'wrong password' }), signal);
  assert.equal(bad.status, 401);
  const login = await dispatcher.dispatch('POST', '/api2/json/access/ticket', {}, JSON.stringify({ username: 'admin@ibs', password: 'admin password' }), signal);
  assert.equal(login.status, 200);
  const { ticket, CSRFPreventionToken } = (login.body as { data: { ticket: string; CSRFPreventionToken: string } }).data;
  assert.match(login.setCookie ?? '', /^IBSAuthCookie=.*HttpOnly; SameSite=Strict/);
  const cookie = { cookie: `IBSAuthCookie=${encodeURIComponent(ticket)}` };
  assert.equal((await dispatcher.dispatch('GET', '/api2/json/admin/datastore/store1/status', cookie, '', signal)).status, 200);
  const noCsrf = await dispatcher.dispatch('POST', '/api2/json/admin/datastore/store1/gc', cookie, '{}', signal);
  assert.equal(noCsrf.status, 401);
  assert.match((noCsrf.body as { message: string }).message, /CSRFPreventionToken/);
  const withCsrf = await dispatcher.dispatch('POST', '/api2/json/admin/datastore/store1/gc', { ...cookie, csrfpreventiontoken: CSRFPreventionToken }, '{}', signal);
  assert.equal(withCsrf.status, 200, JSON.stringify(withCsrf.body));
  const upid = (withCsrf.body as { data: string }).data;
  for (let i = 0; i < 100; i++) {
    const s = await dispatcher.dispatch('GET', `/api2/json/nodes/localhost/tasks/${encodeURIComponent(upid)}/status`, cookie, '', signal);
    assert.equal(s.status, 200, JSON.stringify(s.body));
    if (!['running', 'queued'].includes((s.body as { data: { state: string } }).data.state)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal((await dispatcher.dispatch('GET', '/api2/json/version', { cookie: 'IBSAuthCookie=IBS:admin@ibs:0::forged' }, '', signal)).status, 401);
});

test('namespaces, groups, prune and ACL through the API, each behind its privilege', async () => {
  const created = await call('POST', '/admin/datastore/store1/namespace', adminSecret, JSON.stringify({ ns: 'site-a/team1', parents: true }));
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const list = await call('GET', '/admin/datastore/store1/namespace', readerSecret);
  assert.deepEqual((list.body as { data: string[] }).data, ['site-a', 'site-a/team1']);
  const denied = await call('POST', '/admin/datastore/store1/namespace', readerSecret, JSON.stringify({ ns: 'x' }));
  assert.equal(denied.status, 403);
  assert.match((denied.body as { message: string }).message, /lacks Datastore\.Modify on \/datastore\/store1/);
  const groups = await call('GET', '/admin/datastore/store1/groups', readerSecret);
  assert.equal(groups.status, 200);
  const dry = await call('POST', '/admin/datastore/store1/prune', adminSecret, JSON.stringify({ group: 'host/none', 'keep-last': 1, 'dry-run': true }));
  assert.equal(dry.status, 200, JSON.stringify(dry.body));
  const noRule = await call('POST', '/admin/datastore/store1/prune', adminSecret, JSON.stringify({ group: 'host/none', 'dry-run': true }));
  assert.equal(noRule.status, 400);
  assert.equal((await call('GET', '/access/acl', readerSecret)).status, 403);
  const acl = await call('GET', '/access/acl', adminSecret);
  assert.ok((acl.body as { data: unknown[] }).data.length >= 4);
});

test('datastores, notification targets and calendar previews through the API', async () => {
  // (This test's datastores share one in-memory backend, so only the refusals are checked here.)
  const again = await call('POST', '/admin/datastore', adminSecret, JSON.stringify({ name: 'store1' }));
  assert.equal(again.status, 409);
  assert.match((again.body as { message: string }).message, /already configured/);
  assert.equal((await call('POST', '/admin/datastore', readerSecret, JSON.stringify({ name: 'store3' }))).status, 403);
  assert.equal((await call('POST', '/admin/datastore', adminSecret, JSON.stringify({ name: '../x' }))).status, 400);
  const target = await call('POST', '/config/notifications/targets', adminSecret, JSON.stringify({ type: 'webhook', name: 'hook', url: 'http://127.0.0.1:9/x', 'secret-headers': ['Authorization=Bearer s3cr3t'] }));
  assert.equal(target.status, 200, JSON.stringify(target.body));
  const listed = await call('GET', '/config/notifications/targets', adminSecret);
  assert.doesNotMatch(JSON.stringify(listed.body), /s3cr3t/);
  assert.equal((await call('GET', '/config/notifications/targets', readerSecret)).status, 403);
  const cal = await call('GET', '/nodes/localhost/calendar?event=Sun%2004%3A30%20UTC&iterations=2&from=2026-11-22T00:00:00Z', readerSecret);
  assert.deepEqual((cal.body as { data: { next: string[] } }).data.next, ['2026-11-22T04:30:00Z', '2026-11-29T04:30:00Z']);
  assert.equal((await call('DELETE', '/admin/datastore/store1', readerSecret)).status, 403);
});

test('an own certificate is installed through the API only as a matching PEM pair', async () => {
  const { execFileSync } = await import('node:child_process');
  const { readFile } = await import('node:fs/promises');
  const pem = async (name: string): Promise<{ cert: string; key: string }> => {
    const certFile = join(dir, `${name}.crt`);
    const keyFile = join(dir, `${name}.key`);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`, '-days', '2', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
    return { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8') };
  };
  const a = await pem('acme-a');
  const b = await pem('acme-b');
  const put = (body: unknown, secret = adminSecret) => call('PUT', '/nodes/localhost/certificate', secret, JSON.stringify(body));
  assert.equal((await put({ certificate: a.cert, key: a.key }, readerSecret)).status, 403);
  const mismatch = await put({ certificate: a.cert, key: b.key });
  assert.equal(mismatch.status, 400);
  assert.match((mismatch.body as { message: string }).message, /does not belong to the certificate/);
  assert.equal((await put({ certificate: 'not pem', key: a.key })).status, 400);
  const ok = await put({ certificate: a.cert, key: a.key });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  const info = await call('GET', '/nodes/localhost/certificate', readerSecret);
  assert.match(JSON.stringify(info.body), /acme-a/);
  assert.equal(await readFile(join(dir, 'etc', 'proxy.pem'), 'utf8'), a.cert, 'installed where the server reads it at start');
});

test('finish ends an upload in one request: it waits for the numbered chunk batches named, checks, then commits', async () => {
  const { encodeChunkFrames } = await import('../client/index.ts');
  const data = (r: { body: unknown }) => (r.body as { data: Record<string, unknown> }).data;
  const chunk = encodeBlobSync(Buffer.from('chunk payload '.repeat(100)), { compress: true });
  const digest = sha256Hex(Buffer.from('chunk payload '.repeat(100)));

  // Sent before its batch: it waits on the server, and answers once batch 1 is stored.
  const session = await startUpload('fin', 5000);
  const f = finishBody('fin', 5000, 1);
  let answered = false;
  const finishing = postBinary(`/backup/${session}/finish?head=${f.head}`, f.body).then((r) => ((answered = true), r));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(answered, false, 'finish waits for batch 1');
  const stored = await postBinary(`/backup/${session}/chunks?seq=1`, encodeChunkFrames([{ digest, blob: chunk }]));
  assert.equal(stored.status, 200, JSON.stringify(stored.body));
  const done = await finishing;
  assert.equal(done.status, 200, JSON.stringify(done.body));
  assert.deepEqual(data(done), { bad: [], snapshot: 'host/fin/1970-01-01T01:23:20Z' });
  const listed = await call('GET', '/admin/datastore/store1/snapshots', adminSecret);
  assert.ok(JSON.stringify(listed.body).includes('"snapshot":"host/fin/1970-01-01T01:23:20Z"'), JSON.stringify(listed.body));

  // A malformed body is refused naming what is wrong, and commits nothing; the session stays usable.
  const other = await startUpload('fin', 6000);
  const short = finishBody('fin', 6000, 0, [LOG_FILE], LOG.subarray(1));
  const refused = await postBinary(`/backup/${other}/finish?head=${short.head}`, short.body);
  assert.equal(refused.status, 400);
  assert.match(JSON.stringify(refused.body), /holds \d+ bytes after its head, but its files list \d+/);
  const badHead = await postBinary(`/backup/${other}/finish?head=${short.head + 1000}`, short.body);
  assert.match(JSON.stringify(badHead.body), /Invalid value for \\"head\\"/);
  const badFile = finishBody('fin', 6000, 0, [{ ...LOG_FILE, filename: '../escape' }]);
  assert.match(JSON.stringify((await postBinary(`/backup/${other}/finish?head=${badFile.head}`, badFile.body)).body), /head\.files\[0\]\.filename/);

  // Waiting for a batch that never comes: aborting the session (or the caller going away) ends the wait.
  const waiting = finishBody('fin', 6000, 3);
  const pending = postBinary(`/backup/${other}/finish?head=${waiting.head}`, waiting.body);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal((await call('POST', `/backup/${other}/abort`, adminSecret, '{}')).status, 200);
  const ended = await pending;
  assert.notEqual(ended.status, 200);
  assert.match(JSON.stringify(ended.body), /aborted/);
  const third = await startUpload('fin', 7000);
  const caller = new AbortController();
  const gone = postBinary(`/backup/${third}/finish?head=${waiting.head}`, finishBody('fin', 7000, 3).body, caller.signal);
  await new Promise((r) => setTimeout(r, 100));
  caller.abort();
  assert.match(JSON.stringify((await gone).body), /ABORTED|went away|aborted/);
  const after = await call('GET', '/admin/datastore/store1/snapshots', adminSecret);
  assert.equal((data(after) as unknown as unknown[]).length, 1, 'nothing else committed');
  await call('POST', `/backup/${third}/abort`, adminSecret, '{}');
});

test('recursive snapshot and namespace listings show a child namespace only with Datastore.Audit there (NoAccess below, or a role that does not propagate)', async () => {
  for (const ns of ['open', 'open/secret', 'open/quiet']) assert.equal((await call('POST', '/admin/datastore/store1/namespace', adminSecret, JSON.stringify({ ns }))).status, 200);
  // One snapshot in each namespace, uploaded with a blob file only.
  for (const ns of ['open', 'open/secret', 'open/quiet']) {
    const session = await startUpload('listed', 9000, ns);
    const f = finishBody('listed', 9000, 0);
    const done = await postBinary(`/backup/${session}/finish?head=${f.head}`, f.body);
    assert.equal(done.status, 200, JSON.stringify(done.body));
  }
  await access.createUser({ userid: 'auditor@ibs' });
  const secret = (await access.createToken({ tokenid: 'auditor@ibs!t' })).secret;
  for (const authId of ['auditor@ibs', 'auditor@ibs!t']) {
    await access.updateAcl({ path: '/datastore/store1/open', authId, role: 'DatastoreAudit' });
    await access.updateAcl({ path: '/datastore/store1/open/secret', authId, role: 'NoAccess' });
  }
  const list = async (as: string, key: string) => {
    const r = await dispatcher.dispatch('GET', '/api2/json/admin/datastore/store1/snapshots?ns=open&recursive=1', { authorization: `IBSAPIToken=${as}:${key}` }, '', new AbortController().signal);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return (r.body as { data: Array<{ namespace: string }> }).data.map((row) => row.namespace).sort();
  };
  assert.deepEqual(await list('admin@ibs!t', adminSecret), ['open', 'open/quiet', 'open/secret']);
  assert.deepEqual(await list('auditor@ibs!t', secret), ['open', 'open/quiet'], 'NoAccess below hides that namespace');
  const namespaces = await dispatcher.dispatch('GET', '/api2/json/admin/datastore/store1/namespace?ns=open', { authorization: `IBSAPIToken=auditor@ibs!t:${secret}` }, '', new AbortController().signal);
  assert.deepEqual((namespaces.body as { data: string[] }).data, ['open/quiet'], 'and from the namespace list');
  for (const authId of ['auditor@ibs', 'auditor@ibs!t']) await access.updateAcl({ path: '/datastore/store1/open', authId, role: 'DatastoreAudit', propagate: false });
  assert.deepEqual(await list('auditor@ibs!t', secret), ['open'], 'a role that does not propagate covers its own namespace only');
});

test('prune jobs through the API: a job edited by hand is listed with its problem, changed only by giving the value, removed like any other', async () => {
  for (const id of ['p-good', 'p-edited']) {
    const created = await call('POST', '/config/prune', adminSecret, JSON.stringify({ id, store: 'store1', schedule: 'daily', 'keep-daily': 7 }));
    assert.equal(created.status, 200, JSON.stringify(created.body));
  }
  const cfg = join(dir, 'etc', 'prune.cfg');
  const text = await readFile(cfg, 'utf8');
  await writeFile(cfg, `${text.replace(/(prune: p-edited\n(?:\t[^\n]*\n)*?)\tkeep-daily 7/, '$1\tkeep-daily seven')}\nprune: p-nowhere\n\tstore ../elsewhere\n\tschedule daily\n\tkeep-daily 1\n`);
  const listed = async (secret: string): Promise<Array<{ id: string; problem?: string }>> => (((await call('GET', '/config/prune', secret)).body as { data: Array<{ id: string; problem?: string }> }).data);
  const all = await listed(adminSecret);
  assert.deepEqual(all.map((j) => [j.id, j.problem === undefined]), [['p-good', true], ['p-edited', false], ['p-nowhere', false]]);
  assert.match(all[1]?.problem ?? '', /prune job "p-edited" is invalid: Invalid keep-daily "seven"/);
  // One whose datastore does not read is seen (and changed) only with the privilege on every datastore.
  assert.deepEqual((await listed(readerSecret)).map((j) => j.id), ['p-good', 'p-edited']);
  const comment = await call('PUT', '/config/prune/p-edited', adminSecret, JSON.stringify({ comment: 'x' }));
  assert.equal(comment.status, 500);
  assert.match((comment.body as { message: string }).message, /keep-daily "seven", which does not read: give --keep-daily/);
  const fixed = await call('PUT', '/config/prune/p-edited', adminSecret, JSON.stringify({ 'keep-daily': 5, 'keep-weekly': 2, delete: ['comment'] }));
  assert.equal(fixed.status, 200, JSON.stringify(fixed.body));
  assert.deepEqual((fixed.body as { data: { keep: unknown } }).data.keep, { 'keep-daily': 5, 'keep-weekly': 2 });
  const noRule = await call('PUT', '/config/prune/p-good', adminSecret, JSON.stringify({ delete: ['keep-daily'] }));
  assert.equal(noRule.status, 400);
  assert.match((noRule.body as { message: string }).message, /at least one --keep-/);
  assert.equal((await call('DELETE', '/config/prune/p-nowhere', readerSecret)).status, 403);
  assert.equal((await call('DELETE', '/config/prune/p-nowhere', adminSecret)).status, 200);
  assert.deepEqual((await listed(adminSecret)).map((j) => [j.id, j.problem === undefined]), [['p-good', true], ['p-edited', true]]);
});
