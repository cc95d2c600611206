import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { CryptKey, IbsError, formatKeyFile, parseKeyFile, unwrapKey, wrapKey, type KeyFile } from '../core/index.ts';
import { writeFileAtomic } from '../lib/index.ts';
import { acquireLock } from './section-config.ts';

/**
 * The server's master key: when one is configured, server keys (`keys/NAME.key`) are stored wrapped by it
 * (`kdf: master`) instead of in the clear. `masterkey.json` in the config directory holds it wrapped by a
 * passphrase (scrypt), and names an unlock file, kept apart from the configuration (removable medium,
 * enclave-backed mount), that holds it unwrapped: the server unlocks with that file when it starts. When the
 * file cannot be read, the master key stays locked, every use of a server key fails with KEY_LOCKED, and an
 * administrator unlocks it with its passphrase (`masterkey unlock --interactive`). Unlocked, it lives only in
 * the process's memory.
 */
export interface MasterKeyConfig {
  version: 1;
  /** The master key wrapped by its passphrase (kdf scrypt). */
  key: KeyFile;
  /** Where the server finds the unwrapped master key to unlock on its own (absolute path). */
  'unlock-file'?: string;
}

export interface MasterKeyStatus {
  configured: boolean;
  fingerprint?: string;
  unlocked: boolean;
  /** How it was unlocked: with the unlock file, or with the passphrase. */
  source?: 'unlock-file' | 'passphrase';
  'unlock-file'?: string;
  /** Why it is locked (the unlock file's failure, or none configured). */
  reason?: string;
}

/** Writes the master key unwrapped (a key file with kdf none, 0600) where the server will look for it at start. */
async function writeUnlockFile(path: string, key: CryptKey): Promise<void> {
  await writeFileAtomic(path, formatKeyFile(await wrapKey(key, undefined)), { mode: 0o600 }).catch((error: Error) => {
    throw new IbsError('PERMISSION_DENIED', `Cannot write the unlock file "${path}": ${error.message}`);
  });
}

/** The master key unwrapped with its passphrase; a wrong one gives WRONG_KEY naming the master key. */
async function withPassphrase(config: MasterKeyConfig, passphrase: string): Promise<CryptKey> {
  return unwrapKey(config.key, passphrase).catch((error: unknown) => {
    if (error instanceof IbsError && error.code === 'WRONG_KEY') throw new IbsError('WRONG_KEY', `Wrong passphrase for the master key ${config.key.fingerprint}`);
    throw error;
  });
}

export class MasterKey {
  readonly path: string;
  #key: CryptKey | undefined;
  #source: 'unlock-file' | 'passphrase' | undefined;
  /** Why the last attempt to unlock on its own failed (shown while locked). */
  #reason: string | undefined;

  constructor(configDir: string) {
    this.path = join(configDir, 'masterkey.json');
  }

  /** The configuration, undefined when no master key is configured; a malformed file fails with CORRUPT. */
  async read(): Promise<MasterKeyConfig | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new IbsError('PERMISSION_DENIED', `Cannot read ${this.path}: ${(error as Error).message}`);
    }
    let value: Partial<MasterKeyConfig> | null;
    try {
      value = JSON.parse(text) as Partial<MasterKeyConfig> | null;
    } catch {
      throw new IbsError('CORRUPT', `${this.path} is not JSON: expected the master key configuration`);
    }
    const unlockFile = value?.['unlock-file'];
    if (!value || value.version !== 1 || typeof value.key !== 'object' || (unlockFile !== undefined && (typeof unlockFile !== 'string' || !isAbsolute(unlockFile)))) {
      throw new IbsError('CORRUPT', `${this.path} is malformed: expected version 1, the wrapped key and an optional absolute "unlock-file"`);
    }
    const key = parseKeyFile(JSON.stringify(value.key), this.path);
    if (key.kdf.name !== 'scrypt') throw new IbsError('CORRUPT', `${this.path}: the master key must be wrapped by a passphrase (kdf scrypt), found kdf ${key.kdf.name}`);
    return { version: 1, key, ...(unlockFile !== undefined ? { 'unlock-file': unlockFile } : {}) };
  }

  /**
   * Creates the master key, wrapped by `passphrase`, and with `unlockFile` writes it there unwrapped (0600) for
   * the server to unlock at start. Fails with EXISTS when one is configured; nothing is written on bad input.
   */
  async create(input: { passphrase: string; unlockFile?: string | undefined }): Promise<{ key: CryptKey; status: MasterKeyStatus }> {
    if (input.unlockFile !== undefined && !isAbsolute(input.unlockFile)) throw new IbsError('INVALID_ARGUMENT', `Invalid --unlock-file "${input.unlockFile}": expected an absolute path`);
    return this.#locked(async () => {
      const existing = await this.read();
      if (existing) throw new IbsError('EXISTS', `A master key is configured already (${existing.key.fingerprint}, ${this.path})`);
      const key = CryptKey.generate();
      const wrapped = await wrapKey(key, input.passphrase);
      if (input.unlockFile !== undefined) await writeUnlockFile(input.unlockFile, key);
      await this.#write({ version: 1, key: wrapped, ...(input.unlockFile !== undefined ? { 'unlock-file': input.unlockFile } : {}) });
      this.#key = key;
      this.#source = 'passphrase';
      return { key, status: await this.status() };
    });
  }

  /**
   * Runs `fn` holding the master key's lock (created with the configuration directory when missing): changes to
   * the master key, and writes of server keys wrapped by it, are one at a time across processes.
   */
  async #locked<T>(fn: () => Promise<T>): Promise<T> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    const release = await acquireLock(`${this.path}.lock`);
    try {
      return await fn();
    } finally {
      await release();
    }
  }

  async #write(config: MasterKeyConfig): Promise<void> {
    await writeFileAtomic(this.path, `${JSON.stringify(config, null, 1)}\n`, { mode: 0o600 });
  }

  /** Unlocks with the passphrase (WRONG_KEY naming the master key when it does not match). */
  async unlock(passphrase: string): Promise<MasterKeyStatus> {
    this.#key = await withPassphrase(await this.#config(), passphrase);
    this.#source = 'passphrase';
    return this.status();
  }

  /** Tries the unlock file (when configured and still locked); returns the status, with the reason when locked. */
  async autoUnlock(): Promise<MasterKeyStatus> {
    const config = await this.read();
    if (!config || this.#key) return this.status(config);
    await this.#fromUnlockFile(config);
    return this.status(config);
  }

  /** Unlocks from the unlock file; returns why it could not (also kept for `status`). */
  async #fromUnlockFile(config: MasterKeyConfig): Promise<string | undefined> {
    this.#reason = await this.#readUnlockFile(config);
    return this.#reason;
  }

  async #readUnlockFile(config: MasterKeyConfig): Promise<string | undefined> {
    const path = config['unlock-file'];
    if (path === undefined) return 'no unlock file is configured';
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      return `unlock file ${path}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (error as Error).message}`;
    }
    try {
      const file = parseKeyFile(text, path);
      if (file.kdf.name !== 'none') return `unlock file ${path}: holds a wrapped key (kdf ${file.kdf.name}), expected the master key unwrapped`;
      if (file.fingerprint !== config.key.fingerprint) return `unlock file ${path}: holds key ${file.fingerprint}, not the master key ${config.key.fingerprint}`;
      this.#key = await unwrapKey(file, undefined);
      this.#source = 'unlock-file';
      return undefined;
    } catch (error) {
      return `unlock file ${path}: ${(error as Error).message}`;
    }
  }

  /**
   * The unlocked master key: held in memory, else from the unlock file, else with the passphrase from `ask`
   * (a command on a terminal); else KEY_LOCKED saying why and how to unlock.
   */
  async key(ask?: () => Promise<string>): Promise<CryptKey> {
    return this.#keyFor(await this.#config(), ask);
  }

  /**
   * Runs `write` with the key that wraps new server keys (the unlocked master key, or none when none is
   * configured) under the master key's lock, so that a "masterkey create" or "masterkey remove" in another
   * process cannot leave what `write` stores wrapped by a master key that is gone. The key is got before the
   * lock (it may ask for the passphrase); a master key that changed meanwhile fails with BUSY, nothing written.
   */
  async withWrappingKey<T>(ask: (() => Promise<string>) | undefined, write: (wrapping: CryptKey | undefined) => Promise<T>): Promise<T> {
    const wrapping = await this.keyIfConfigured(ask);
    return this.#locked(async () => {
      const now = (await this.read())?.key.fingerprint;
      if (now !== wrapping?.fingerprint) {
        throw new IbsError('BUSY', `The master key changed meanwhile (${wrapping ? `${wrapping.fingerprint} was ` : ''}${now === undefined ? 'removed' : `${now} was created`}): nothing was written; run the command again`);
      }
      return write(wrapping);
    });
  }

  /** `key`, or undefined when no master key is configured (the configuration is read once). */
  async keyIfConfigured(ask?: () => Promise<string>): Promise<CryptKey | undefined> {
    const config = await this.read();
    return config ? this.#keyFor(config, ask) : undefined;
  }

  async #keyFor(config: MasterKeyConfig, ask: (() => Promise<string>) | undefined): Promise<CryptKey> {
    if (this.#key && this.#key.fingerprint === config.key.fingerprint) return this.#key;
    this.#key = undefined;
    const reason = await this.#fromUnlockFile(config);
    if (this.#key) return this.#key;
    if (ask) {
      // A command asks for the passphrase; one that has no way to get it (no terminal) ends as locked below.
      const passphrase = await ask().catch((error: unknown) => {
        if (error instanceof IbsError && error.code === 'INVALID_ARGUMENT') return undefined;
        throw error;
      });
      if (passphrase !== undefined) {
        this.#key = await withPassphrase(config, passphrase);
        this.#source = 'passphrase';
        return this.#key;
      }
      throw new IbsError('KEY_LOCKED', `The master key ${config.key.fingerprint} that protects the server keys is locked (${reason}): give its passphrase in IBS_MASTER_PASSPHRASE or on a terminal`);
    }
    throw new IbsError('KEY_LOCKED', `The master key ${config.key.fingerprint} that protects the server keys is locked (${reason}): run "ironcore-backup masterkey unlock --interactive" and enter its passphrase`);
  }

  /**
   * Moves the unlock file to `unlockFile` (written there from the master key `unlocked` gives), or with
   * undefined stops using one (the server then starts locked); the old file is left for the administrator.
   */
  async setUnlockFile(unlockFile: string | undefined, unlocked: () => Promise<CryptKey>): Promise<MasterKeyStatus> {
    if (unlockFile !== undefined && !isAbsolute(unlockFile)) throw new IbsError('INVALID_ARGUMENT', `Invalid --unlock-file "${unlockFile}": expected an absolute path`);
    const key = await unlocked();
    return this.#locked(async () => {
      const config = await this.#config();
      if (key.fingerprint !== config.key.fingerprint) throw new IbsError('WRONG_KEY', `Key ${key.fingerprint} is not the master key ${config.key.fingerprint}`);
      if (unlockFile !== undefined) await writeUnlockFile(unlockFile, key);
      const { 'unlock-file': _old, ...rest } = config;
      await this.#write({ ...rest, ...(unlockFile !== undefined ? { 'unlock-file': unlockFile } : {}) });
      return this.status();
    });
  }

  /**
   * Removes the master key's configuration once `beforeRemove` (given the unlocked key) has stored the server
   * keys in the clear again; the unlock file is left for the administrator to destroy.
   */
  async remove<T>(unlocked: () => Promise<CryptKey>, beforeRemove: (key: CryptKey) => Promise<T>): Promise<{ removed: string; 'unlock-file'?: string; before: T }> {
    const key = await unlocked();
    return this.#locked(async () => {
      const config = await this.#config();
      const before = await beforeRemove(key);
      await rm(this.path);
      this.#key = undefined;
      this.#reason = undefined;
      return { removed: config.key.fingerprint, ...(config['unlock-file'] !== undefined ? { 'unlock-file': config['unlock-file'] } : {}), before };
    });
  }

  /** Re-wraps the master key with a new passphrase (the old one must match). */
  async changePassphrase(oldPassphrase: string, newPassphrase: string): Promise<MasterKeyStatus> {
    return this.#locked(async () => {
      const config = await this.#config();
      const key = await withPassphrase(config, oldPassphrase);
      await this.#write({ ...config, key: { ...(await wrapKey(key, newPassphrase)), created: config.key.created } });
      return this.status();
    });
  }

  async status(known?: MasterKeyConfig): Promise<MasterKeyStatus> {
    const config = known ?? (await this.read());
    if (!config) return { configured: false, unlocked: false };
    const unlocked = this.#key?.fingerprint === config.key.fingerprint;
    return {
      configured: true,
      fingerprint: config.key.fingerprint,
      unlocked,
      ...(unlocked && this.#source ? { source: this.#source } : {}),
      ...(config['unlock-file'] !== undefined ? { 'unlock-file': config['unlock-file'] } : {}),
      ...(!unlocked && this.#reason !== undefined ? { reason: this.#reason } : {}),
    };
  }

  async #config(): Promise<MasterKeyConfig> {
    const config = await this.read();
    if (!config) throw new IbsError('NOT_FOUND', `No master key is configured (${this.path}): create one with "ironcore-backup masterkey create"`);
    return config;
  }
}
