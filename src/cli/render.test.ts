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
});
