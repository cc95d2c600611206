import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { ibs, startServer, tempDir } from './helpers.ts';

let work: { path: string; cleanup: () => Promise<void> };
let home: string;
let hook: Server;
let hookUrl: string;
const received: Array<{ headers: Record<string, unknown>; body: Record<string, string> }> = [];

before(async () => {
  work = await tempDir('ibs-notify-');
  home = join(work.path, 'home');
  hook = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      received.push({ headers: req.headers, body: JSON.parse(body) as Record<string, string> });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/ibs`;
  assert.equal((await ibs(home, ['datastore', 'create', 'store1'])).code, 0);
  await mkdir(join(work.path, 'src'));
  await writeFile(join(work.path, 'src', 'f'), 'data');
  assert.equal((await ibs(home, ['backup', 'create', '--store', 'store1', '--id', 'h', `root.tar:${join(work.path, 'src')}`])).code, 0);
});
after(async () => {
  hook.close();
  await work.cleanup();
});

test('a webhook target with a secret header receives verify results per --notification-mode; the secret stays in a 0600 file', async () => {
  const t = await ibs(home, ['notification', 'target', 'create', 'ops-hook', '--type', 'webhook', '--url', hookUrl, '--header', 'X-Source=ibs', '--secret-header', 'Authorization=Bearer very-secret']);
  assert.equal(t.code, 0, t.stderr);
  const m = await ibs(home, ['notification', 'matcher', 'create', 'verify-all', '--target', 'ops-hook', '--match-type', 'verify']);
  assert.equal(m.code, 0, m.stderr);
  assert.doesNotMatch(await readFile(join(home, 'etc', 'notifications.cfg'), 'utf8'), /very-secret/);
  assert.equal((await stat(join(home, 'etc', 'notifications.secrets'))).mode & 0o777, 0o600);
  assert.doesNotMatch((await ibs(home, ['notification', 'target', 'list', '--output', 'json'])).stdout, /very-secret/);

  assert.equal((await ibs(home, ['verify', 'start', 'store1', '--notification-mode', 'error'])).code, 0);
  assert.equal(received.length, 0, 'error mode: nothing on success');
  assert.equal((await ibs(home, ['verify', 'start', 'store1', '--notification-mode', 'always'])).code, 0);
  assert.equal(received.length, 1);
  assert.equal(received[0]?.body.title, 'Verification of store1 succeeded');
  assert.equal(received[0]?.headers.authorization, 'Bearer very-secret');
  assert.equal(received[0]?.headers['x-source'], 'ibs');
  const status = JSON.parse((await ibs(home, ['verify', 'status', '--output', 'json'])).stdout);
  assert.deepEqual(status.datastores.map((d: { store: string; ok: number; failed: number; never: number }) => [d.store, d.ok, d.failed, d.never]), [['store1', 1, 0, 0]]);
});

test('notification target test sends through sendmail to the given recipient; bad targets are refused clearly', async () => {
  const script = join(work.path, 'fake-sendmail');
  await writeFile(script, `#!/bin/sh\necho "$@" > ${work.path}/sendmail-args\ncat > ${work.path}/sendmail-mail\n`);
  await chmod(script, 0o755);
  assert.equal((await ibs(home, ['notification', 'target', 'create', 'ops-mail', '--type', 'sendmail', '--mailto', 'ops@example.test', '--path', script])).code, 0);
  const r = await ibs(home, ['notification', 'target', 'test', 'ops-mail', '--recipient', 'admin@example.test']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(await readFile(join(work.path, 'sendmail-args'), 'utf8'), /admin@example\.test/);
  assert.match(await readFile(join(work.path, 'sendmail-mail'), 'utf8'), /Subject: ironcore-backup test notification/);
  for (const [args, pattern] of [
    [['notification', 'target', 'create', 'x1', '--type', 'pager'], /Invalid target type "pager"/],
    [['notification', 'target', 'create', 'x2', '--type', 'webhook', '--url', 'ftp://x'], /expected http:\/\/ or https:\/\//],
    [['notification', 'target', 'create', 'x3', '--type', 'smtp', '--server', 'mail.example.test', '--mailto', 'not-an-address'], /Invalid e-mail address "not-an-address"/],
    [['notification', 'matcher', 'create', 'm2', '--target', 'nosuch'], /no notification target "nosuch"/],
    [['notification', 'target', 'test', 'nosuch'], /No notification target "nosuch"/],
  ] as Array<[string[], RegExp]>) {
    const bad = await ibs(home, args);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, pattern);
  }
});

test('target and matcher update: given values replace stored ones, secrets and the rest stay; a bad change changes nothing', async () => {
  const run = async (args: string[]): Promise<string> => {
    const r = await ibs(home, args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  await run(['notification', 'target', 'create', 'upd-hook', '--type', 'webhook', '--url', 'http://127.0.0.1:9/a', '--header', 'X-A=1', '--secret-header', 'Authorization=Bearer keep-me']);
  await run(['notification', 'target', 'create', 'upd-other', '--type', 'webhook', '--url', 'http://127.0.0.1:9/b']);
  await run(['notification', 'target', 'update', 'upd-hook', '--url', hookUrl, '--comment', 'moved']);
  const targets = JSON.parse(await run(['notification', 'target', 'list', '--output', 'json'])) as Array<Record<string, unknown>>;
  const t = targets.find((x) => x.name === 'upd-hook') as Record<string, unknown>;
  assert.equal(t.url, hookUrl);
  assert.equal(t.comment, 'moved');
  assert.deepEqual(t.headers, { 'X-A': '1' }, 'headers not given: kept');
  assert.match(await readFile(join(home, 'etc', 'notifications.secrets'), 'utf8'), /keep-me/, 'secret header kept');
  const before = await readFile(join(home, 'etc', 'notifications.cfg'), 'utf8');
  const bad = await ibs(home, ['notification', 'target', 'update', 'upd-hook', '--url', 'ftp://nope']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /Invalid --url "ftp:\/\/nope"/);
  assert.equal((await ibs(home, ['notification', 'target', 'update', 'no-such', '--url', hookUrl])).code, 3);
  assert.equal(await readFile(join(home, 'etc', 'notifications.cfg'), 'utf8'), before, 'refused changes leave the file as it was');

  await run(['notification', 'matcher', 'create', 'upd-match', '--target', 'upd-hook', '--match-type', 'verify', '--comment', 'first']);
  await run(['notification', 'matcher', 'update', 'upd-match', '--target', 'upd-other', '--mode', 'any']);
  const m = (JSON.parse(await run(['notification', 'matcher', 'list', '--output', 'json'])) as Array<Record<string, unknown>>).find((x) => x.name === 'upd-match') as Record<string, unknown>;
  assert.deepEqual(m.targets, ['upd-other']);
  assert.equal(m.mode, 'any');
  assert.deepEqual(m.types, ['verify'], 'types not given: kept');
  assert.equal(m.comment, 'first');
  const missing = await ibs(home, ['notification', 'matcher', 'update', 'upd-match', '--target', 'nowhere']);
  assert.equal(missing.code, 3);
  assert.match(missing.stderr, /no notification target "nowhere"/);
});

test('smtp targets deliver to a real SMTP server over STARTTLS and implicit TLS with authentication; a wrong password fails clearly', async () => {
  const { SMTPServer } = await import('smtp-server');
  const { execFileSync } = await import('node:child_process');
  // A certificate for 127.0.0.1 that the CLI trusts through NODE_EXTRA_CA_CERTS (it is its own CA).
  const certFile = join(work.path, 'smtp.crt');
  const keyFile = join(work.path, 'smtp.key');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '2', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
  const tls = { key: await readFile(keyFile), cert: await readFile(certFile) };
  const mails: Array<{ user: string; secure: boolean; to: string[]; text: string }> = [];
  const start = (secure: boolean): Promise<{ port: number; close: () => void }> => {
    const server = new SMTPServer({
      ...tls,
      secure,
      authMethods: ['PLAIN', 'LOGIN'],
      onAuth: (auth, _session, cb) => (auth.username === 'ibs' && auth.password === 'mail secret' ? cb(null, { user: auth.username }) : cb(new Error('Invalid username or password'))),
      onData: (stream, session, cb) => {
        let text = '';
        stream.on('data', (d: Buffer) => (text += d.toString()));
        stream.on('end', () => {
          mails.push({ user: String(session.user), secure: session.secure, to: session.envelope.rcptTo.map((r) => r.address), text });
          cb();
        });
      },
    });
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ port: (server.server.address() as AddressInfo).port, close: () => server.close() })));
  };
  const starttls = await start(false);
  const implicit = await start(true);
  try {
    const password = join(work.path, 'smtp-password');
    await writeFile(password, 'mail secret\n', { mode: 0o600 });
    const env = { NODE_EXTRA_CA_CERTS: certFile };
    for (const [name, mode, port] of [['mail-starttls', 'starttls', starttls.port], ['mail-tls', 'tls', implicit.port]] as const) {
      const created = await ibs(home, ['notification', 'target', 'create', name, '--type', 'smtp', '--server', '127.0.0.1', '--port', String(port), '--mode', mode, '--username', 'ibs', '--password-file', password, '--mailto', 'ops@example.test', '--from', 'ibs@example.test']);
      assert.equal(created.code, 0, created.stderr);
      const sent = await ibs(home, ['notification', 'target', 'test', name], env);
      assert.equal(sent.code, 0, sent.stderr);
    }
    assert.deepEqual(mails.map((m) => [m.user, m.secure, m.to]), [['ibs', true, ['ops@example.test']], ['ibs', true, ['ops@example.test']]]);
    assert.match(mails[0]?.text ?? '', /Subject: ironcore-backup test notification/);
    assert.doesNotMatch(await readFile(join(home, 'etc', 'notifications.cfg'), 'utf8'), /mail secret/, 'the password is kept apart');
    // A wrong password: the target is refused by the server and the command says so.
    await writeFile(password, 'wrong\n');
    assert.equal((await ibs(home, ['notification', 'target', 'update', 'mail-starttls', '--password-file', password])).code, 0);
    const refused = await ibs(home, ['notification', 'target', 'test', 'mail-starttls'], env);
    assert.equal(refused.code, 11);
    assert.match(refused.stderr, /Test notification to mail-starttls failed: .*(Invalid login|535|Invalid username or password)/);
  } finally {
    starttls.close();
    implicit.close();
  }
});

test('a target or matcher edited by hand into something invalid is named when read: deliveries fail with it, the matcher matches all, update must give the value', async () => {
  // A home of its own: the matchers of the tests before would hold the verify below in their retries.
  const home = join(work.path, 'home-hand');
  const cfg = join(home, 'etc', 'notifications.cfg');
  for (const args of [
    ['datastore', 'create', 'store1'],
    ['backup', 'create', '--store', 'store1', '--id', 'h', `root.tar:${join(work.path, 'src')}`],
    ['notification', 'target', 'create', 'hand-mail', '--type', 'smtp', '--server', '127.0.0.1', '--port', '2525', '--mailto', 'ops@example.test'],
    ['notification', 'target', 'create', 'hand-hook', '--type', 'webhook', '--url', hookUrl, '--header', 'X-Target=hand'],
    ['notification', 'matcher', 'create', 'hand-m', '--target', 'hand-hook', '--match-type', 'prune'],
  ]) {
    const r = await ibs(home, args);
    assert.equal(r.code, 0, r.stderr);
  }
  const text = await readFile(cfg, 'utf8');
  const edited = text.replace('\tport 2525\n', '\tport twenty-five\n').replace(/(matcher: hand-m\n(?:\t[^\n]*\n)*?)\tmode all\n/, '$1\tmode sometimes\n');
  assert.notEqual(edited, text);
  await writeFile(cfg, edited);

  const targets = JSON.parse((await ibs(home, ['notification', 'target', 'list', '--output', 'json'])).stdout) as Array<{ name: string; problem?: string }>;
  const problem = targets.find((t) => t.name === 'hand-mail')?.problem ?? '';
  assert.match(problem, /notifications\.cfg: target "hand-mail" is invalid: port "twenty-five": expected 1 to 65535\. Correct it with "notification target update hand-mail …"/);
  assert.deepEqual(targets.filter((t) => t.problem !== undefined).map((t) => t.name), ['hand-mail'], 'the other targets read');
  assert.match((await ibs(home, ['notification', 'target', 'list'])).stdout, /PROBLEM[\s\S]*port "twenty-five"/);
  // A delivery fails with the message, not with a connection error to port NaN.
  const tried = await ibs(home, ['notification', 'target', 'test', 'hand-mail']);
  assert.notEqual(tried.code, 0);
  assert.match(tried.stderr, /port "twenty-five": expected 1 to 65535/);

  const matchers = JSON.parse((await ibs(home, ['notification', 'matcher', 'list', '--output', 'json'])).stdout) as Array<{ name: string; problem?: string }>;
  assert.match(matchers.find((m) => m.name === 'hand-m')?.problem ?? '', /matcher "hand-m" is invalid: mode "sometimes": expected all or any/);
  // The matcher does not read: it matches every event (a verify, though it asked for prune only), so that nothing is lost.
  const before = received.filter((r) => r.headers['x-target'] === 'hand').length;
  assert.equal((await ibs(home, ['verify', 'start', 'store1', '--notification-mode', 'always'])).code, 0);
  assert.equal(received.filter((r) => r.headers['x-target'] === 'hand').length, before + 1);

  // A change that does not give the invalid value is refused and writes nothing; one that gives it corrects the entry.
  const refused = await ibs(home, ['notification', 'target', 'update', 'hand-mail', '--comment', 'x']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /port "twenty-five".*does not give --port/);
  const refusedMatcher = await ibs(home, ['notification', 'matcher', 'update', 'hand-m', '--comment', 'x']);
  assert.notEqual(refusedMatcher.code, 0);
  assert.match(refusedMatcher.stderr, /mode "sometimes".*does not give --mode/);
  assert.equal(await readFile(cfg, 'utf8'), edited);
  assert.equal((await ibs(home, ['notification', 'target', 'update', 'hand-mail', '--port', '2526'])).code, 0);
  assert.equal((await ibs(home, ['notification', 'matcher', 'update', 'hand-m', '--mode', 'any'])).code, 0);
  const fixed = JSON.parse((await ibs(home, ['notification', 'target', 'list', '--output', 'json'])).stdout) as Array<{ name: string; port?: number; problem?: string }>;
  assert.deepEqual(fixed.filter((t) => t.name === 'hand-mail').map((t) => [t.port, t.problem]), [[2526, undefined]]);
  const fixedMatchers = JSON.parse((await ibs(home, ['notification', 'matcher', 'list', '--output', 'json'])).stdout) as Array<{ name: string; mode: string; problem?: string }>;
  assert.deepEqual(fixedMatchers.filter((m) => m.name === 'hand-m').map((m) => [m.mode, m.problem]), [['any', undefined]]);

  // A disabled matcher matches nothing and stays disabled through an update that does not say otherwise.
  const hand = (): number => received.filter((r) => r.headers['x-target'] === 'hand').length;
  for (const args of [['--match-type', 'verify', '--disable'], ['--comment', 'kept']]) assert.equal((await ibs(home, ['notification', 'matcher', 'update', 'hand-m', ...args])).code, 0);
  const disabled = (JSON.parse((await ibs(home, ['notification', 'matcher', 'list', '--output', 'json'])).stdout) as Array<{ name: string; disable?: boolean; comment?: string }>).find((m) => m.name === 'hand-m');
  assert.deepEqual([disabled?.disable, disabled?.comment], [true, 'kept']);
  const beforeDisabled = hand();
  assert.equal((await ibs(home, ['verify', 'start', 'store1', '--notification-mode', 'always'])).code, 0);
  assert.equal(hand(), beforeDisabled);
  assert.match((await ibs(home, ['notification', 'matcher', 'update', 'hand-m', '--disable', '--enable'])).stderr, /--disable and --enable exclude each other/);
  assert.equal((await ibs(home, ['notification', 'matcher', 'update', 'hand-m', '--enable'])).code, 0);
  assert.equal((await ibs(home, ['verify', 'start', 'store1', '--notification-mode', 'always'])).code, 0);
  assert.equal(hand(), beforeDisabled + 1);
  // --invert negates the conditions (a verify event no longer matches); --no-invert undoes it.
  assert.equal((await ibs(home, ['notification', 'matcher', 'update', 'hand-m', '--invert'])).code, 0);
  assert.equal((await ibs(home, ['verify', 'start', 'store1', '--notification-mode', 'always'])).code, 0);
  assert.equal(hand(), beforeDisabled + 1);
  assert.match((await ibs(home, ['notification', 'matcher', 'update', 'hand-m', '--invert', '--no-invert'])).stderr, /--invert and --no-invert exclude each other/);
  assert.equal((await ibs(home, ['notification', 'matcher', 'update', 'hand-m', '--no-invert'])).code, 0);
  assert.equal((await ibs(home, ['verify', 'start', 'store1', '--notification-mode', 'always'])).code, 0);
  assert.equal(hand(), beforeDisabled + 2);
  for (const args of [['notification', 'matcher', 'remove', 'hand-m'], ['notification', 'target', 'remove', 'hand-hook'], ['notification', 'target', 'remove', 'hand-mail']]) assert.equal((await ibs(home, args)).code, 0);
});

test('a server whose notification configuration does not read keeps running when tasks end: each undelivered notification is logged naming the file and line', { timeout: 60_000 }, async () => {
  const own = join(work.path, 'broken-config');
  await mkdir(join(own, 'etc'), { recursive: true });
  assert.equal((await ibs(own, ['datastore', 'create', 'one'])).code, 0);
  assert.equal((await ibs(own, ['datastore', 'create', 'two'])).code, 0);
  assert.equal((await ibs(own, ['backup', 'create', '--store', 'one', '--id', 'h', `root.tar:${join(work.path, 'src')}`])).code, 0);
  assert.equal((await ibs(own, ['sync', 'create', '--name', 'copy', '--store', 'one', '--remote-store', 'two', '--direction', 'push'])).code, 0);
  await writeFile(join(own, 'etc', 'notifications.cfg'), 'a line of no section\n');
  const server = await startServer(own);
  try {
    for (let i = 0; i < 2; i++) {
      const run = await ibs(own, ['sync', 'run', '--name', 'copy']);
      assert.equal(run.code, 0, run.stderr);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(server.child.exitCode, null, `the server stopped at the end of task ${i + 1}:\n${server.output()}`);
    }
    const logged = (await readFile(join(own, 'log', 'notify.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { level: string; msg: string; fields?: { error?: string } });
    const notSent = logged.filter((l) => l.msg === 'notification not sent');
    assert.equal(notSent.length, 2, JSON.stringify(logged));
    assert.match(notSent[0]?.fields?.error ?? '', /notifications\.cfg:1: cannot parse "a line of no section"/);
  } finally {
    await server.stop();
  }
});
