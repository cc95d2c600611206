import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CryptKey, IbsError, formatKeyFile, parseKeyFile, unwrapKey, wrapKey, type KeyFile } from '../core/index.ts';
import { writeFileAtomic } from '../lib/index.ts';
import { MasterKey } from './master-key.ts';

/**
 * Server-side encryption keys (`keys/NAME.key` under the config directory, 0600, not passphrase-wrapped so
 * that scheduled jobs can use them; `keys/NAME.state` marks an archived key). Sync jobs encrypt on push with
 * their active key and decrypt on pull with associated keys. An archived key still decrypts but never
 * encrypts. With a master key configured (master-key.ts), key files are wrapped by it: using one needs the
 * master key unlocked; names, fingerprints and dates read without it.
 */

const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{1,31}$/;

export interface ServerKeyInfo {
  name: string;
  fingerprint: string;
  created: string;
  archived: boolean;
}

export class ServerKeys {
  readonly #dir: string;
  readonly master: MasterKey;
  /** Asks for the master key's passphrase when it is locked (a command on a terminal; never the server). */
  readonly #ask: (() => Promise<string>) | undefined;

  constructor(configDir: string, options: { master?: MasterKey; askMasterPassphrase?: () => Promise<string> } = {}) {
    this.#dir = join(configDir, 'keys');
    this.master = options.master ?? new MasterKey(configDir);
    this.#ask = options.askMasterPassphrase;
  }

  #check(name: string): string {
    if (!NAME_RE.test(name)) throw new IbsError('INVALID_ARGUMENT', `Invalid key name "${name}": expected 2 to 32 letters, digits, "_", "-", "."`);
    return name;
  }

  /**
   * Every key file of the folder, each read on its own: one that does not read (damaged, or put there by hand
   * under a name that is not a key name) comes with `problem`, naming the file and what to do; the others are
   * listed as usual.
   */
  async listChecked(): Promise<Array<ServerKeyInfo | { name: string; problem: string }>> {
    return Promise.all(
      (await this.#names()).map(async (name) => {
        if (!NAME_RE.test(name)) return { name, problem: `${join(this.#dir, `${name}.key`)} is not named as a server key (2 to 32 letters, digits, "_", "-", "."): move it out of ${this.#dir}` };
        try {
          return await this.info(name);
        } catch (error) {
          if (error instanceof IbsError && error.code === 'CORRUPT') return { name, problem: error.message };
          throw error;
        }
      }),
    );
  }

  /** The names of the folder's key files (`NAME.key`), sorted; not checked. */
  async #names(): Promise<string[]> {
    return (await readdir(this.#dir).catch(() => [] as string[])).filter((f) => f.endsWith('.key')).map((f) => f.slice(0, -4)).sort();
  }

  /** The keys whose files read (see listChecked). */
  async list(): Promise<ServerKeyInfo[]> {
    return (await this.listChecked()).filter((k): k is ServerKeyInfo => !('problem' in k));
  }

  async info(name: string): Promise<ServerKeyInfo> {
    const file = await this.#file(name);
    const archived = await readFile(join(this.#dir, `${name}.state`), 'utf8').then((t) => t.trim() === 'archived', () => false);
    return { name, fingerprint: file.fingerprint, created: file.created, archived };
  }

  async #read(name: string): Promise<string> {
    try {
      return await readFile(join(this.#dir, `${this.#check(name)}.key`), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new IbsError('NOT_FOUND', `Server key "${name}" does not exist (see "ironcore-backup key list")`);
      throw error;
    }
  }

  /** A key file, read and checked: one that does not read is CORRUPT, naming it and what to do. */
  async #file(name: string): Promise<KeyFile> {
    const path = join(this.#dir, `${name}.key`);
    const text = await this.#read(name);
    try {
      return parseKeyFile(text, path);
    } catch (error) {
      throw new IbsError('CORRUPT', `${(error as Error).message.replace(/^Key file /, 'Server key file ')}. It can neither encrypt nor decrypt: restore the file from a copy, or remove the key ("key remove --name ${name}")`);
    }
  }

  async get(name: string): Promise<CryptKey> {
    const file = await this.#file(name);
    if (file.kdf.name === 'scrypt') throw new IbsError('CORRUPT', `Server key file ${this.#dir}/${name}.key is wrapped by a passphrase: expected kdf none or master`);
    return unwrapKey(file, file.kdf.name === 'master' ? await this.masterKey() : undefined);
  }

  /** The unlocked master key, asking for its passphrase where this context may (see `MasterKey.key`). */
  masterKey(): Promise<CryptKey> {
    return this.master.key(this.#ask);
  }

  /**
   * Wraps every key file still stored in the clear with `master` (after a master key was created); returns
   * their names. Each file is replaced atomically: a crash leaves some wrapped and some not, both usable.
   */
  wrapAll(master: CryptKey): Promise<string[]> {
    return this.#rewrap((kdf) => kdf === 'none', master);
  }

  /** The reverse, before a master key is removed: every key wrapped by `master` is stored in the clear again. */
  unwrapAll(master: CryptKey): Promise<string[]> {
    return this.#rewrap((kdf) => kdf === 'master', undefined, master);
  }

  async #rewrap(select: (kdf: string) => boolean, wrapping: CryptKey | undefined, master?: CryptKey): Promise<string[]> {
    const changed: string[] = [];
    // A key file that does not read is left as it is (never rewritten, in case a copy of its key is wanted
    // from it); key list names it. Each file is read once.
    for (const name of (await this.#names()).filter((n) => NAME_RE.test(n))) {
      const path = join(this.#dir, `${name}.key`);
      let file: KeyFile;
      try {
        file = await this.#file(name);
      } catch (error) {
        if (error instanceof IbsError && error.code === 'CORRUPT') continue;
        throw error;
      }
      if (!select(file.kdf.name)) continue;
      const key = await unwrapKey(file, master);
      await writeFileAtomic(path, formatKeyFile({ ...(await wrapKey(key, wrapping)), created: file.created }), { mode: 0o600 });
      changed.push(name);
    }
    return changed;
  }

  /** Stores `key` (a new one when omitted) under `name`. */
  async create(name: string, key: CryptKey = CryptKey.generate()): Promise<ServerKeyInfo> {
    this.#check(name);
    const existing = await this.listChecked();
    if (existing.some((k) => k.name === name)) throw new IbsError('EXISTS', `Server key "${name}" already exists`);
    const clash = existing.find((k) => 'fingerprint' in k && k.fingerprint === key.fingerprint);
    if (clash) throw new IbsError('EXISTS', `That key is already stored as "${clash.name}"`);
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    // Wrapped by the master key when one is configured (which must then be unlocked).
    await this.master.withWrappingKey(this.#ask, async (wrapping) => writeFileAtomic(join(this.#dir, `${name}.key`), formatKeyFile(await wrapKey(key, wrapping)), { mode: 0o600 }));
    return this.info(name);
  }

  async archive(name: string): Promise<ServerKeyInfo> {
    await this.#read(name);
    await writeFileAtomic(join(this.#dir, `${name}.state`), 'archived\n', { mode: 0o600 });
    return this.info(name);
  }

  async remove(name: string): Promise<void> {
    await this.#read(name);
    await rm(join(this.#dir, `${name}.key`));
    await rm(join(this.#dir, `${name}.state`), { force: true });
  }
}
