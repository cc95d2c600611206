import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { apiReference } from '../scripts/api-doc.ts';
import { cliReference } from '../scripts/cli-doc.ts';
import { ROOT } from './helpers.ts';

test('docs/cli.md is the reference generated from the command table', async () => {
  const committed = await readFile(join(ROOT, 'docs', 'cli.md'), 'utf8');
  assert.equal(committed, cliReference(), 'run: node scripts/cli-doc.ts > docs/cli.md');
});

test('docs/api.md is the reference generated from the route table', async () => {
  const committed = await readFile(join(ROOT, 'docs', 'api.md'), 'utf8');
  assert.equal(committed, apiReference(), 'run: node scripts/api-doc.ts > docs/api.md');
});

test('every README walkthrough command names an existing command', async () => {
  const { COMMANDS } = await import('../src/cli/index.ts');
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  // `server` is added by the composition root (src/bin), not the command table.
  const known = new Set([...COMMANDS.map((c) => c.path.join(' ')), 'server']);
  for (const m of readme.matchAll(/\$ibs ([a-z-]+)(?: ([a-z-]+))?/g)) {
    const two = `${m[1]} ${m[2] ?? ''}`.trim();
    assert.ok(known.has(two) || known.has(m[1] as string), `README uses unknown command "${two}"`);
  }
});
