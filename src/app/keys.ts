import type { AppContext } from './context.ts';
import type { MasterKeyStatus, ServerKeyInfo } from '../config/index.ts';
import { readFile, stat } from 'node:fs/promises';
import { IbsError, CryptKey, formatKeyFile, fromPaperKey, parseKeyFile, toPaperKey, unwrapKey, wrapKey, type KeyFile } from '../core/index.ts';
import { writeFileAtomic } from '../lib/index.ts';

/** Key files on the local disk (client side). Written with mode 0600. */

export async function readKeyFile(path: string): Promise<KeyFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new IbsError(code === 'ENOENT' ? 'NOT_FOUND' : 'PERMISSION_DENIED', `Cannot read key file "${path}": ${code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
  }
  return parseKeyFile(text, path);
}

export async function loadKey(path: string, passphrase: () => Promise<string | undefined>): Promise<CryptKey> {
  const file = await readKeyFile(path);
  // A server key file wrapped by a master key is refused by unwrapKey, naming it: no passphrase is asked for.
  return unwrapKey(file, file.kdf.name === 'scrypt' ? await passphrase() : undefined);
}

async function refuseOverwrite(path: string): Promise<void> {
  if (await stat(path).catch(() => undefined)) throw new IbsError('EXISTS', `Key file "${path}" already exists: refusing to overwrite a key`);
}

export async function createKeyFile(input: { path: string; passphrase: string | undefined }): Promise<KeyFile> {
  await refuseOverwrite(input.path);
  const file = await wrapKey(CryptKey.generate(), input.passphrase);
  await writeFileAtomic(input.path, formatKeyFile(file), { mode: 0o600 });
  return file;
}

export async function showKeyFile(path: string): Promise<Omit<KeyFile, 'data'>> {
  const { data: _data, ...rest } = await readKeyFile(path);
  return rest;
}

export async function changePassphrase(input: { path: string; oldPassphrase: string | undefined; newPassphrase: string | undefined }): Promise<KeyFile> {
  const file = await readKeyFile(input.path);
  const key = await unwrapKey(file, input.oldPassphrase);
  const next = { ...(await wrapKey(key, input.newPassphrase)), created: file.created };
  await writeFileAtomic(input.path, formatKeyFile(next), { mode: 0o600 });
  return next;
}

export async function paperKey(path: string): Promise<string> {
  return toPaperKey(await readKeyFile(path));
}

export async function importPaperKey(input: { text: string; path: string }): Promise<KeyFile> {
  await refuseOverwrite(input.path);
  const file = fromPaperKey(input.text);
  await writeFileAtomic(input.path, formatKeyFile(file), { mode: 0o600 });
  return file;
}

/** Creates a server key: a new one, or the key of an existing key file (so clients can restore with that file). */
export async function createServerKey(ctx: AppContext, input: { name: string; fromKeyfile?: string; passphrase?: () => Promise<string | undefined> }): Promise<ServerKeyInfo> {
  const key = input.fromKeyfile !== undefined ? await loadKey(input.fromKeyfile, input.passphrase ?? (async () => undefined)) : undefined;
  return ctx.keys.create(input.name, key);
}

/** Of `jobs`, the ids of those that use server key `name` (as active key or associated key). */
function usersOf(jobs: ReadonlyArray<{ id: string; activeKey?: string | undefined; associatedKeys: readonly string[] }>, name: string): string[] {
  return jobs.filter((j) => j.activeKey === name || j.associatedKeys.includes(name)).map((j) => j.id);
}

/** Jobs that use a server key (as active key or associated key). */
export async function keyUsers(ctx: AppContext, name: string): Promise<string[]> {
  return usersOf(await ctx.jobs.sync.listStored(), name);
}

/** One server key with the sync jobs that use it (never key material). */
export async function serverKeyInfo(ctx: AppContext, name: string): Promise<ServerKeyInfo & { usedBy: string[] }> {
  return { ...(await ctx.keys.info(name)), usedBy: await keyUsers(ctx, name) };
}

/** Every server key with the sync jobs that use it (the jobs read once). */
export async function listServerKeys(ctx: AppContext): Promise<Array<(ServerKeyInfo | { name: string; problem: string }) & { usedBy: string[] }>> {
  const jobs = await ctx.jobs.sync.listStored();
  return (await ctx.keys.listChecked()).map((k) => ({ ...k, usedBy: usersOf(jobs, k.name) }));
}

/**
 * The key a job encrypts with: it must exist and not be archived (an archived key still decrypts, never
 * encrypts).
 */
export async function encryptingKey(ctx: AppContext, name: string): Promise<ServerKeyInfo> {
  const info = await ctx.keys.info(name);
  if (info.archived) throw new IbsError('INVALID_ARGUMENT', `Server key "${name}" is archived: it decrypts but never encrypts; create a new key for --active-encryption-key`);
  return info;
}

/** Removes a server key (also one whose file does not read), unless a sync job uses it. */
export async function removeServerKey(ctx: AppContext, name: string): Promise<void> {
  const users = await keyUsers(ctx, name);
  if (users.length > 0) throw new IbsError('BUSY', `Server key "${name}" is still used by sync job(s) ${users.join(', ')}: change them first (an archived key keeps decrypting)`);
  await ctx.keys.remove(name);
}

/**
 * Creates the server's master key and wraps every server key stored in the clear with it (see
 * config/master-key.ts). With `unlockFile`, the master key is also written there unwrapped, for the server to
 * unlock on its own when it starts.
 */
export async function createMasterKey(ctx: AppContext, input: { passphrase: string; unlockFile?: string | undefined }): Promise<MasterKeyStatus & { wrapped: string[] }> {
  const { key, status } = await ctx.keys.master.create(input);
  return { ...status, wrapped: await ctx.keys.wrapAll(key) };
}

/**
 * Stops using the master key: every server key it wraps is stored in the clear again (0600), then its
 * configuration is removed. Needs the master key (its unlock file, or its passphrase).
 */
export async function removeMasterKey(ctx: AppContext): Promise<{ removed: string; 'unlock-file'?: string; unwrapped: string[] }> {
  const { before, ...removed } = await ctx.keys.master.remove(() => ctx.keys.masterKey(), (key) => ctx.keys.unwrapAll(key));
  return { ...removed, unwrapped: before };
}

export type { MasterKeyStatus };

/** The master key's state in this process (configured, fingerprint, unlocked and how); never key material. */
export function masterKeyStatus(ctx: AppContext): Promise<MasterKeyStatus> {
  return ctx.keys.master.status();
}

/**
 * Unlocks the master key with its passphrase, for this process (the server, when asked through its API), and
 * wraps any server key still in the clear (one that a `masterkey create` cut short left so).
 */
export async function unlockMasterKey(ctx: AppContext, passphrase: string): Promise<MasterKeyStatus> {
  return wrapLeftovers(ctx, await ctx.keys.master.unlock(passphrase));
}

/** At the server's start: unlocks the master key from its unlock file when one is configured, then as above. */
export async function autoUnlockMasterKey(ctx: AppContext): Promise<MasterKeyStatus> {
  return wrapLeftovers(ctx, await ctx.keys.master.autoUnlock());
}

async function wrapLeftovers(ctx: AppContext, status: MasterKeyStatus): Promise<MasterKeyStatus> {
  if (status.unlocked) await ctx.keys.wrapAll(await ctx.keys.masterKey());
  return status;
}
