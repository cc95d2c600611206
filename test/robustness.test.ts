import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ibs, startIbs, tempDir } from './helpers.ts';

let work: { path: string; cleanup: () => Promise<void> };
let home: string;
let src: string;
let storePath: string;

before(async () => {
  work = await tempDir('ibs-rob-');
  home = join(work.path, 'home');
  src = join(work.path, 'src');
  await mkdir(src);
  for (let i = 0; i < 16; i++) await writeFile(join(src, `file${String(i).padStart(2, '0')}.bin`), randomBytes(2 * 1024 * 1024 + i));
  const created = await ibs(home, ['datastore', 'create', 'store1', '--output', 'json']);
  assert.equal(created.code, 0, created.stderr);
  storePath = JSON.parse(created.stdout).path;
});
after(() => work.cleanup());

async function treeState(root: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(dir: string): Promise<void> {
    for (const name of (await readdir(dir).catch(() => [])).sort()) {
      const full = join(dir, name);
      const st = await stat(full);
      out.push(`${full} ${st.size} ${st.mtimeMs}`);
      if (st.isDirectory()) await walk(full);
    }
  }
  await walk(root);
  return out;
}

test('bad input: every malformed command prints one clear line, exits non-zero and writes nothing', async () => {
  const unreadable = join(work.path, 'unreadable');
  await mkdir(unreadable);
  await chmod(unreadable, 0o000);
  const cases: Array<[string[], RegExp]> = [
    [['datastore', 'create', '../evil'], /Invalid datastore name "..\/evil": expected/],
    [['datastore', 'create', 'store1'], /already configured/],
    [['datastore', 'create', 'x1', '/etc'], /not empty/],
    [['datastore', 'show', 'nosuchstore'], /Datastore "nosuchstore" is not configured/],
    [['datastore', 'create'], /takes 1 to 2 argument/],
    [['datastore', 'list', '--bogus'], /Unknown option '--bogus'/],
    [['backup', 'create', '--store', 'nosuch', `root.tar:${src}`], /Datastore "nosuch" is not configured/],
    // A tree big enough that the sizing walk is still running when the store name is refused.
    [['backup', 'create', '--store', 'p', `root.tar:${join(import.meta.dirname, '..', 'node_modules')}`], /Invalid datastore name "p": expected 2 to 32 characters/],
    [['backup', 'create', '--store', 'store1', '--id', 'a/b', `root.tar:${src}`], /Invalid backup id "a\/b"/],
    [['backup', 'create', '--store', 'store1', '--type', 'server', `root.tar:${src}`], /Invalid backup type "server": expected one of vm, ct, host/],
    [['backup', 'create', '--store', 'store1', '--time', 'yesterday', `root.tar:${src}`], /Invalid backup time "yesterday"/],
    [['backup', 'create', '--store', 'store1', `root.zip:${src}`], /Invalid archive name "root.zip"/],
    [['backup', 'create', '--store', 'store1', `root.tar:${join(work.path, 'missing')}`], /no such file or directory/],
    [['backup', 'create', '--store', 'store1', `root.img:${src}`], /needs a file or block device/],
    [['backup', 'create', '--store', 'store1', '--ns', 'a/../b', `root.tar:${src}`], /Invalid namespace "a\/..\/b"/],
    [['backup', 'create', '--store', 'store1', '--ns', 'nosuchns', `root.tar:${src}`], /Namespace "nosuchns" does not exist/],
    [['backup', 'create', '--store', 'store1', '--keyfile', join(work.path, 'nokey.json'), `root.tar:${src}`], /Cannot read key file .*no such file/],
    [['backup', 'restore', 'host/x/2026-01-01T00:00:00Z', 'root.tar', join(work.path, 'r'), '--store', 'store1'], /Snapshot host\/x\/2026-01-01T00:00:00Z does not exist/],
    [['backup', 'restore', 'host/x', 'root.tar', join(work.path, 'r'), '--store', 'store1'], /expected \[NAMESPACE:\]TYPE\/ID\/TIME/],
    [['verify', 'start', 'store1', '--outdated-after=-3'], /Invalid --outdated-after/],
    [['verify', 'start', 'store1', '--outdated-after', '-3'], /argument is ambiguous/],
    [['prune', 'store1', 'host/x'], /No retention given/],
    [['prune', 'store1', 'host/x', '--keep-last', 'many'], /Invalid --keep-last "many"/],
    [['snapshot', 'forget', 'store1', 'host/none/2026-01-01T00:00:00Z'], /does not exist/],
    [['key', 'import', '--paperkey', join(work.path, 'missing.txt'), join(work.path, 'k.json')], /Cannot read/],
    [['nosuchcommand'], /Unknown command "nosuchcommand"/],
    [['calendar', 'sunday funday'], /Invalid calendar event "sunday funday"/],
    [['task', 'list'], /The server is not running \(no admin socket at /],
    [['calendar', 'daily', '--from', 'tomorrow'], /Invalid --from "tomorrow"/],
    [['datastore', 'list', '--output', 'yaml'], /Invalid --output "yaml": expected text or json/],
  ];
  if (process.getuid?.() !== 0) cases.push([['backup', 'create', '--store', 'store1', `root.tar:${unreadable}`], /Cannot read directory/]);
  for (const [args, pattern] of cases) {
    const before = await treeState(home);
    const r = await ibs(home, args);
    assert.notEqual(r.code, 0, `${args.join(' ')} should fail`);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `${args.join(' ')}: one line expected, got:\n${r.stderr}`);
    assert.match(lines[0] as string, /^Error: /);
    assert.match(r.stderr, pattern, args.join(' '));
    assert.deepEqual(await treeState(home), before, `${args.join(' ')} changed files`);
  }
  const json = await ibs(home, ['datastore', 'show', 'nosuch', '--output', 'json']);
  assert.equal(JSON.parse(json.stderr).error.code, 'NOT_FOUND');
  assert.equal(json.code, 3);
  await chmod(unreadable, 0o755);
});

test('kill -9 of a backup at 22 random points: no partial snapshot is visible, verify passes, the next backup reuses chunks', async () => {
  // Calibrate under the conditions of the runs below: a new group each time (no previous snapshot), with the
  // chunks already in the store (the first run writes them; later ones only find and touch them).
  const first = await ibs(home, ['backup', 'create', '--quiet', '--store', 'store1', '--id', 'calibrate-0', `root.tar:${src}`]);
  assert.equal(first.code, 0, first.stderr);
  const t0 = Date.now();
  const calibration = await ibs(home, ['backup', 'create', '--quiet', '--store', 'store1', '--id', 'calibrate', `root.tar:${src}`]);
  assert.equal(calibration.code, 0, calibration.stderr);
  // Other test files share the cores: a run that ends before its kill shows how long a run takes now, and
  // later delays follow it, so that the kills keep landing midway when the machine gets faster.
  let duration = Date.now() - t0;
  const calibrated = duration;
  let killedMidway = 0;
  for (let i = 0; i < 22; i++) {
    // A new group each time, so that no run can skip work by reusing a previous snapshot's chunk list.
    const started = Date.now();
    const child = startIbs(home, ['backup', 'create', '--quiet', '--store', 'store1', '--id', `crash-${i}`, '--time', '2026-10-01T00:00:00Z', `root.tar:${src}`]);
    const delay = Math.floor(duration * (0.05 + Math.random() * 0.65));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const timer = setTimeout(() => child.kill('SIGKILL'), delay);
    const code = await exited;
    clearTimeout(timer);
    if (code === 0) duration = Math.min(duration, Date.now() - started);
    if (code !== null) assert.equal(code, 0, `run ${i} failed on its own`);
    const list = await ibs(home, ['snapshot', 'list', 'store1', `host/crash-${i}`, '--output', 'json']);
    assert.equal(list.code, 0, list.stderr);
    const visible = JSON.parse(list.stdout) as Array<{ snapshot: string }>;
    if (code === 0) assert.equal(visible.length, 1, `run ${i} finished but its snapshot is not visible`);
    if (code === null && visible.length === 0) killedMidway++;
    // A run killed after writing its manifest (while exiting) shows a snapshot: it must be complete.
    for (const snap of visible) {
      const v = await ibs(home, ['verify', 'start', 'store1', '--snapshot', snap.snapshot]);
      assert.equal(v.code, 0, `run ${i}: ${snap.snapshot} visible but not complete: ${v.stderr}`);
    }
  }
  assert.ok(killedMidway >= 12, `only ${killedMidway} of 22 runs were killed midway (calibrated run took ${calibrated} ms, the fastest run ${duration} ms)`);
  const verify = await ibs(home, ['verify', 'start', 'store1']);
  assert.equal(verify.code, 0, verify.stderr);
  const last = await ibs(home, ['backup', 'create', '--store', 'store1', '--id', 'crash-final', '--time', '2026-10-02T00:00:00Z', '--output', 'json', `root.tar:${src}`]);
  assert.equal(last.code, 0, last.stderr);
  const stats = JSON.parse(last.stdout).archives[0];
  assert.equal(stats.newChunks, 0, `every chunk was already written by earlier runs: ${JSON.stringify(stats)}`);
  const restored = join(work.path, 'after-crash');
  const r = await ibs(home, ['backup', 'restore', 'host/crash-final/2026-10-02T00:00:00Z', 'root.tar', restored, '--store', 'store1']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await readFile(join(restored, 'file07.bin')), await readFile(join(src, 'file07.bin')));
});

test('kill -9 of the first backup into an empty group leaves chunks that the next run reuses', async () => {
  const fresh = join(work.path, 'fresh');
  await mkdir(fresh);
  for (let i = 0; i < 12; i++) await writeFile(join(fresh, `g${i}.bin`), randomBytes(2 * 1024 * 1024));
  const child = startIbs(home, ['backup', 'create', '--quiet', '--store', 'store1', '--id', 'resume', `root.tar:${fresh}`]);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // Kill once some chunks of this data are on disk.
  const before = new Set<string>();
  for (const d of await readdir(join(storePath, '.chunks'))) for (const c of await readdir(join(storePath, '.chunks', d))) before.add(c);
  let written = 0;
  for (let i = 0; i < 400 && written < 3; i++) {
    await new Promise((r) => setTimeout(r, 10));
    written = 0;
    for (const d of await readdir(join(storePath, '.chunks'))) for (const c of await readdir(join(storePath, '.chunks', d))) if (!before.has(c) && !c.includes('.ibs-tmp-')) written++;
  }
  child.kill('SIGKILL');
  assert.equal(await exited, null, 'killed before it finished');
  const list = JSON.parse((await ibs(home, ['snapshot', 'list', 'store1', 'host/resume', '--output', 'json'])).stdout);
  assert.deepEqual(list, []);
  const next = await ibs(home, ['backup', 'create', '--store', 'store1', '--id', 'resume', '--output', 'json', `root.tar:${fresh}`]);
  assert.equal(next.code, 0, next.stderr);
  const stats = JSON.parse(next.stdout).archives[0];
  assert.ok(stats.reusedChunks >= written, `${written} chunks arrived before the kill; the next run reused ${stats.reusedChunks}`);
  assert.equal(stats.newChunks + stats.reusedChunks, stats.chunks);
});

test('GC run while a backup is writing: the backup commits and verifies', async () => {
  const big = join(work.path, 'big');
  await mkdir(big);
  for (let i = 0; i < 30; i++) await writeFile(join(big, `f${i}.bin`), randomBytes(3 * 1024 * 1024));
  const child = startIbs(home, ['backup', 'create', '--quiet', '--store', 'store1', '--id', 'during-gc', '--time', '2026-10-03T00:00:00Z', `root.tar:${big}`]);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // Wait until the backup holds its lease and has written chunks, then collect garbage with no margin.
  for (let i = 0; i < 200; i++) {
    const leases = (await readdir(join(storePath, '.writers')).catch(() => [])).filter((l) => l.endsWith('.json'));
    const live = [];
    for (const l of leases) {
      const text = await readFile(join(storePath, '.writers', l), 'utf8').catch(() => undefined); // may be released meanwhile
      if (text) live.push(JSON.parse(text));
    }
    if (live.some((l: { target?: string }) => l.target?.includes('during-gc'))) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  await new Promise((r) => setTimeout(r, 300));
  const gc = await ibs(home, ['gc', 'start', 'store1', '--margin-minutes', '0', '--output', 'json']);
  assert.equal(gc.code, 0, gc.stderr);
  assert.equal(await exited, 0, 'backup must commit');
  const v = await ibs(home, ['verify', 'start', 'store1', '--snapshot', 'host/during-gc/2026-10-03T00:00:00Z']);
  assert.equal(v.code, 0, v.stderr);
});

test('a flipped byte in a chunk: verify names the chunk and every snapshot using it and exits non-zero; restore fails loudly', async () => {
  const data = join(work.path, 'flip');
  await mkdir(data);
  await writeFile(join(data, 'payload.bin'), randomBytes(1024 * 1024));
  for (const t of ['2026-09-01T00:00:00Z', '2026-09-02T00:00:00Z']) {
    const b = await ibs(home, ['backup', 'create', '--store', 'store1', '--id', 'flip', '--time', t, `root.tar:${data}`]);
    assert.equal(b.code, 0, b.stderr);
  }
  const show = await ibs(home, ['snapshot', 'show', 'store1', 'host/flip/2026-09-01T00:00:00Z', '--output', 'json']);
  assert.equal(show.code, 0, show.stderr);
  const didx = await readFile(join(storePath, 'host/flip/2026-09-01T00:00:00Z/root.tar.payload.didx'));
  const digest = didx.subarray(64 + 8, 64 + 40).toString('hex');
  const chunkFile = join(storePath, '.chunks', digest.slice(0, 4), digest);
  const blob = await readFile(chunkFile);
  blob[blob.length - 100] = (blob[blob.length - 100] as number) ^ 0x01;
  await writeFile(chunkFile, blob);
  const restore = await ibs(home, ['backup', 'restore', 'host/flip/2026-09-02T00:00:00Z', 'root.tar', join(work.path, 'flip-out'), '--store', 'store1']);
  assert.equal(restore.code, 6, restore.stderr);
  assert.match(restore.stderr, new RegExp(digest));
  const verify = await ibs(home, ['verify', 'start', 'store1', '--snapshot', 'host/flip/2026-09-02T00:00:00Z']);
  assert.equal(verify.code, 13, verify.stderr);
  assert.match(verify.stderr, new RegExp(`chunk ${digest}`));
  assert.match(verify.stderr, /host\/flip\/2026-09-01T00:00:00Z/);
  assert.match(verify.stderr, /host\/flip\/2026-09-02T00:00:00Z/);
  const list = JSON.parse((await ibs(home, ['snapshot', 'list', 'store1', 'host/flip', '--output', 'json'])).stdout) as Array<{ verifyState: string }>;
  assert.deepEqual(list.map((s) => s.verifyState), ['failed', 'failed']);
});

test('a damaged manifest: the listing shows that snapshot as damaged and every other one; verify fails it and checks the rest; GC refuses, naming it; it can be unprotected and forgotten', async () => {
  const data = join(work.path, 'mani');
  await mkdir(data);
  await writeFile(join(data, 'payload.bin'), randomBytes(64 * 1024));
  const times = ['2026-10-01T00:00:00Z', '2026-10-02T00:00:00Z', '2026-10-03T00:00:00Z'];
  for (const t of times) {
    const b = await ibs(home, ['backup', 'create', '--store', 'store1', '--id', 'mani', '--time', t, `root.tar:${data}`]);
    assert.equal(b.code, 0, b.stderr);
  }
  const damaged = `host/mani/${times[1]}`;
  assert.equal((await ibs(home, ['snapshot', 'protect', 'store1', damaged])).code, 0);
  await writeFile(join(storePath, damaged, 'index.json'), '{"format": 1, "backup-type": "ho');

  const list = await ibs(home, ['snapshot', 'list', 'store1', 'host/mani', '--output', 'json']);
  assert.equal(list.code, 0, list.stderr);
  const rows = JSON.parse(list.stdout) as Array<{ snapshot: string; verifyState: string; protected: boolean; damaged?: string }>;
  assert.deepEqual(rows.map((r) => [r.snapshot, r.verifyState]), [[`host/mani/${times[2]}`, 'none'], [damaged, 'damaged'], [`host/mani/${times[0]}`, 'none']]);
  assert.equal(rows[1]?.protected, true);
  assert.match(rows[1]?.damaged ?? '', /not valid JSON.*snapshot forget/);
  const groups = await ibs(home, ['group', 'list', 'store1', '--output', 'json']);
  assert.equal(groups.code, 0, groups.stderr);
  assert.equal((JSON.parse(groups.stdout) as Array<{ group: string; snapshots: number }>).find((g) => g.group === 'host/mani')?.snapshots, 3);
  const text = await ibs(home, ['snapshot', 'list', 'store1', 'host/mani']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, new RegExp(`${damaged}: Manifest of ${damaged}: not valid JSON`));

  const verify = await ibs(home, ['verify', 'start', 'store1']);
  assert.equal(verify.code, 13, verify.stderr);
  assert.match(verify.stderr, new RegExp(`${damaged}: Manifest of ${damaged}: not valid JSON`));
  const after = JSON.parse((await ibs(home, ['snapshot', 'list', 'store1', 'host/mani', '--output', 'json'])).stdout) as Array<{ verifyState: string }>;
  assert.deepEqual(after.map((r) => r.verifyState), ['ok', 'damaged', 'ok'], 'the others were verified');

  // What acts on the whole datastore stops rather than take the snapshot for absent (GC would remove its chunks).
  const gc = await ibs(home, ['gc', 'start', 'store1']);
  assert.equal(gc.code, 6, gc.stderr);
  assert.match(gc.stderr, /not valid JSON; the snapshot cannot be read: "snapshot forget" removes it/);

  const refused = await ibs(home, ['snapshot', 'forget', 'store1', damaged]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /protected/);
  assert.equal((await ibs(home, ['snapshot', 'unprotect', 'store1', damaged])).code, 0);
  const forget = await ibs(home, ['snapshot', 'forget', 'store1', damaged]);
  assert.equal(forget.code, 0, forget.stderr);
  const left = JSON.parse((await ibs(home, ['snapshot', 'list', 'store1', 'host/mani', '--output', 'json'])).stdout) as Array<{ snapshot: string }>;
  assert.deepEqual(left.map((r) => r.snapshot), [`host/mani/${times[2]}`, `host/mani/${times[0]}`]);
  assert.equal((await ibs(home, ['gc', 'start', 'store1'])).code, 0);
});

/** Backs up, at the time given, a small folder of its own as group host/ID of store1. */
async function backupsOf(id: string): Promise<(time: string) => Promise<void>> {
  const data = join(work.path, id);
  await mkdir(data, { recursive: true });
  await writeFile(join(data, 'payload.bin'), randomBytes(64 * 1024));
  return async (time) => {
    const b = await ibs(home, ['backup', 'create', '--store', 'store1', '--id', id, '--time', time, `root.tar:${data}`]);
    assert.equal(b.code, 0, b.stderr);
  };
}

test('a sync whose source has a snapshot that does not read copies the rest, keeps that snapshot\'s copy (remove-vanished too), and fails naming it', async () => {
  const backup = await backupsOf('mani2');
  for (const t of ['2026-10-11T00:00:00Z', '2026-10-12T00:00:00Z']) await backup(t);
  assert.equal((await ibs(home, ['datastore', 'create', 'mirror2'])).code, 0);
  const job = await ibs(home, ['sync', 'create', '--name', 'mani2', '--store', 'store1', '--remote-store', 'mirror2', '--direction', 'push', '--group-filter', 'group:host/mani2', '--remove-vanished']);
  assert.equal(job.code, 0, job.stderr);
  assert.equal((await ibs(home, ['sync', 'run', '--name', 'mani2'])).code, 0);

  const damaged = 'host/mani2/2026-10-11T00:00:00Z';
  await writeFile(join(storePath, damaged, 'index.json'), 'not json at all');
  await backup('2026-10-13T00:00:00Z');
  const run = await ibs(home, ['sync', 'run', '--name', 'mani2']);
  assert.notEqual(run.code, 0, 'the job fails, so that someone looks');
  assert.match(run.stderr, new RegExp(`Manifest of ${damaged}: not valid JSON`));
  const mirror = JSON.parse((await ibs(home, ['snapshot', 'list', 'mirror2', 'host/mani2', '--output', 'json'])).stdout) as Array<{ snapshot: string; verifyState: string }>;
  assert.deepEqual(mirror.map((r) => r.snapshot), ['host/mani2/2026-10-13T00:00:00Z', 'host/mani2/2026-10-12T00:00:00Z', damaged], 'the new one arrived; the copy of the unreadable one stayed');

  // Forgotten on the source and brought back from the mirror by the reverse direction: whole again.
  assert.equal((await ibs(home, ['snapshot', 'forget', 'store1', damaged])).code, 0);
  assert.equal((await ibs(home, ['sync', 'create', '--name', 'mani2-back', '--store', 'store1', '--remote-store', 'mirror2', '--direction', 'pull', '--group-filter', 'group:host/mani2'])).code, 0);
  const back = await ibs(home, ['sync', 'run', '--name', 'mani2-back']);
  assert.equal(back.code, 0, back.stderr);
  const verify = await ibs(home, ['verify', 'start', 'store1', '--snapshot', damaged]);
  assert.equal(verify.code, 0, verify.stderr);
});

test('a local sync onto a copy that does not read fails naming it; with --resync-corrupt the copy is replaced from the source and verifies', async () => {
  const backup = await backupsOf('mani3');
  for (const t of ['2026-10-21T00:00:00Z', '2026-10-22T00:00:00Z']) await backup(t);
  const mirror = JSON.parse((await ibs(home, ['datastore', 'create', 'mirror3', '--output', 'json'])).stdout) as { path: string };
  assert.equal((await ibs(home, ['sync', 'create', '--name', 'mani3', '--store', 'store1', '--remote-store', 'mirror3', '--direction', 'push', '--group-filter', 'group:host/mani3'])).code, 0);
  assert.equal((await ibs(home, ['sync', 'run', '--name', 'mani3'])).code, 0);

  const damaged = 'host/mani3/2026-10-21T00:00:00Z';
  await writeFile(join(mirror.path, damaged, 'index.json'), '{"cut');
  await backup('2026-10-23T00:00:00Z');
  const run = await ibs(home, ['sync', 'run', '--name', 'mani3']);
  assert.notEqual(run.code, 0, 'the job fails, so that someone looks');
  assert.match(run.stderr, new RegExp(`Manifest of ${damaged}: not valid JSON.*--resync-corrupt`));
  const states = async (): Promise<string[]> =>
    (JSON.parse((await ibs(home, ['snapshot', 'list', 'mirror3', 'host/mani3', '--output', 'json'])).stdout) as Array<{ snapshot: string; verifyState?: string }>).map((r) => `${r.snapshot} ${r.verifyState === 'damaged' ? 'damaged' : 'reads'}`);
  assert.deepEqual(await states(), ['host/mani3/2026-10-23T00:00:00Z reads', 'host/mani3/2026-10-22T00:00:00Z reads', `${damaged} damaged`]);

  assert.equal((await ibs(home, ['sync', 'update', '--name', 'mani3', '--resync-corrupt'])).code, 0);
  const again = await ibs(home, ['sync', 'run', '--name', 'mani3']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, new RegExp(`${damaged}: copy on the target does not read; syncing it again`));
  assert.deepEqual(await states(), ['host/mani3/2026-10-23T00:00:00Z reads', 'host/mani3/2026-10-22T00:00:00Z reads', `${damaged} reads`]);
  const verify = await ibs(home, ['verify', 'start', 'mirror3']);
  assert.equal(verify.code, 0, verify.stderr);
});
