import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IbsError } from '../core/index.ts';
import { RemotesConfig } from './remotes-config.ts';

const FP = Array.from({ length: 32 }, (_, i) => i.toString(16).padStart(2, '0')).join(':');

test('remotes: a setting edited by hand into something invalid is named when read; the others still read; remote update corrects it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ibs-remotes-'));
  try {
    const remotes = new RemotesConfig(dir);
    await remotes.add({ name: 'site-a', host: '127.0.0.1', port: 8007, authId: 'sync@ibs!a', fingerprint: FP }, 'secret-a');
    await remotes.add({ name: 'site-b', host: '127.0.0.1', port: 8007, authId: 'sync@ibs!b', fingerprint: FP }, 'secret-b');
    const path = join(dir, 'remote.cfg');
    const stored = await readFile(path, 'utf8');
    const corrupt = (code: string, ...parts: string[]) => (e: unknown) => e instanceof IbsError && e.code === code && parts.every((p) => e.message.includes(p));
    // A port that is not a number, then a fingerprint cut short: each is named with the file and the remote.
    await writeFile(path, stored.replace(/(remote: site-b\n(?:\t.*\n)*?\tport )8007/, '$1eighty'));
    await assert.rejects(remotes.list(), corrupt('CORRUPT', path, 'remote "site-b" is invalid', 'Invalid port "eighty"', 'remote update --name site-b'));
    await writeFile(path, stored.replace(/(remote: site-b\n(?:\t.*\n)*?\tfingerprint )([0-9a-f:]+)/, '$1aa:bb'));
    await assert.rejects(remotes.list(), corrupt('CORRUPT', 'remote "site-b" is invalid', 'aa:bb'));
    // The other remote still reads on its own; the broken one is corrected by an update.
    assert.equal((await remotes.get('site-a')).name, 'site-a');
    await assert.rejects(remotes.get('site-b'), corrupt('CORRUPT', 'site-b'));
    await remotes.update('site-b', { fingerprint: FP });
    assert.deepEqual((await remotes.list()).map((r) => r.name), ['site-a', 'site-b']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
