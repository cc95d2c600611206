import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { matches, type MatcherConfig } from './matcher.ts';
import { Notifier } from './notifier.ts';
import { renderTemplate, type TargetConfig } from './targets.ts';
import type { NotificationEvent } from './event.ts';

const event = (over: Partial<NotificationEvent> = {}): NotificationEvent => ({
  severity: 'error',
  type: 'verify',
  title: 'Verification failed on store1',
  message: 'chunk abc is damaged',
  time: Date.parse('2026-11-23T10:15:00Z'),
  fields: { datastore: 'store1', job: 'weekly' },
  ...over,
});

const m = (over: Partial<MatcherConfig>): MatcherConfig => ({ name: 'm1', targets: ['t'], mode: 'all', invert: false, ...over });

/** A webhook endpoint on 127.0.0.1 that answers every request with `status`, and the target that posts to it. */
async function webhookAnswering(status: number, name: string): Promise<{ target: TargetConfig; calls: () => number; close: () => void }> {
  let calls = 0;
  const server = createHttpServer((_req, res) => {
    calls++;
    res.writeHead(status).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const target: TargetConfig = { type: 'webhook', name, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, method: 'POST', headers: {} };
  return { target, calls: () => calls, close: () => server.close() };
}

test('matchers: conditions combine with all/any, invert negates, calendar windows select times', () => {
  assert.equal(matches(m({}), event()), true);
  assert.equal(matches(m({ severities: ['error'], types: ['verify'] }), event()), true);
  assert.equal(matches(m({ severities: ['error'], types: ['gc'] }), event()), false);
  assert.equal(matches(m({ severities: ['error'], types: ['gc'], mode: 'any' }), event()), true);
  assert.equal(matches(m({ datastores: ['store2'] }), event()), false);
  assert.equal(matches(m({ jobs: ['weekly'], invert: true }), event()), false);
  assert.equal(matches(m({ calendar: 'mon..fri 08..17:* UTC' }), event()), true); // Monday 10:15
  assert.equal(matches(m({ calendar: 'mon..fri 08..17:* UTC' }), event({ time: Date.parse('2026-11-22T10:15:00Z') })), false); // Sunday
  assert.equal(matches(m({ disable: true }), event()), false);
});

test('templates fill fields and escape for JSON', () => {
  assert.equal(renderTemplate('{"t":"{{title}}","d":"{{fields.datastore}}"}', event({ title: 'a "quoted" title' }), true), '{"t":"a \\"quoted\\" title","d":"store1"}');
});

test('webhook: retried with backoff until it succeeds; secret headers are sent but never logged', async () => {
  const received: Array<{ auth?: string; body: string }> = [];
  let failures = 2;
  const server = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      if (failures-- > 0) {
        res.writeHead(503).end();
        return;
      }
      received.push({ ...(req.headers['x-token'] ? { auth: req.headers['x-token'] as string } : {}), body });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const logs: string[] = [];
  const target: TargetConfig = { type: 'webhook', name: 'hook', url: `http://127.0.0.1:${port}/notify`, method: 'POST', headers: { 'x-kind': 'ibs' } };
  const notifier = new Notifier(
    { targets: async () => [target], matchers: async () => [m({ targets: ['hook'], severities: ['error'] })], secrets: async () => ({ headers: { 'x-token': 's3cr3t' } }) },
    { baseDelayMs: 10, maxDelayMs: 40, log: (_l, msg, f) => logs.push(`${msg} ${JSON.stringify(f)}`) },
  );
  const reports = await notifier.send(event());
  server.close();
  assert.deepEqual(reports, [{ target: 'hook', ok: true }]);
  assert.equal(received.length, 1);
  assert.equal(received[0]?.auth, 's3cr3t');
  assert.equal(JSON.parse(received[0]?.body ?? '{}').title, 'Verification failed on store1');
  assert.equal(logs.filter((l) => l.startsWith('delivery failed, retrying')).length, 2);
  assert.ok(logs.every((l) => !l.includes('s3cr3t')));
  assert.deepEqual(await notifier.send(event({ severity: 'info' })), [], 'info does not match the matcher');
});

test('webhook: a permanent failure (4xx) is reported, not retried forever', async () => {
  const hook = await webhookAnswering(404, 'gone');
  const notifier = new Notifier({ targets: async () => [hook.target], matchers: async () => [m({ targets: ['gone'] })], secrets: async () => ({}) }, { baseDelayMs: 5 });
  const [report] = await notifier.send(event());
  hook.close();
  assert.equal(report?.ok, false);
  assert.match(report?.error ?? '', /HTTP 404/);
  assert.equal(hook.calls(), 1);
});

test('close: a delivery still retrying gets the grace time, then is given up and logged so', async () => {
  const hook = await webhookAnswering(503, 'busy');
  const logged: Array<[string, Record<string, unknown>]> = [];
  // Retries a minute apart: without close, the delivery would go on for minutes.
  const notifier = new Notifier({ targets: async () => [hook.target], matchers: async () => [m({ targets: ['busy'] })], secrets: async () => ({}) }, { baseDelayMs: 60_000, log: (_level, msg, fields) => logged.push([msg, fields]) });
  const sent = notifier.send(event());
  while (hook.calls() === 0) await new Promise((r) => setTimeout(r, 10));
  const started = Date.now();
  await notifier.close(300);
  const elapsed = Date.now() - started;
  const [report] = await sent;
  hook.close();
  assert.ok(elapsed >= 250 && elapsed < 10_000, `closed after ${elapsed} ms`);
  assert.equal(hook.calls(), 1);
  assert.deepEqual(report, { target: 'busy', ok: false, error: 'given up: the server is stopping' });
  assert.deepEqual(logged.at(-1), ['delivery failed', { target: 'busy', error: 'given up: the server is stopping' }]);
});

test('sendmail: the message is piped to the program with the recipients', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ibs-sendmail-'));
  try {
    const script = join(dir, 'sendmail');
    await writeFile(script, `#!/bin/sh\necho "$@" > ${dir}/args\ncat > ${dir}/mail\n`);
    await chmod(script, 0o755);
    const target: TargetConfig = { type: 'sendmail', name: 'mail', mailto: ['ops@example.test'], from: 'ibs@example.test', path: script };
    const notifier = new Notifier({ targets: async () => [target], matchers: async () => [m({ targets: ['mail'] })], secrets: async () => ({}) });
    assert.deepEqual(await notifier.send(event()), [{ target: 'mail', ok: true }]);
    assert.equal((await readFile(join(dir, 'args'), 'utf8')).trim(), '-i -- ops@example.test');
    const mail = await readFile(join(dir, 'mail'), 'utf8');
    assert.match(mail, /^From: ibs@example.test\nTo: ops@example.test\nSubject: Verification failed on store1/);
    assert.match(mail, /chunk abc is damaged/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('smtp: delivered over SMTP to the test recipient', async () => {
  // A minimal SMTP server: enough for one plain message (no TLS, no auth).
  const messages: string[] = [];
  const server = createTcpServer((socket) => {
    let data = false;
    let buffer = '';
    let mail = '';
    socket.write('220 test ESMTP\r\n');
    socket.on('data', (d: Buffer) => {
      buffer += d.toString();
      let i: number;
      while ((i = buffer.indexOf('\r\n')) >= 0) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        if (data) {
          if (line === '.') {
            data = false;
            messages.push(mail);
            socket.write('250 queued\r\n');
          } else mail += `${line}\n`;
          continue;
        }
        const cmd = line.slice(0, 4).toUpperCase();
        if (cmd === 'EHLO' || cmd === 'HELO') socket.write('250 test\r\n');
        else if (cmd === 'DATA') {
          data = true;
          socket.write('354 go\r\n');
        } else if (cmd === 'QUIT') socket.end('221 bye\r\n');
        else socket.write('250 ok\r\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const target: TargetConfig = { type: 'smtp', name: 'ops-smtp', server: '127.0.0.1', port: (server.address() as AddressInfo).port, mode: 'insecure', mailto: ['ops@example.test'], from: 'ibs@example.test' };
  const notifier = new Notifier({ targets: async () => [target], matchers: async () => [], secrets: async () => ({}) });
  const report = await notifier.test(target, event({ type: 'test', title: 'Test notification' }), ['admin@example.test']);
  server.close();
  assert.deepEqual(report, { target: 'ops-smtp', ok: true });
  assert.equal(messages.length, 1);
  assert.match(messages[0] ?? '', /Subject: Test notification/);
  assert.match(messages[0] ?? '', /To: admin@example.test/);
});
