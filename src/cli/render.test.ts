import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TerminalReporter, table } from './render.ts';

function fakeTerminal(isTTY: boolean): NodeJS.WriteStream & { text: () => string } {
  const parts: string[] = [];
  return { isTTY, write: (s: string) => parts.push(s) > 0, text: () => parts.join('') } as unknown as NodeJS.WriteStream & { text: () => string };
}

test('progress on a terminal shows bytes, percent, rate and ETA; off a terminal it is silent', async () => {
  const tty = fakeTerminal(true);
  const reporter = new TerminalReporter(tty);
  reporter.progress({ phase: 'backup', done: 0, total: 100 * 1024 * 1024, unit: 'bytes' });
  await new Promise((r) => setTimeout(r, 300));
  reporter.progress({ phase: 'backup', done: 30 * 1024 * 1024, total: 100 * 1024 * 1024, unit: 'bytes' });
  const line = tty.text();
  assert.match(line, /backup {2}30\.00 MiB \/ 100\.00 MiB {2}30% {2}[\d.]+ [KMG]iB\/s {2}ETA \d+s/);
  reporter.warn('something odd');
  assert.match(tty.text(), /\r\x1b\[Kwarning: something odd\n$/);
  const pipe = fakeTerminal(false);
  new TerminalReporter(pipe).progress({ phase: 'backup', done: 1, total: 2, unit: 'bytes' });
  assert.equal(pipe.text(), '');
  // Whether progress is shown at all, so that work done only for it can be skipped.
  assert.equal(reporter.showsProgress, true);
  assert.equal(new TerminalReporter(pipe).showsProgress, false);
  assert.equal(new TerminalReporter(fakeTerminal(true), { quiet: true }).showsProgress, false);
});

test('table() aligns columns under upper-case headers', () => {
  assert.equal(table([{ a: 'x', b: 1 }, { a: 'longer', b: 22 }], ['a', 'b']), 'A       B\nx       1\nlonger  22');
  // A column marked optional ("problem?") shows only when some row has a value for it.
  assert.equal(table([{ a: 'x' }, { a: 'y', problem: '' }], ['a', 'problem?']), 'A\nx\ny');
  assert.equal(table([{ a: 'x' }, { a: 'y', problem: 'bad' }], ['a', 'problem?']), 'A  PROBLEM\nx\ny  bad');
});

test('snapshot list shows the archives a restore takes, not the stored files; the namespace column once a row has one', async () => {
  const { COMMANDS } = await import('./commands.ts');
  const command = COMMANDS.find((c) => c.path.join(' ') === 'snapshot list');
  const row = { snapshot: 'host/web1/2026-11-01T00:00:00Z', namespace: '', group: 'host/web1', time: '2026-11-01T00:00:00Z', size: 1024, encrypted: false, protected: false, verifyState: 'ok' };
  const files = ['root.tar.payload.didx', 'root.tar.catalog.didx', 'disk.img.fidx', 'client.log.blob'];
  const text = (command?.text as (r: unknown) => string)([{ ...row, files, archives: ['root.tar', 'disk.img'] }]);
  assert.match(text, /ARCHIVES/);
  assert.match(text, /root\.tar,disk\.img/);
  assert.doesNotMatch(text, /payload|NAMESPACE/);
  const nested = (command?.text as (r: unknown) => string)([{ ...row, files, archives: ['root.tar'] }, { ...row, namespace: 'site-a/team', files, archives: ['root.tar'] }]);
  assert.match(nested, /NAMESPACE/);
  assert.match(nested, /site-a\/team/);
});
