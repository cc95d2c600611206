import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApiClient } from '../src/client/index.ts';
import { IbsError } from '../src/core/index.ts';
import { ibs, startIbs, startServer, tempDir } from './helpers.ts';

let work: { path: string; cleanup: () => Promise<void> };
let home: string;
let server: ChildProcess;
let port: number;
let fingerprint: string;
let output = '';
let hook: Server;
const notified: Array<{ title: string; severity: string }> = [];

async function waitFor(pattern: RegExp, ms = 15_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = pattern.exec(output);
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`server did not print ${pattern} in time; output:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  work = await tempDir('ibs-server-');
  home = join(work.path, 'home');
  await mkdir(home, { recursive: true });
  await writeFile(join(work.path, 'admin.pw'), 'admin password 123\n');
  assert.equal((await ibs(home, ['datastore', 'create', 'store1'])).code, 0);
  await mkdir(join(work.path, 'src'));
  await writeFile(join(work.path, 'src', 'a.txt'), 'hello');
  assert.equal((await ibs(home, ['backup', 'create', '--store', 'store1', '--id', 'web1', `root.tar:${join(work.path, 'src')}`])).code, 0);
  // Notifications of finished tasks go to a webhook in this test.
  hook = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      notified.push(JSON.parse(body) as { title: string; severity: string });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  assert.equal((await ibs(home, ['notification', 'target', 'create', 'hook', '--type', 'webhook', '--url', `http://127.0.0.1:${(hook.address() as AddressInfo).port}/`])).code, 0);
  assert.equal((await ibs(home, ['notification', 'matcher', 'create', 'all', '--target', 'hook'])).code, 0);
  // A verify job that, as far as the job state knows, was last due an hour ago: the server must run it once at start.
  assert.equal((await ibs(home, ['verify', 'job', 'create', 'catchup', '--store', 'store1', '--schedule', 'hourly'])).code, 0);
  const { DatabaseSync } = await import('node:sqlite');
  const { JobStateStore } = await import('../src/jobs/index.ts');
  new JobStateStore(join(home, 'lib')).close();
  const db = new DatabaseSync(join(home, 'lib', 'jobs.db'));
  db.prepare('INSERT INTO job_state (job_id, first_seen) VALUES (?, ?)').run('verify/catchup', Date.now() - 2 * 3600_000);
  db.close();
  server = startIbs(home, ['server', '--listen', '127.0.0.1', '--port', '0', '--admin-password-file', join(work.path, 'admin.pw')]);
  server.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  server.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  port = Number((await waitFor(/listening on https:\/\/127\.0\.0\.1:(\d+)/))[1]);
  fingerprint = (await waitFor(/certificate fingerprint: ([0-9a-f:]{95})/))[1] as string;
});

after(async () => {
  hook.close();
  if (server.exitCode === null) server.kill('SIGKILL');
  await work.cleanup();
});

async function token(tokenid: string, acl: Array<[string, string]>): Promise<string> {
  const created = await ibs(home, ['token', 'create', tokenid, '--output', 'json']);
  assert.equal(created.code, 0, created.stderr);
  for (const [path, role] of acl) {
    const r = await ibs(home, ['acl', 'update', path, role, '--auth-id', tokenid]);
    assert.equal(r.code, 0, r.stderr);
  }
  return JSON.parse(created.stdout).secret as string;
}

test('cert info prints the fingerprint the server presents; the first start used the given admin password', async () => {
  const info = JSON.parse((await ibs(home, ['cert', 'info', '--output', 'json'])).stdout);
  assert.equal(info.fingerprint, fingerprint);
  assert.match(info.san, /IP Address:127\.0\.0\.1/);
  assert.match(output, /created admin@ibs with the password from/);
  assert.doesNotMatch(output, /admin password 123/);
  const status = await ibs(home, ['status', '--services']);
  for (const service of ['api', 'scheduler', 'worker', 'verifier', 'gc', 'sync', 'notify']) {
    assert.match(status.stdout, new RegExp(`ironcore-backup-${service}\\s+active \\(running\\)`), service);
  }
});

test('a pinned client talks TLS 1.3 and HTTP/2 with an API token and sees only what its ACL allows', async () => {
  const secret = await token('admin@ibs!ops', [['/datastore/store1', 'DatastoreReader']]);
  const client = await ApiClient.connect({ host: '127.0.0.1', port, fingerprint, authId: 'admin@ibs!ops', secret });
  try {
    assert.equal(client.tls.version, 'TLSv1.3');
    assert.deepEqual(await client.request('GET', '/admin/datastore'), [{ name: 'store1', comment: '' }]);
    const snaps = await client.request<Array<{ snapshot: string }>>('GET', '/admin/datastore/store1/snapshots');
    assert.equal(snaps.length, 1);
    await assert.rejects(client.request('POST', '/admin/datastore/store1/gc'), (e) => e instanceof IbsError && e.code === 'PERMISSION_DENIED' && /lacks Datastore\.Modify on \/datastore\/store1/.test(e.message));
  } finally {
    await client.close();
  }
});

test('a certificate that does not match the registered fingerprint is refused with both fingerprints, before any request', async () => {
  const wrong = fingerprint.replace(/^../, fingerprint.startsWith('00') ? '11' : '00');
  await assert.rejects(
    ApiClient.connect({ host: '127.0.0.1', port, fingerprint: wrong, authId: 'admin@ibs!ops', secret: 'x' }),
    (e) => e instanceof IbsError && e.code === 'CERT_MISMATCH' && e.message.includes(fingerprint) && e.message.includes(wrong) && /never accepted automatically/.test(e.message),
  );
  const log = await readFile(join(home, 'log', 'api.log'), 'utf8');
  assert.doesNotMatch(log, /"status":401/, 'the refused client sent nothing');
});

test('HTTP/1.1 clients are served too, and answered as over HTTP/2; TLS below 1.3 is refused', async () => {
  const get = (options: { maxVersion?: 'TLSv1.2'; path?: string; headers?: Record<string, string> }) =>
    new Promise<{ status: number; body: string; alpn: string }>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port, path: '/api2/json/version', rejectUnauthorized: false, ...options }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, alpn: res.httpVersion }));
      });
      req.on('error', reject);
      req.end();
    });
  const r = await get({});
  assert.equal(r.status, 401);
  assert.equal(r.alpn, '1.1');
  await assert.rejects(get({ maxVersion: 'TLSv1.2' }));
  // Routes that read a datastore (and look at the request's signal) answer a script on HTTP/1.1 as the HTTP/2
  // client: they used to fail with "client went away" once the request had been read.
  const secret = await token('admin@ibs!h1', [['/datastore/store1', 'DatastoreReader']]);
  const headers = { authorization: `IBSAPIToken=admin@ibs!h1:${secret}` };
  const client = await ApiClient.connect({ host: '127.0.0.1', port, fingerprint, authId: 'admin@ibs!h1', secret });
  try {
    for (const path of ['/admin/datastore/store1/snapshots', '/admin/datastore/store1/groups', '/admin/datastore/store1/status', '/admin/verify']) {
      const h1 = await get({ path: `/api2/json${path}`, headers });
      assert.equal(h1.status, 200, `${path}: ${h1.body}`);
      const data = (JSON.parse(h1.body) as { data: unknown }).data;
      const h2 = await client.request('GET', path);
      // The status carries free space, which may move between the two reads.
      if (path.endsWith('/status')) assert.deepEqual(Object.keys(data as object), Object.keys(h2 as object), path);
      else assert.deepEqual(data, h2, path);
    }
  } finally {
    await client.close();
  }
});

test('a scheduled job missed while the server was down ran once right after start', async () => {
  let rows: Array<{ job: string; lastState?: string; lastUpid?: string; nextRun?: string }> = [];
  for (let i = 0; i < 100; i++) {
    rows = JSON.parse((await ibs(home, ['job', 'list', '--output', 'json'])).stdout);
    if (rows.find((r) => r.job === 'verify/catchup')?.lastState === 'ok') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const row = rows.find((r) => r.job === 'verify/catchup');
  assert.equal(row?.lastState, 'ok', JSON.stringify(rows));
  assert.match(row?.lastUpid ?? '', /^UPID:.*:verificationjob:store1:root@pam:$/);
  assert.ok(Date.parse(row?.nextRun ?? '') > Date.now(), 'next run is in the future: it fired once');
});

test('a task started through the API logs TASK OK; SIGTERM stops the server gracefully and records it', async () => {
  const secret = await token('admin@ibs!admin', [['/', 'Admin']]);
  const client = await ApiClient.connect({ host: '127.0.0.1', port, fingerprint, authId: 'admin@ibs!admin', secret });
  const upid = await client.request<string>('POST', '/admin/datastore/store1/verify');
  let state = 'running';
  for (let i = 0; i < 200 && (state === 'running' || state === 'queued'); i++) {
    state = (await client.request<{ state: string }>('GET', `/nodes/localhost/tasks/${encodeURIComponent(upid)}/status`)).state;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.equal(state, 'ok');
  const log = await client.request<{ text: string }>('GET', `/nodes/localhost/tasks/${encodeURIComponent(upid)}/log`);
  assert.match(log.text, /TASK OK\n$/);
  const verifierLog = (await readFile(join(home, 'log', 'verifier.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { service: string; task?: string; msg: string });
  assert.ok(verifierLog.some((l) => l.service === 'verifier' && l.task === upid && l.msg === 'task ok'), 'the verifier log records the task');
  for (let i = 0; i < 50 && !notified.some((n) => n.title === 'Verify of store1 succeeded'); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(notified.some((n) => n.title === 'Verify of store1 succeeded' && n.severity === 'info'), JSON.stringify(notified));
  await client.close();
  // The same task through the CLI and the admin socket.
  const list = JSON.parse((await ibs(home, ['task', 'list', '--type', 'verify', '--output', 'json'])).stdout) as Array<{ upid: string }>;
  assert.ok(list.some((t) => t.upid === upid));
  const cliLog = await ibs(home, ['task', 'log', upid]);
  assert.match(cliLog.stdout, /TASK OK\n$/);
  const followed = await ibs(home, ['task', 'log', upid, '--follow']);
  assert.match(followed.stdout, /TASK OK\n$/);
  assert.match((await ibs(home, ['task', 'status', upid])).stdout, /state:\s+ok/);
  assert.match((await ibs(home, ['task', 'stop', upid])).stdout, /not running/);
  assert.match((await ibs(home, ['worker', 'status'])).stdout, /verify\s+1\s+0\s+0/);
  const exited = new Promise<number | null>((resolve) => server.on('exit', (code) => resolve(code)));
  server.kill('SIGTERM');
  assert.equal(await exited, 0);
  const status = await ibs(home, ['status', '--services', '--output', 'json']);
  const parsed = JSON.parse(status.stdout);
  assert.equal(parsed.running, false);
  assert.ok(parsed.services.every((s: { state: string }) => s.state === 'stopped'));
});

test('damaged files of the server: a ticket key of the wrong length is replaced; a status file that does not read is named; a certificate that does not read stops it, naming the file and the way out', async () => {
  const dir = await tempDir('ibs-damaged-');
  const h = join(dir.path, 'home');
  try {
    await (await startServer(h)).stop();
    await writeFile(join(h, 'lib', 'ticket.key'), Buffer.alloc(0));
    const second = await startServer(h);
    await second.stop();
    assert.match(second.output(), /ticket\.key holds 0 bytes, not 32: replaced by a new key/);
    assert.equal((await readFile(join(h, 'lib', 'ticket.key'))).length, 32);
    // A status file that is not what a server wrote: the state is unknown, and said why.
    await writeFile(join(h, 'lib', 'services.json'), '{"pid": "x", "services": 5}');
    const status = await ibs(h, ['status', '--services']);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^server state unknown\n[^]*ironcore-backup-server +unknown +.*services\.json does not read \(Invalid value for "services\.json\.pid": expected an integer/);
    await writeFile(join(h, 'etc', 'proxy.pem'), 'garbage\n');
    const refused = await ibs(h, ['server', '--listen', '127.0.0.1', '--port', '0']);
    assert.equal(refused.code, 6, refused.stderr);
    assert.match(refused.stderr, /etc\/proxy\.pem is not a PEM certificate: install a certificate with "cert update --cert FILE --key FILE", or move proxy\.pem and proxy\.key aside/);
    const info = await ibs(h, ['cert', 'info']);
    assert.equal(info.code, 6);
    assert.match(info.stderr, /proxy\.pem is not a PEM certificate/);
  } finally {
    await dir.cleanup();
  }
});
