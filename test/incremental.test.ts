import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { appendFile, lstat, mkdir, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ibs, tempDir } from './helpers.ts';

let work: { path: string; cleanup: () => Promise<void> };
let home: string;
let src: string;

before(async () => {
  work = await tempDir('ibs-incr-');
  home = join(work.path, 'home');
  src = join(work.path, 'src');
  for (let d = 0; d < 6; d++) {
    await mkdir(join(src, `dir${d}`), { recursive: true });
    for (let f = 0; f < 40; f++) await writeFile(join(src, `dir${d}`, `file${f}.txt`), randomBytes(1000 + ((d * 40 + f) * 997) % 60000).toString('base64'));
  }
  await writeFile(join(src, 'big.bin'), randomBytes(6 * 1024 * 1024));
  await symlink('dir0/file0.txt', join(src, 'link'));
  assert.equal((await ibs(home, ['datastore', 'create', 'store1'])).code, 0);
});
after(() => work.cleanup());

async function digestTree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(dir: string, rel: string): Promise<void> {
    for (const name of (await readdir(dir)).sort()) {
      const full = join(dir, name);
      const path = rel ? `${rel}/${name}` : name;
      const st = await lstat(full);
      if (st.isDirectory()) {
        out.set(path, `dir ${st.mode}`);
        await walk(full, path);
      } else if (st.isSymbolicLink()) out.set(path, 'link');
      else out.set(path, `${st.mode} ${Math.round(st.mtimeMs)} ${createHash('sha256').update(await readFile(full)).digest('hex')}`);
    }
  }
  await walk(root, '');
  return out;
}

async function backupAndCheck(generation: number): Promise<{ copiedBytes: number; chunks: number; newChunks: number; reusedChunks: number; size: number }> {
  const time = `2026-11-0${generation + 1}T00:00:00Z`;
  const b = await ibs(home, ['backup', 'create', '--store', 'store1', '--id', 'incr', '--time', time, '--output', 'json', `root.tar:${src}`]);
  assert.equal(b.code, 0, b.stderr);
  const target = join(work.path, `restore-${generation}`);
  const r = await ibs(home, ['backup', 'restore', `host/incr/${time}`, 'root.tar', target, '--store', 'store1']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await digestTree(target), await digestTree(src), `generation ${generation} restores identically`);
  await rm(target, { recursive: true });
  return JSON.parse(b.stdout).archives[0];
}

test('unchanged files are taken from the previous snapshot without reading them; every generation restores identically', async () => {
  const first = await backupAndCheck(0);
  assert.equal(first.copiedBytes, 0);
  const unchanged = await backupAndCheck(1);
  assert.equal(unchanged.newChunks, 0);
  // Every chunk is taken over, the last one (with the end-of-archive marker) included.
  assert.equal(unchanged.copiedBytes, unchanged.size, 'an unchanged run reads nothing');
  assert.equal(unchanged.reusedChunks, unchanged.chunks);
  // Generations of random edits: rewrite, append, same-size rewrite with the old mtime, delete, add, metadata only.
  for (let g = 2; g < 7; g++) {
    for (let k = 0; k < 5; k++) {
      const d = Math.floor(Math.random() * 6);
      const f = Math.floor(Math.random() * 40);
      const path = join(src, `dir${d}`, `file${f}.txt`);
      const action = (g + k) % 6;
      const st = await lstat(path).catch(() => undefined);
      if (action === 0) await writeFile(path, randomBytes(3000).toString('base64'));
      else if (action === 1 && st) await appendFile(path, 'appended line\n');
      else if (action === 2 && st) {
        // Same size, same mtime: only ctime betrays the change.
        const old = await readFile(path);
        old[0] = old[0] === 65 ? 66 : 65;
        await writeFile(path, old);
        await utimes(path, st.atime, st.mtime);
      } else if (action === 3) await rm(path, { force: true });
      else if (action === 4) await writeFile(join(src, `dir${d}`, `new-${g}-${k}.txt`), `new ${g} ${k}`);
      else if (st) await utimes(path, new Date(), new Date(Date.now() - 86400_000));
    }
    const stats = await backupAndCheck(g);
    assert.ok(stats.copiedBytes > 0, `generation ${g} reused unchanged data`);
  }
});

test('change detection works for encrypted backups too: an unchanged tree is taken from the previous snapshot', async () => {
  const keyfile = join(work.path, 'inc.key');
  assert.equal((await ibs(home, ['key', 'create', keyfile, '--kdf', 'none'])).code, 0);
  const args = (time: string): string[] => ['backup', 'create', '--store', 'store1', '--id', 'enc', '--time', time, '--keyfile', keyfile, '--output', 'json', `root.tar:${src}`];
  const first = await ibs(home, args('2026-12-01T00:00:00Z'));
  assert.equal(first.code, 0, first.stderr);
  const second = await ibs(home, args('2026-12-02T00:00:00Z'));
  assert.equal(second.code, 0, second.stderr);
  const stats = JSON.parse(second.stdout).archives[0];
  assert.equal(stats.copiedBytes, stats.size, 'an unchanged encrypted run reads nothing');
});

test('a chunk of the previous snapshot lost since: the next backup fails naming it and marks that snapshot failed; the one after sends it again', async () => {
  const args = (time: string): string[] => ['backup', 'create', '--store', 'store1', '--id', 'lost', '--time', time, '--output', 'json', `root.tar:${src}`];
  const first = await ibs(home, args('2026-12-10T00:00:00Z'));
  assert.equal(first.code, 0, first.stderr);
  // Lose one chunk of the payload (as a damaged disk or a hand would), behind the datastore's back.
  const store = JSON.parse((await ibs(home, ['datastore', 'show', 'store1', '--output', 'json'])).stdout) as { path: string };
  const snap = join(store.path, 'host', 'lost', '2026-12-10T00:00:00Z');
  const index = await readFile(join(snap, 'root.tar.payload.didx'));
  const { decodeIndex, indexChunks } = await import('../src/core/index.ts');
  const digest = (indexChunks(decodeIndex(index, 'payload'))[0] as { digest: string }).digest;
  await rm(join(store.path, '.chunks', digest.slice(0, 4), digest));
  const second = await ibs(home, args('2026-12-11T00:00:00Z'));
  assert.notEqual(second.code, 0, 'no snapshot that reuses a lost chunk');
  assert.match(second.stderr, new RegExp(`reuses 1 chunk\\(s\\) of the previous snapshot host/lost/2026-12-10T00:00:00Z that are no longer stored \\(${digest}\\); that snapshot is now marked as failed verification`));
  const list = JSON.parse((await ibs(home, ['snapshot', 'list', 'store1', '--output', 'json'])).stdout) as Array<{ snapshot: string; verifyState?: string }>;
  assert.deepEqual(list.filter((s) => s.snapshot.includes('host/lost/')).map((s) => [s.snapshot, s.verifyState]), [['host/lost/2026-12-10T00:00:00Z', 'failed']]);
  const third = await ibs(home, args('2026-12-12T00:00:00Z'));
  assert.equal(third.code, 0, third.stderr);
  assert.equal(JSON.parse(third.stdout).archives[0].copiedBytes, 0, 'the tree is read again: the failed snapshot is no base');
  const target = join(work.path, 'restore-lost');
  assert.equal((await ibs(home, ['backup', 'restore', 'host/lost/2026-12-12T00:00:00Z', 'root.tar', target, '--store', 'store1'])).code, 0);
  assert.deepEqual(await digestTree(target), await digestTree(src));
  assert.equal((await ibs(home, ['verify', 'start', 'store1', '--snapshot', 'host/lost/2026-12-12T00:00:00Z'])).code, 0);
});
