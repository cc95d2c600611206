import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CryptKey, fromPaperKey, parseKeyFile, toPaperKey, unwrapKey, wrapKey } from './crypt-key.ts';
import { IbsError } from './errors.ts';
import { signManifest, verifyManifestSignature, type Manifest } from './manifest.ts';

test('a wrapped key unwraps with the right passphrase and fails with WRONG_KEY naming the fingerprint otherwise', async () => {
  const key = CryptKey.generate();
  const file = await wrapKey(key, 'correct horse battery');
  assert.equal((await unwrapKey(file, 'correct horse battery')).fingerprint, key.fingerprint);
  await assert.rejects(unwrapKey(file, 'wrong passphrase!'), (e) => e instanceof IbsError && e.code === 'WRONG_KEY' && e.message.includes(key.fingerprint));
});

test('equal plaintext under different keys gets different digests', () => {
  const data = Buffer.from('same data');
  assert.notEqual(CryptKey.generate().chunkDigest(data), CryptKey.generate().chunkDigest(data));
});

test('paper key round-trips and a transcription error names the line', async () => {
  const file = await wrapKey(CryptKey.generate(), 'passphrase123');
  const text = toPaperKey(file);
  assert.deepEqual(fromPaperKey(text), file);
  const lines = text.split('\n');
  const i = lines.findIndex((l) => l.startsWith('002: '));
  const line = lines[i] as string;
  lines[i] = line.slice(0, 6) + (line[6] === 'A' ? 'B' : 'A') + line.slice(7);
  assert.throws(() => fromPaperKey(lines.join('\n')), /line 002 fails its checksum/);
});

test('a signed manifest verifies; any change to the signed part is detected; a different key is named', () => {
  const key = CryptKey.generate();
  const manifest: Manifest = { format: 1, backupType: 'host', backupId: 'a', backupTime: 1, files: [{ filename: 'x.tar.didx', size: 1, csum: '0'.repeat(64), cryptMode: 'encrypt' }], unprotected: {} };
  const signed = signManifest(manifest, key);
  verifyManifestSignature(signed, key, 's');
  verifyManifestSignature({ ...signed, unprotected: { notes: 'changed notes are fine' } }, key, 's');
  assert.throws(() => verifyManifestSignature({ ...signed, backupId: 'b' }, key, 's'), /signature does not verify/);
  assert.throws(() => verifyManifestSignature(signed, CryptKey.generate(), 's'), (e) => e instanceof IbsError && e.code === 'WRONG_KEY' && e.message.includes(key.fingerprint));
});

test('a key wrapped by a master key opens with that master key only; a damaged wrapping is CORRUPT', async () => {
  const master = CryptKey.generate();
  const key = CryptKey.generate();
  const file = await wrapKey(key, master);
  assert.deepEqual(file.kdf, { name: 'master', fingerprint: master.fingerprint });
  assert.equal(parseKeyFile(JSON.stringify(file), 'k').kdf.name, 'master');
  assert.equal((await unwrapKey(file, master)).fingerprint, key.fingerprint);
  const other = CryptKey.generate();
  await assert.rejects(unwrapKey(file, other), (e) => e instanceof IbsError && e.code === 'WRONG_KEY' && e.message.includes(master.fingerprint) && e.message.includes(other.fingerprint));
  await assert.rejects(unwrapKey(file, 'a passphrase'), (e) => e instanceof IbsError && e.code === 'WRONG_KEY' && e.message.includes(master.fingerprint));
  await assert.rejects(unwrapKey(file, undefined), (e) => e instanceof IbsError && e.code === 'WRONG_KEY');
  const data = Buffer.from(file.data, 'base64');
  data[40] = (data[40] as number) ^ 1;
  await assert.rejects(unwrapKey({ ...file, data: data.toString('base64') }, master), (e) => e instanceof IbsError && e.code === 'CORRUPT' && e.message.includes(key.fingerprint));
  // A passphrase-wrapped file does not open with a master key.
  await assert.rejects(unwrapKey(await wrapKey(key, 'passphrase123'), master), (e) => e instanceof IbsError && e.code === 'WRONG_KEY');
  assert.throws(() => parseKeyFile(JSON.stringify({ ...file, kdf: { name: 'master', fingerprint: 'zz' } }), 'k.key'), /k\.key.*malformed/);
});
