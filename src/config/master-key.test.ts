import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CryptKey, IbsError, wrapKey } from '../core/index.ts';
import { MasterKey } from './master-key.ts';
import { acquireLock } from './section-config.ts';
import { ServerKeys } from './server-keys.ts';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ibs-master-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const isCode = (code: string, ...parts: string[]) => (e: unknown) => e instanceof IbsError && e.code === code && parts.every((p) => e.message.includes(p));

test('master key: existing server keys are wrapped by it; a process starting afresh opens them only once it is unlocked', async () => {
  await withDir(async (dir) => {
    const config = join(dir, 'etc');
    const unlockFile = join(dir, 'usb', 'master.key');
    const keys = new ServerKeys(config);
    await keys.create('before');
    const before = await keys.get('before');
    // Bad input writes nothing.
    await assert.rejects(keys.master.create({ passphrase: 'short' }), isCode('INVALID_ARGUMENT', '8'));
    await assert.rejects(keys.master.create({ passphrase: 'master pass 1', unlockFile: 'usb/master.key' }), isCode('INVALID_ARGUMENT', 'usb/master.key', 'absolute'));
    assert.deepEqual(await keys.master.status(), { configured: false, unlocked: false });
    await mkdir(join(dir, 'usb'));
    const { key: master } = await keys.master.create({ passphrase: 'master pass 1', unlockFile });
    await assert.rejects(keys.master.create({ passphrase: 'master pass 2' }), isCode('EXISTS', master.fingerprint));
    assert.deepEqual(await keys.wrapAll(master), ['before']);
    assert.equal((await stat(join(config, 'masterkey.json'))).mode & 0o777, 0o600);
    assert.equal((await stat(unlockFile)).mode & 0o777, 0o600);
    const stored = JSON.parse(await readFile(join(config, 'keys', 'before.key'), 'utf8')) as { kdf: { name: string; fingerprint: string } };
    assert.deepEqual(stored.kdf, { name: 'master', fingerprint: master.fingerprint });
    // New keys are wrapped too; the key material stays the same.
    await keys.create('after');
    assert.equal(JSON.parse(await readFile(join(config, 'keys', 'after.key'), 'utf8')).kdf.name, 'master');
    assert.equal((await keys.get('before')).fingerprint, before.fingerprint);

    // A new process (fresh state) unlocks from the unlock file on its own.
    const fresh = new ServerKeys(config);
    assert.equal((await fresh.master.autoUnlock()).source, 'unlock-file');
    assert.equal((await fresh.get('before')).fingerprint, before.fingerprint);

    // Without the unlock file: locked, listing still works, use and creation fail naming the way out.
    await rename(unlockFile, `${unlockFile}.away`);
    const locked = new ServerKeys(config);
    const status = await locked.master.autoUnlock();
    assert.equal(status.unlocked, false);
    assert.match(status.reason ?? '', /master\.key: not found/);
    assert.deepEqual((await locked.list()).map((k) => k.name), ['after', 'before']);
    await assert.rejects(locked.get('before'), isCode('KEY_LOCKED', master.fingerprint, 'masterkey unlock --interactive', 'not found'));
    const filesBefore = await readdir(join(config, 'keys'));
    await assert.rejects(locked.create('third'), isCode('KEY_LOCKED'));
    assert.deepEqual(await readdir(join(config, 'keys')), filesBefore);
    await assert.rejects(locked.master.unlock('wrong passphrase'), isCode('WRONG_KEY', master.fingerprint));
    assert.equal((await locked.master.unlock('master pass 1')).source, 'passphrase');
    assert.equal((await locked.get('before')).fingerprint, before.fingerprint);

    // A command may ask for the passphrase; with no way to get one it ends as locked.
    const asking = new ServerKeys(config, { askMasterPassphrase: async () => 'master pass 1' });
    assert.equal((await asking.get('after')).fingerprint, (await locked.get('after')).fingerprint);
    const cannotAsk = new ServerKeys(config, {
      askMasterPassphrase: async () => {
        throw new IbsError('INVALID_ARGUMENT', 'no terminal');
      },
    });
    await assert.rejects(cannotAsk.get('after'), isCode('KEY_LOCKED', 'IBS_MASTER_PASSPHRASE'));

    // An unlock file holding another key, or a wrapped one, is refused with the reason.
    await writeFile(unlockFile, JSON.stringify(await wrapKey(CryptKey.generate(), undefined)));
    assert.match((await new MasterKey(config).autoUnlock()).reason ?? '', /not the master key/);
    await writeFile(unlockFile, JSON.stringify(await wrapKey(master, 'some passphrase')));
    assert.match((await new MasterKey(config).autoUnlock()).reason ?? '', /kdf scrypt/);

    // A new passphrase replaces the old one; the key stays.
    await assert.rejects(new MasterKey(config).changePassphrase('wrong passphrase', 'master pass 2'), isCode('WRONG_KEY'));
    await new MasterKey(config).changePassphrase('master pass 1', 'master pass 2');
    await assert.rejects(new MasterKey(config).unlock('master pass 1'), isCode('WRONG_KEY'));
    assert.equal((await new MasterKey(config).unlock('master pass 2')).fingerprint, master.fingerprint);
  });
});

test('master key: the unlock file moves, or is given up; a relative path or another key changes nothing', async () => {
  await withDir(async (dir) => {
    const config = join(dir, 'etc');
    const { key } = await new MasterKey(config).create({ passphrase: 'master pass 1', unlockFile: join(dir, 'a.key') });
    const before = await readFile(join(config, 'masterkey.json'), 'utf8');
    await assert.rejects(new MasterKey(config).setUnlockFile('b.key', async () => key), isCode('INVALID_ARGUMENT', 'b.key', 'absolute'));
    await assert.rejects(new MasterKey(config).setUnlockFile(join(dir, 'b.key'), async () => CryptKey.generate()), isCode('WRONG_KEY', key.fingerprint));
    assert.equal(await readFile(join(config, 'masterkey.json'), 'utf8'), before);
    await assert.rejects(stat(join(dir, 'b.key')));
    const moved = await new MasterKey(config).setUnlockFile(join(dir, 'b.key'), async () => key);
    assert.equal(moved['unlock-file'], join(dir, 'b.key'));
    await rm(join(dir, 'a.key'));
    assert.equal((await new MasterKey(config).autoUnlock()).source, 'unlock-file');
    await new MasterKey(config).setUnlockFile(undefined, async () => key);
    const locked = await new MasterKey(config).autoUnlock();
    assert.equal(locked.unlocked, false);
    assert.equal(locked.reason, 'no unlock file is configured');
    assert.equal(locked['unlock-file'], undefined);
  });
});

test('master key: removed, the server keys are stored in the clear again; locked, nothing changes', async () => {
  await withDir(async (dir) => {
    const config = join(dir, 'etc');
    const keys = new ServerKeys(config);
    await keys.create('k1');
    const k1 = await keys.get('k1');
    const { key: master } = await keys.master.create({ passphrase: 'master pass 1' });
    await keys.wrapAll(master);
    const kdf = async (): Promise<string> => JSON.parse(await readFile(join(config, 'keys', 'k1.key'), 'utf8')).kdf.name;
    assert.equal(await kdf(), 'master');
    const locked = new ServerKeys(config);
    await assert.rejects(locked.master.remove(() => locked.master.key(), (key) => locked.unwrapAll(key)), isCode('KEY_LOCKED'));
    assert.equal(await kdf(), 'master');
    await stat(join(config, 'masterkey.json'));
    const asking = new ServerKeys(config, { askMasterPassphrase: async () => 'master pass 1' });
    const r = await asking.master.remove(() => asking.masterKey(), (key) => asking.unwrapAll(key));
    assert.equal(r.removed, master.fingerprint);
    assert.deepEqual(r.before, ['k1']);
    assert.equal(await kdf(), 'none');
    await assert.rejects(stat(join(config, 'masterkey.json')));
    const fresh = new ServerKeys(config);
    assert.equal((await fresh.get('k1')).fingerprint, k1.fingerprint);
    assert.deepEqual(await fresh.master.status(), { configured: false, unlocked: false });
    await fresh.create('k2');
    assert.equal(JSON.parse(await readFile(join(config, 'keys', 'k2.key'), 'utf8')).kdf.name, 'none');
  });
});

test('master key: a server key created while another process removes the master key is not left wrapped by it', async () => {
  await withDir(async (dir) => {
    const config = join(dir, 'etc');
    const keys = new ServerKeys(config);
    await keys.create('k1');
    const { key: master } = await keys.master.create({ passphrase: 'master pass 1' });
    await keys.wrapAll(master);
    // The other process ("masterkey remove") holds the lock while it stores the keys in the clear and
    // removes the configuration; this one creates a key meanwhile, with the master key it has unlocked.
    const release = await acquireLock(join(config, 'masterkey.json.lock'));
    const creating = keys.create('k2').then(
      () => 'created',
      (error: unknown) => error,
    );
    await new Promise((r) => setTimeout(r, 200));
    const other = new ServerKeys(config);
    assert.deepEqual(await other.unwrapAll(master), ['k1']);
    await rm(join(config, 'masterkey.json'));
    await release();
    const outcome = await creating;
    assert.ok(isCode('BUSY', 'master key changed meanwhile', master.fingerprint, 'removed')(outcome), String(outcome));
    await assert.rejects(stat(join(config, 'keys', 'k2.key')));
    // Run again, it is stored in the clear like the others, and every key opens without a master key.
    await keys.create('k2');
    const fresh = new ServerKeys(config);
    for (const name of ['k1', 'k2']) await fresh.get(name);
    assert.equal(JSON.parse(await readFile(join(config, 'keys', 'k2.key'), 'utf8')).kdf.name, 'none');
  });
});

test('master key: created in a configuration directory that does not exist yet (a first command)', async () => {
  await withDir(async (dir) => {
    const master = new MasterKey(join(dir, 'etc'));
    const { key } = await master.create({ passphrase: 'master pass 1' });
    assert.deepEqual(await new MasterKey(join(dir, 'etc')).status(), { configured: true, fingerprint: key.fingerprint, unlocked: false });
  });
});

test('master key: a malformed masterkey.json is CORRUPT, named', async () => {
  await withDir(async (dir) => {
    await writeFile(join(dir, 'masterkey.json'), '{"version":1}');
    await assert.rejects(new MasterKey(dir).status(), isCode('CORRUPT', 'masterkey.json'));
    await writeFile(join(dir, 'masterkey.json'), 'not json');
    await assert.rejects(new MasterKey(dir).autoUnlock(), isCode('CORRUPT', 'not JSON'));
    await writeFile(join(dir, 'masterkey.json'), JSON.stringify({ version: 1, key: await wrapKey(CryptKey.generate(), undefined) }));
    await assert.rejects(new MasterKey(dir).status(), isCode('CORRUPT', 'kdf none'));
  });
});
