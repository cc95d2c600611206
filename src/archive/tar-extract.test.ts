import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assembleTar, catalogEntries, createArchiveStream, extractTarInWorker } from './index.ts';
import { encodeHeader, END_OF_ARCHIVE, padding, type TarEntry } from './tar-format.ts';

/** The tar stream of `dir` in one buffer, as a restore makes it from an archive's catalog and payload. */
async function tarOf(dir: string): Promise<Buffer> {
  const { stream, result } = createArchiveStream(dir);
  const payload = Buffer.concat([...stream].map((p) => p as Buffer));
  const catalog = Buffer.concat(result.catalog.pieces()).toString();
  const chunks = (async function* () {
    yield { index: 0, data: payload };
  })();
  const pieces: Buffer[] = [];
  for await (const piece of assembleTar(catalogEntries(catalog, [payload.length], chunks, 'test'))) pieces.push(piece);
  return Buffer.concat(pieces);
}

/**
 * `tar` cut into pieces of varied sizes (most records span two or more), some of them slices of one larger
 * buffer (the thread gets copies) and some whole buffers (they move to the thread).
 */
async function* cut(tar: Buffer): AsyncGenerator<Uint8Array> {
  const sizes = [1, 511, 513, 4096, 777, 100_000, 3, 2 * 1024 * 1024 + 5, 1024];
  for (let pos = 0, i = 0; pos < tar.length; i++) {
    const size = sizes[i % sizes.length] as number;
    const slice = tar.subarray(pos, pos + size);
    yield i % 2 === 0 ? slice : Buffer.from(slice);
    pos += size;
  }
}

/** Path, type, mode, mtime, content or link target of every entry under `dir`. */
function describe(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const path = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(dir, path));
    const what = st.isSymbolicLink() ? `-> ${readlinkSync(join(dir, path))}` : st.isFile() ? `${st.size} ${readFileSync(join(dir, path)).toString('hex').slice(0, 64)} nlink ${st.nlink}` : 'dir';
    out.push(`${path} ${(st.mode & 0o7777).toString(8)} ${st.isSymbolicLink() ? '' : Math.floor(st.mtimeMs)} ${what}`);
    if (st.isDirectory()) out.push(...describe(dir, path));
  }
  return out;
}

/** A tar stream of the given entries (with data for files), ended. */
function tarFrom(entries: Array<Partial<TarEntry> & { path: string; type: TarEntry['type']; data?: Buffer }>): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data ?? Buffer.alloc(0);
    parts.push(encodeHeader({ mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000, mtimeNs: 0, linkname: '', ...e, size: e.type === 'file' ? data.length : 0 }), data, Buffer.alloc(padding(data.length)));
  }
  return Buffer.concat([...parts, Buffer.from(END_OF_ARCHIVE)]);
}

test('on its own thread, a tree is restored whole from pieces cut anywhere: contents, modes, mtimes, links; progress counts every byte', async () => {
  const work = mkdtempSync(join(tmpdir(), 'ibs-extract-'));
  try {
    const src = join(work, 'src');
    mkdirSync(join(src, 'a', 'b', 'empty'), { recursive: true });
    for (let i = 0; i < 200; i++) writeFileSync(join(src, 'a', `f${i}`), randomBytes(i * 53));
    writeFileSync(join(src, 'a', 'b', 'large'), randomBytes(5 * 1024 * 1024 + 7));
    writeFileSync(join(src, 'ro'), 'read only');
    chmodSync(join(src, 'ro'), 0o444);
    writeFileSync(join(src, 'setgid'), 'x');
    chmodSync(join(src, 'setgid'), 0o2755);
    chmodSync(join(src, 'a', 'b'), 0o750);
    linkSync(join(src, 'a', 'b', 'large'), join(src, 'hard'));
    symlinkSync('a/b/large', join(src, 'link'));
    utimesSync(join(src, 'a'), 1_600_000_000, 1_600_000_000);
    const tar = await tarOf(src);
    let progress = 0;
    const warnings: string[] = [];
    const result = await extractTarInWorker(cut(tar), join(work, 'out'), { onBytes: (n) => (progress += n), onWarning: (w) => warnings.push(w) });
    assert.deepEqual(describe(join(work, 'out')), describe(src));
    assert.equal(result.entries, 208);
    const bytes = 200 * 199 * 53 / 2 + 5 * 1024 * 1024 + 7 + 'read only'.length + 1;
    assert.equal(result.bytes, bytes);
    assert.equal(progress, bytes);
    assert.deepEqual(warnings, []);

    // Handed over, pieces that are views of a buffer of their own (as decoded chunks are: one spare byte) move
    // to the thread whole, without a copy: here they read as empty afterwards.
    const sent: Uint8Array[] = [];
    async function* own(): AsyncGenerator<Uint8Array> {
      for await (const piece of cut(tar)) {
        const memory = Buffer.allocUnsafeSlow(piece.length + 1);
        memory.set(piece);
        sent.push(memory.subarray(0, piece.length));
        yield sent.at(-1) as Uint8Array;
      }
    }
    await extractTarInWorker(own(), join(work, 'moved'), { handOver: true });
    assert.deepEqual(describe(join(work, 'moved')), describe(src));
    assert.ok(sent.every((piece) => piece.byteLength === 0), 'every piece moved');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('restored mtimes keep their second, millisecond and microsecond, even where a double cannot hold the nanoseconds', async () => {
  const work = mkdtempSync(join(tmpdir(), 'ibs-extract-'));
  try {
    // 999999999 ns: the nearest double is the next second; 1000100 ns sits just above a millisecond.
    const times = [0, 1, 1_000_100, 62_000_100, 999_999_999];
    const tar = tarFrom([
      ...times.map((ns) => ({ path: `f${ns}`, type: 'file' as const, mtime: 1_795_360_165, mtimeNs: ns, data: Buffer.from('x') })),
      { path: 'd', type: 'dir', mtime: 1_795_360_165, mtimeNs: 999_999_999 },
      { path: 'l', type: 'symlink', linkname: 'f1', mtime: 1_795_360_165, mtimeNs: 999_999_999 },
    ]);
    await extractTarInWorker(cut(tar), join(work, 'out'));
    for (const [path, ns] of [...times.map((ns) => [`f${ns}`, ns] as const), ['d', 999_999_999] as const, ['l', 999_999_999] as const]) {
      const restored = lstatSync(join(work, 'out', path), { bigint: true }).mtimeNs;
      assert.equal(restored / 1000n, (1_795_360_165n * 1_000_000_000n + BigInt(ns)) / 1000n, `${path}: ${restored}`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('on its own thread, entries that would land outside the target or below a symlink of the archive are refused, with nothing written there', async () => {
  const work = mkdtempSync(join(tmpdir(), 'ibs-extract-'));
  try {
    const escape = tarFrom([{ path: 'ok', type: 'file', data: Buffer.from('fine') }, { path: '../escaped', type: 'file', data: Buffer.from('bad') }]);
    await assert.rejects(extractTarInWorker(cut(escape), join(work, 'one')), { name: 'IbsError', code: 'CORRUPT', message: 'Archive entry "../escaped" would be written outside the target directory' });
    assert.equal(existsSync(join(work, 'escaped')), false);
    mkdirSync(join(work, 'elsewhere'));
    const below = tarFrom([{ path: 'l', type: 'symlink', linkname: join(work, 'elsewhere') }, { path: 'l/planted', type: 'file', data: Buffer.from('bad') }]);
    await assert.rejects(extractTarInWorker(cut(below), join(work, 'two')), { name: 'IbsError', code: 'CORRUPT', message: 'Archive entry "l/planted" lies below the symlink "l"' });
    assert.deepEqual(readdirSync(join(work, 'elsewhere')), []);
    // Deeper: a symlink inside a directory, an entry two levels below it (with the directory form "x/").
    const deeper = tarFrom([
      { path: 'd', type: 'dir' },
      { path: 'd/l', type: 'symlink', linkname: join(work, 'elsewhere') },
      { path: 'd/l/x/', type: 'dir' },
      { path: 'd/l/x/planted', type: 'file', data: Buffer.from('bad') },
    ]);
    await assert.rejects(extractTarInWorker(cut(deeper), join(work, 'four')), { name: 'IbsError', code: 'CORRUPT', message: 'Archive entry "d/l/x" lies below the symlink "d/l"' });
    assert.deepEqual(readdirSync(join(work, 'elsewhere')), []);
    // A hard link whose target is not in the restored set: skipped with a warning that comes back.
    const warnings: string[] = [];
    const orphan = tarFrom([{ path: 'h', type: 'hardlink', linkname: 'missing' }]);
    await extractTarInWorker(cut(orphan), join(work, 'three'), { onWarning: (w) => warnings.push(w) });
    assert.deepEqual(warnings, ['h: hard link target "missing" is not in the restored set; skipped']);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('on its own thread: an abort, or a source that fails midway, ends the restore and its thread', async () => {
  const work = mkdtempSync(join(tmpdir(), 'ibs-extract-'));
  try {
    const tar = tarFrom(Array.from({ length: 40 }, (_, i) => ({ path: `f${i}`, type: 'file' as const, data: Buffer.alloc(512 * 1024, i) })));
    const controller = new AbortController();
    const reason = new Error('stopped by the test');
    async function* aborting(): AsyncGenerator<Uint8Array> {
      let n = 0;
      for await (const piece of cut(tar)) {
        if (++n === 5) controller.abort(reason);
        yield piece;
      }
    }
    await assert.rejects(extractTarInWorker(aborting(), join(work, 'a'), { signal: controller.signal }), reason);
    const broken = new Error('chunk unreadable');
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield tar.subarray(0, 100_000);
      throw broken;
    }
    await assert.rejects(extractTarInWorker(failing(), join(work, 'b')), broken);
    // Were a thread left running, it would hold the test process open and the run would time out.
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
