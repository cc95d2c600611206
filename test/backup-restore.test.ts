import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { chmod, chown, link, lstat, mkdir, open, readdir, readFile, readlink, stat, symlink, utimes, writeFile, lutimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { Stats } from 'node:fs';
import { ibs, pageCache, sh, tempDir } from './helpers.ts';

let work: { path: string; cleanup: () => Promise<void> };
let home: string;
let src: string;
const isRoot = process.getuid?.() === 0;

/** A tree with every file type we archive and the awkward cases: long and non-ASCII names, modes, owners, ns mtimes. */
async function buildTree(root: string): Promise<void> {
  await mkdir(join(root, 'dir/sub/empty-dir'), { recursive: true });
  await writeFile(join(root, 'small.txt'), 'hello\n');
  await writeFile(join(root, 'empty'), '');
  await writeFile(join(root, 'dir/random.bin'), randomBytes(3 * 1024 * 1024 + 17));
  await writeFile(join(root, 'dir/zeros.bin'), Buffer.alloc(5 * 1024 * 1024));
  const longDir = join(root, 'd'.repeat(150), 'e'.repeat(120));
  await mkdir(longDir, { recursive: true });
  await writeFile(join(longDir, `${'f'.repeat(200)}.txt`), 'long path\n');
  await writeFile(join(root, 'ünïcödé ✓ name.txt'), 'unicode\n');
  await symlink('small.txt', join(root, 'link-to-small'));
  await symlink('/nonexistent/target', join(root, 'dangling'));
  await symlink('x'.repeat(150), join(root, 'long-link'));
  await link(join(root, 'small.txt'), join(root, 'dir/hardlink-to-small'));
  await writeFile(join(root, 'exec.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(root, 'exec.sh'), 0o755);
  await writeFile(join(root, 'setgid-sticky'), 'modes');
  await chmod(join(root, 'setgid-sticky'), 0o3640);
  await chmod(join(root, 'dir/sub'), 0o750);
  if (isRoot) {
    await chown(join(root, 'small.txt'), 1234, 5678);
    await chown(join(root, 'dir/sub'), 4321, 8765);
  }
  await utimes(join(root, 'empty'), 1_000_000_000.123456, 1_000_000_000.123456);
  await lutimes(join(root, 'link-to-small'), 1_500_000_000, 1_500_000_000);
}

interface Meta {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeUs: number;
  content?: string;
  target?: string;
  linkGroup?: string;
}

async function snapshotTree(root: string): Promise<Map<string, Meta>> {
  const out = new Map<string, Meta>();
  const inodes = new Map<bigint, string>();
  async function walk(dir: string, rel: string): Promise<void> {
    for (const name of (await readdir(dir)).sort()) {
      const full = join(dir, name);
      const path = rel ? `${rel}/${name}` : name;
      const st = await lstat(full, { bigint: true });
      const meta: Meta = {
        type: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file',
        mode: Number(st.mode & 0o7777n),
        uid: Number(st.uid),
        gid: Number(st.gid),
        size: st.isDirectory() ? 0 : Number(st.size),
        mtimeUs: Number(st.mtimeNs / 1000n),
      };
      if (st.isFile()) {
        meta.content = createHash('sha256').update(await readFile(full)).digest('hex');
        if (st.nlink > 1n) {
          meta.linkGroup = inodes.get(st.ino) ?? path;
          inodes.set(st.ino, meta.linkGroup);
        }
      }
      if (st.isSymbolicLink()) {
        meta.target = await readlink(full);
        meta.mode = 0;
      }
      out.set(path, meta);
      if (st.isDirectory()) await walk(full, path);
    }
  }
  await walk(root, '');
  return out;
}

before(async () => {
  work = await tempDir('ibs-br-');
  home = join(work.path, 'home');
  src = join(work.path, 'src');
  await buildTree(src);
  const created = await ibs(home, ['datastore', 'create', 'store1']);
  assert.equal(created.code, 0, created.stderr);
});
after(() => work.cleanup());

test('a tree with every file type, backed up and restored, is identical in bytes and metadata', async () => {
  const b = await ibs(home, ['backup', 'create', '--store', 'store1', '--id', 'files', '--time', '2026-11-01T00:00:00Z', 'root.tar:' + src]);
  assert.equal(b.code, 0, b.stderr);
  const target = join(work.path, 'restored');
  const r = await ibs(home, ['backup', 'restore', 'host/files/2026-11-01T00:00:00Z', 'root.tar', target, '--store', 'store1']);
  assert.equal(r.code, 0, r.stderr);
  const expected = await snapshotTree(src);
  const actual = await snapshotTree(target);
  assert.deepEqual([...actual.keys()], [...expected.keys()]);
  for (const [path, meta] of expected) {
    const got = actual.get(path) as Meta;
    // Node's utimes takes a double: restored mtimes are exact to about a microsecond, not to the nanosecond.
    assert.ok(Math.abs(got.mtimeUs - meta.mtimeUs) <= 1, `${path}: mtime ${got.mtimeUs} vs ${meta.mtimeUs} µs`);
    assert.deepEqual({ ...got, mtimeUs: 0 }, { ...meta, mtimeUs: 0 }, path);
  }
});

test('restored into a set-group-id directory, files keep the group the archive says (as root)', { skip: !isRoot && 'needs root' }, async () => {
  // The first test made the snapshot. A set-group-id target hands its group to new files: restore must chown them.
  const target = join(work.path, 'restored-setgid');
  await mkdir(target);
  await chown(target, 0, 4242);
  await chmod(target, 0o2775);
  const r = await ibs(home, ['backup', 'restore', 'host/files/2026-11-01T00:00:00Z', 'root.tar', target, '--store', 'store1']);
  assert.equal(r.code, 0, r.stderr);
  const expected = await snapshotTree(src);
  const actual = await snapshotTree(target);
  for (const [path, meta] of expected) assert.deepEqual([actual.get(path)?.uid, actual.get(path)?.gid, actual.get(path)?.mode], [meta.uid, meta.gid, meta.mode], path);
});

test('the --to - stream is a tar that GNU tar lists and compares identically', async () => {
  const stream = await sh(`${JSON.stringify(process.execPath)} --no-warnings src/bin/ironcore-backup.ts backup restore host/files/2026-11-01T00:00:00Z root.tar - --store store1 | tar -tf - | LC_ALL=C sort`, { env: { IRONCORE_HOME: home } });
  assert.equal(stream.code, 0, stream.stderr);
  const direct = await sh(`cd ${JSON.stringify(src)} && tar --format=posix -cf - * | tar -tf - | LC_ALL=C sort`);
  assert.equal(direct.code, 0, direct.stderr);
  assert.equal(stream.stdout, direct.stdout);
  const compare = await sh(`${JSON.stringify(process.execPath)} --no-warnings src/bin/ironcore-backup.ts backup restore host/files/2026-11-01T00:00:00Z root.tar - --store store1 | tar -d -C ${JSON.stringify(src)} -f -`, { env: { IRONCORE_HOME: home } });
  assert.equal(compare.code, 0, compare.stdout + compare.stderr);
});

test('--path restores one subtree (and a single file) without the rest', async () => {
  const target = join(work.path, 'partial');
  const r = await ibs(home, ['backup', 'restore', 'host/files/2026-11-01T00:00:00Z', 'root.tar', target, '--store', 'store1', '--path', 'dir/sub']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((await readdir(target)).sort(), ['dir']);
  assert.deepEqual((await readdir(join(target, 'dir'))).sort(), ['sub']);
  const single = join(work.path, 'single');
  const s = await ibs(home, ['backup', 'restore', 'host/files/2026-11-01T00:00:00Z', 'root.tar', single, '--store', 'store1', '--path', 'dir/random.bin']);
  assert.equal(s.code, 0, s.stderr);
  assert.deepEqual(await readFile(join(single, 'dir/random.bin')), await readFile(join(src, 'dir/random.bin')));
  const missing = await ibs(home, ['backup', 'restore', 'host/files/2026-11-01T00:00:00Z', 'root.tar', join(work.path, 'x'), '--store', 'store1', '--path', 'no/such']);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /Path "no\/such" is not in the archive/);
});

test('an image backs up in fixed chunks and restores to an identical file; a second backup reuses every chunk', async () => {
  const image = join(work.path, 'disk.raw');
  await writeFile(image, Buffer.concat([Buffer.alloc(6 << 20), randomBytes(3 << 20), Buffer.from('tail')]));
  const b = await ibs(home, ['backup', 'create', '--store', 'store1', '--type', 'vm', '--id', '100', '--time', '2026-11-01T00:00:00Z', '--output', 'json', `disk.img:${image}`]);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(JSON.parse(b.stdout).archives[0].chunks, 3);
  const again = await ibs(home, ['backup', 'create', '--store', 'store1', '--type', 'vm', '--id', '100', '--time', '2026-11-02T00:00:00Z', '--output', 'json', `disk.img:${image}`]);
  assert.equal(JSON.parse(again.stdout).archives[0].newChunks, 0);
  assert.equal(JSON.parse(again.stdout).archives[0].copiedBytes, (9 << 20) + 4, 'an unchanged image file is not read again');
  const out = join(work.path, 'disk.restored');
  const r = await ibs(home, ['backup', 'restore', 'vm/100/2026-11-02T00:00:00Z', 'disk.img', out, '--store', 'store1']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await readFile(out), await readFile(image));
  // The chunk of zeros is a hole: the file holds about its 5 MiB of data (the rest of the zeros share a chunk with data).
  assert.ok((await stat(out)).blocks * 512 < 6 << 20, `restored image allocates ${(await stat(out)).blocks * 512} bytes`);
  // One changed byte (inverted: writing a fixed value left the random byte as it was once in 256 runs): the
  // image is read again and one chunk is new.
  const handle = await open(image, 'r+');
  const byte = Buffer.alloc(1);
  await handle.read(byte, 0, 1, 7 << 20);
  await handle.write(Buffer.from([~(byte[0] as number) & 0xff]), 0, 1, 7 << 20);
  await handle.close();
  const changed = await ibs(home, ['backup', 'create', '--store', 'store1', '--type', 'vm', '--id', '100', '--time', '2026-11-03T00:00:00Z', '--output', 'json', `disk.img:${image}`]);
  assert.equal(changed.code, 0, changed.stderr);
  assert.equal(JSON.parse(changed.stdout).archives[0].newChunks, 1);
  const out2 = join(work.path, 'disk.restored2');
  await ibs(home, ['backup', 'restore', 'vm/100/2026-11-03T00:00:00Z', 'disk.img', out2, '--store', 'store1']);
  assert.deepEqual(await readFile(out2), await readFile(image));
});

/** Backs `data` up as the image of vm/`id` and restores it to a new file; its path and stat. */
async function imageRoundTrip(name: string, id: number, data: Buffer): Promise<{ out: string; st: Stats }> {
  const image = join(work.path, `${name}.raw`);
  await writeFile(image, data);
  const b = await ibs(home, ['backup', 'create', '--store', 'store1', '--type', 'vm', '--id', String(id), '--time', '2026-11-01T00:00:00Z', `disk.img:${image}`]);
  assert.equal(b.code, 0, b.stderr);
  const out = join(work.path, `${name}.restored`);
  const r = await ibs(home, ['backup', 'restore', `vm/${id}/2026-11-01T00:00:00Z`, 'disk.img', out, '--store', 'store1']);
  assert.equal(r.code, 0, r.stderr);
  return { out, st: await stat(out) };
}

test('an image ending in zeros restores to its full length, its zeros left as holes', async () => {
  const data = Buffer.concat([randomBytes(4 << 20), Buffer.alloc(9 << 20)]);
  const { out, st } = await imageRoundTrip('trailing', 101, data);
  assert.equal(st.size, 13 << 20);
  assert.ok(st.blocks * 512 < 5 << 20, `restored image allocates ${st.blocks * 512} bytes`);
  assert.ok((await readFile(out)).equals(data));
});

test('an image restore writes to the device directly (none of it in the page cache), keeps its holes and an odd length, and is flushed', async (t) => {
  const data = Buffer.concat([randomBytes(4 << 20), Buffer.alloc(4 << 20), randomBytes((4 << 20) + 777)]);
  const { out, st } = await imageRoundTrip('odd', 102, data);
  assert.equal(st.size, data.length);
  assert.ok(st.blocks * 512 < 9 << 20, `restored image allocates ${st.blocks * 512} bytes`);
  // Asked before reading it back (which fills the page cache).
  const cached = await pageCache(work.path, ['odd.restored']);
  if (cached) assert.deepEqual(cached, [{ cached: 0, size: data.length }], 'no byte of the restored image in the page cache');
  else t.diagnostic('the work folder is on tmpfs: page-cache check skipped');
  assert.ok((await readFile(out)).equals(data));
});

test('encrypted backup: restores with the key, fails clearly with the wrong key or passphrase; paper key round-trips', async () => {
  const keyfile = join(work.path, 'key.json');
  const env = { IBS_PASSPHRASE: 'a good passphrase' };
  const k = await ibs(home, ['key', 'create', keyfile, '--output', 'json'], env);
  assert.equal(k.code, 0, k.stderr);
  const fingerprint = JSON.parse(k.stdout).fingerprint as string;
  const b = await ibs(home, ['backup', 'create', '--store', 'store1', '--id', 'secret', '--time', '2026-11-01T00:00:00Z', '--keyfile', keyfile, `root.tar:${join(src, 'dir')}`], env);
  assert.equal(b.code, 0, b.stderr);
  const list = await ibs(home, ['snapshot', 'list', 'store1', 'host/secret', '--output', 'json']);
  assert.equal(JSON.parse(list.stdout)[0].encrypted, true);
  const ok = await ibs(home, ['backup', 'restore', 'host/secret/2026-11-01T00:00:00Z', 'root.tar', join(work.path, 'dec'), '--store', 'store1', '--keyfile', keyfile], env);
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(await readFile(join(work.path, 'dec/random.bin')), await readFile(join(src, 'dir/random.bin')));
  const noKey = await ibs(home, ['backup', 'restore', 'host/secret/2026-11-01T00:00:00Z', 'root.tar', join(work.path, 'nokey'), '--store', 'store1']);
  assert.equal(noKey.code, 7);
  assert.match(noKey.stderr, new RegExp(fingerprint));
  const wrongPass = await ibs(home, ['backup', 'restore', 'host/secret/2026-11-01T00:00:00Z', 'root.tar', join(work.path, 'wp'), '--store', 'store1', '--keyfile', keyfile], { IBS_PASSPHRASE: 'not the passphrase' });
  assert.equal(wrongPass.code, 7);
  assert.match(wrongPass.stderr, /Wrong passphrase for key/);
  const other = join(work.path, 'other-key.json');
  await ibs(home, ['key', 'create', other, '--kdf', 'none']);
  const wrongKey = await ibs(home, ['backup', 'restore', 'host/secret/2026-11-01T00:00:00Z', 'root.tar', join(work.path, 'wk'), '--store', 'store1', '--keyfile', other]);
  assert.equal(wrongKey.code, 7);
  assert.match(wrongKey.stderr, new RegExp(`encrypted with key ${fingerprint}`));
  const paper = await ibs(home, ['key', 'paperkey', keyfile]);
  await writeFile(join(work.path, 'paper.txt'), paper.stdout);
  const imported = await ibs(home, ['key', 'import', '--paperkey', join(work.path, 'paper.txt'), join(work.path, 'imported.json'), '--output', 'json']);
  assert.equal(imported.code, 0, imported.stderr);
  assert.equal(JSON.parse(imported.stdout).fingerprint, fingerprint);
  const changed = await ibs(home, ['key', 'change-passphrase', join(work.path, 'imported.json')], { ...env, IBS_NEW_PASSPHRASE: 'another passphrase' });
  assert.equal(changed.code, 0, changed.stderr);
  const viaImported = await ibs(home, ['backup', 'restore', 'host/secret/2026-11-01T00:00:00Z', 'root.tar', join(work.path, 'dec2'), '--store', 'store1', '--keyfile', join(work.path, 'imported.json')], { IBS_PASSPHRASE: 'another passphrase' });
  assert.equal(viaImported.code, 0, viaImported.stderr);
});

test('excludes leave matching files and directories out', async () => {
  const b = await ibs(home, ['backup', 'create', '--store', 'store1', '--id', 'excl', '--time', '2026-11-01T00:00:00Z', '--exclude', '*.bin', '--exclude', '/d*/', `root.tar:${src}`]);
  assert.equal(b.code, 0, b.stderr);
  const target = join(work.path, 'excl');
  await ibs(home, ['backup', 'restore', 'host/excl/2026-11-01T00:00:00Z', 'root.tar', target, '--store', 'store1']);
  const names = [...(await snapshotTree(target)).keys()];
  assert.ok(!names.some((n) => n.endsWith('.bin')), names.join(','));
  assert.ok(!names.includes('dir') && !names.some((n) => n.startsWith('ddd')), names.join(','));
  assert.ok(names.includes('small.txt'));
});

test('an encrypted backup past 32 MiB (chunks encoded on the pool threads) restores identical, image decoded there too; verify passes', async () => {
  const keyfile = join(work.path, 'pool-key.json');
  const env = { IBS_PASSPHRASE: 'pool passphrase' };
  assert.equal((await ibs(home, ['key', 'create', keyfile], env)).code, 0);
  const big = join(work.path, 'pool-src');
  await mkdir(join(big, 'd'), { recursive: true });
  const block = randomBytes(3 << 20);
  for (let i = 0; i < 12; i++) await writeFile(join(big, 'd', `f${i}`), i % 3 === 0 ? block : i % 3 === 1 ? randomBytes(3 << 20) : Buffer.alloc(3 << 20, `line ${i}\n`));
  const image = join(work.path, 'pool.img');
  await writeFile(image, Buffer.concat([randomBytes(20 << 20), Buffer.alloc(16 << 20), block, block]));
  const b = await ibs(home, ['backup', 'create', '--store', 'store1', '--id', 'pool', '--time', '2026-11-02T00:00:00Z', '--keyfile', keyfile, '--output', 'json', `root.tar:${big}`, `disk.img:${image}`], env);
  assert.equal(b.code, 0, b.stderr);
  const archives = JSON.parse(b.stdout).archives as Array<{ name: string; reusedChunks: number }>;
  assert.ok((archives.find((a) => a.name === 'disk.img')?.reusedChunks ?? 0) >= 1, 'the repeated block of the image is stored once');
  const snap = 'host/pool/2026-11-02T00:00:00Z';
  const tree = await ibs(home, ['backup', 'restore', snap, 'root.tar', join(work.path, 'pool-out'), '--store', 'store1', '--keyfile', keyfile], env);
  assert.equal(tree.code, 0, tree.stderr);
  for (let i = 0; i < 12; i++) assert.ok((await readFile(join(work.path, 'pool-out', 'd', `f${i}`))).equals(await readFile(join(big, 'd', `f${i}`))), `f${i}`);
  const img = await ibs(home, ['backup', 'restore', snap, 'disk.img', join(work.path, 'pool-out.img'), '--store', 'store1', '--keyfile', keyfile], env);
  assert.equal(img.code, 0, img.stderr);
  assert.ok((await readFile(join(work.path, 'pool-out.img'))).equals(await readFile(image)));
  const wrong = join(work.path, 'pool-other.json');
  await ibs(home, ['key', 'create', wrong, '--kdf', 'none']);
  const refused = await ibs(home, ['backup', 'restore', snap, 'disk.img', join(work.path, 'pool-wrong.img'), '--store', 'store1', '--keyfile', wrong]);
  assert.notEqual(refused.code, 0);
  assert.equal((await ibs(home, ['verify', 'start', 'store1', '--snapshot', snap])).code, 0);
  // A chunk file replaced by another chunk of the same key would decrypt fine: the restore still refuses it,
  // since every encrypted chunk is bound to its digest (the header names the chunk it holds).
  const storePath = JSON.parse((await ibs(home, ['datastore', 'show', 'store1', '--output', 'json'])).stdout).path as string;
  const didx = await readFile(join(storePath, snap, 'root.tar.payload.didx'));
  const [first, second] = [0, 1].map((i) => didx.subarray(64 + 40 * i + 8, 64 + 40 * i + 40).toString('hex')) as [string, string];
  const chunkFile = (d: string): string => join(storePath, '.chunks', d.slice(0, 4), d);
  await writeFile(chunkFile(first), await readFile(chunkFile(second)));
  const swapped = await ibs(home, ['backup', 'restore', snap, 'root.tar', join(work.path, 'pool-swapped'), '--store', 'store1', '--keyfile', keyfile], env);
  assert.equal(swapped.code, 6, swapped.stderr);
  assert.match(swapped.stderr, new RegExp(`chunk ${first}: the blob stored under it is chunk ${second} \\(misplaced chunk\\)`));
});
