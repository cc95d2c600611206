import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ENTRY, ibs, startServer, tempDir } from './helpers.ts';

/** Runs `masterkey unlock --interactive` on a pseudo-terminal (util-linux `script`) and types the passphrase at its prompt. */
function unlockOnTerminal(home: string, passphrase: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const command = `'${process.execPath}' --no-warnings '${ENTRY}' masterkey unlock --interactive`;
    const child = spawn('script', ['-qec', command, '/dev/null'], { env: { ...process.env, IRONCORE_HOME: home }, stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    let typed = false;
    const onData = (d: Buffer): void => {
      output += d.toString();
      if (!typed && output.includes('Passphrase of master key')) {
        typed = true;
        child.stdin.write(`${passphrase}\r`);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, output });
    });
  });
}

test('master key: a server whose unlock file is missing starts locked, jobs with server keys fail naming the fix, "masterkey unlock --interactive" unlocks it', async () => {
  const dir = await tempDir('ibs-masterkey-');
  const home = join(dir.path, 'home');
  const unlockFile = join(dir.path, 'usb', 'master.key');
  const must = async (args: string[], env: Record<string, string> = {}): Promise<string> => {
    const r = await ibs(home, args, env);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    await mkdir(join(dir.path, 'data'), { recursive: true });
    await mkdir(join(dir.path, 'usb'));
    await writeFile(join(dir.path, 'data', 'a.txt'), 'some data\n');
    for (const s of ['s1', 's2']) await must(['datastore', 'create', s]);
    await must(['backup', 'create', '--quiet', '--store', 's1', '--id', 'h1', `root.tar:${join(dir.path, 'data')}`]);
    await must(['key', 'create', '--name', 'k1']);
    const created = await must(['masterkey', 'create', '--unlock-file', unlockFile], { IBS_MASTER_PASSPHRASE: 'master pass 123' });
    assert.match(created, /server keys wrapped: k1/);
    await must(['sync', 'create', '--name', 'j1', '--store', 's1', '--remote-store', 's2', '--direction', 'push', '--encrypt-on-push', '--active-encryption-key', 'k1']);

    // A key left in the clear (a "masterkey create" cut short before wrapping it) is wrapped once unlocked.
    await must(['key', 'create', join(dir.path, 'clear.key'), '--kdf', 'none']);
    await copyFile(join(dir.path, 'clear.key'), join(home, 'etc', 'keys', 'k2.key'));
    const kdfOf = async (name: string): Promise<string> => (JSON.parse(await readFile(join(home, 'etc', 'keys', `${name}.key`), 'utf8')) as { kdf: { name: string } }).kdf.name;
    assert.equal(await kdfOf('k2'), 'none');

    // The unlock file's medium is gone: the server starts, locked, and says so.
    await rename(unlockFile, `${unlockFile}.away`);
    server = await startServer(home);
    assert.match(server.output(), /master key [0-9a-f:]{95} is locked \(unlock file .*master\.key: not found\).*masterkey unlock --interactive/);
    assert.match(await must(['status', '--services']), /master key [0-9a-f:]{95}: LOCKED \(unlock file .*master\.key: not found\): .*masterkey unlock --interactive/);
    assert.match(await must(['masterkey', 'status']), /reason: +unlock file .*not found/);
    const failed = await ibs(home, ['sync', 'run', '--name', 'j1']);
    assert.notEqual(failed.code, 0);
    assert.match(failed.stderr, /master key [0-9a-f:]{95} that protects the server keys is locked .*"ironcore-backup masterkey unlock --interactive"/);
    assert.equal(JSON.parse(await must(['snapshot', 'list', 's2', '--output', 'json'])).length, 0);

    // Without a terminal --interactive says what to do instead; a wrong passphrase is refused, naming the key.
    const noTerminal = await ibs(home, ['masterkey', 'unlock', '--interactive']);
    assert.equal(noTerminal.code, 2);
    assert.match(noTerminal.stderr, /--interactive asks on the terminal/);
    const wrong = await ibs(home, ['masterkey', 'unlock'], { IBS_MASTER_PASSPHRASE: 'not the passphrase' });
    assert.equal(wrong.code, 7);
    assert.match(wrong.stderr, /Wrong passphrase for the master key [0-9a-f:]{95}/);

    // The command as the troubleshooting page prints it, on a terminal.
    const unlocked = await unlockOnTerminal(home, 'master pass 123');
    assert.equal(unlocked.code, 0, unlocked.output);
    assert.match(unlocked.output, /unlocked in the server/);
    assert.doesNotMatch(unlocked.output, /master pass 123/, 'the passphrase is not echoed');
    const status = JSON.parse(await must(['masterkey', 'status', '--output', 'json'])) as Record<string, unknown>;
    assert.equal(status.server, 'running');
    assert.equal(status.unlocked, true);
    assert.equal(status.source, 'passphrase');
    assert.equal(await kdfOf('k2'), 'master');
    assert.match(await must(['status', '--services']), /master key [0-9a-f:]{95}: unlocked \(with its passphrase\)/);
    await must(['sync', 'run', '--name', 'j1']);
    const copies = JSON.parse(await must(['snapshot', 'list', 's2', '--output', 'json'])) as Array<Record<string, unknown>>;
    assert.equal(copies.length, 1);
    assert.equal(copies[0]?.encrypted, true);

    // With the medium back, the next start unlocks on its own.
    await server.stop();
    await rename(`${unlockFile}.away`, unlockFile);
    server = await startServer(home);
    assert.match(server.output(), /master key [0-9a-f:]{95} unlocked from .*master\.key/);
    await must(['backup', 'create', '--quiet', '--store', 's1', '--id', 'h1', `root.tar:${join(dir.path, 'data')}`]);
    await must(['sync', 'run', '--name', 'j1']);
    assert.equal(JSON.parse(await must(['snapshot', 'list', 's2', '--output', 'json'])).length, 2);
    // The medium changes: the key is written to the new place (from the old file, no passphrase needed).
    assert.match(await must(['masterkey', 'update', '--unlock-file', join(dir.path, 'usb', 'moved.key')]), /unlock file .*moved\.key/);
    assert.equal(JSON.parse(await readFile(join(dir.path, 'usb', 'moved.key'), 'utf8')).kdf.name, 'none');
    assert.equal((await ibs(home, ['masterkey', 'update'])).code, 2);
  } finally {
    await server?.stop();
    await dir.cleanup();
  }
});

test('a server key file that does not read: key list names it and lists the others, it can be removed, a master key wraps the others and leaves it as it is', async () => {
  const dir = await tempDir('ibs-keyfile-');
  const home = join(dir.path, 'home');
  const must = async (args: string[], env: Record<string, string> = {}): Promise<string> => {
    const r = await ibs(home, args, env);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  try {
    for (const name of ['good', 'damaged']) await must(['key', 'create', '--name', name]);
    const damaged = join(home, 'etc', 'keys', 'damaged.key');
    const text = (await readFile(damaged, 'utf8')).slice(0, 40);
    await writeFile(damaged, text);
    const listed = JSON.parse(await must(['key', 'list', '--output', 'json'])) as Array<{ name: string; fingerprint?: string; problem?: string }>;
    assert.deepEqual(listed.map((k) => [k.name, k.fingerprint !== undefined]), [['damaged', false], ['good', true]]);
    assert.match(listed[0]?.problem ?? '', /Server key file ".*damaged\.key" is not JSON.*restore the file from a copy, or remove the key \("key remove --name damaged"\)/);
    assert.match(await must(['key', 'list']), /PROBLEM/);
    const shown = await ibs(home, ['key', 'show', '--name', 'damaged']);
    assert.equal(shown.code, 6, shown.stderr);
    // The others are created and wrapped as usual; the damaged file is not rewritten.
    await must(['key', 'create', '--name', 'third']);
    assert.equal((await ibs(home, ['key', 'create', '--name', 'damaged'])).code, 4);
    const created = JSON.parse(await must(['masterkey', 'create', '--output', 'json'], { IBS_MASTER_PASSPHRASE: 'master passphrase 1234' })) as { wrapped: string[] };
    assert.deepEqual(created.wrapped, ['good', 'third']);
    assert.equal(await readFile(damaged, 'utf8'), text);
    await must(['key', 'remove', '--name', 'damaged']);
    assert.deepEqual((JSON.parse(await must(['key', 'list', '--output', 'json'])) as Array<{ name: string; problem?: string }>).map((k) => [k.name, k.problem]), [['good', undefined], ['third', undefined]]);
  } finally {
    await dir.cleanup();
  }
});
