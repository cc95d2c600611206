import { readFile } from 'node:fs/promises';
import { IbsError } from '../core/index.ts';
import { writeFileAtomic } from '../lib/index.ts';
import { acquireLock } from './section-config.ts';

/** A JSON map of secrets by name in a 0600 file, changed under a lock; never logged or returned by the API. */
export class SecretsFile<T> {
  readonly path: string;

  constructor(path: string) {
    this.path = path;
  }

  async read(): Promise<Record<string, T>> {
    try {
      return JSON.parse(await readFile(this.path, 'utf8')) as Record<string, T>;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw new IbsError('CORRUPT', `Cannot read ${this.path}: ${(error as Error).message}`);
    }
  }

  async get(name: string): Promise<T | undefined> {
    return (await this.read())[name];
  }

  async update(change: (m: Record<string, T>) => void): Promise<void> {
    const release = await acquireLock(`${this.path}.lock`);
    try {
      const m = await this.read();
      change(m);
      await writeFileAtomic(this.path, `${JSON.stringify(m, null, 1)}\n`, { mode: 0o600 });
    } finally {
      await release();
    }
  }
}
