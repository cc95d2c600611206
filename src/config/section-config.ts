import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { IbsError } from '../core/index.ts';
import { abortableSleep, readTextCached, writeFileAtomic } from '../lib/index.ts';

/**
 * Config files in the section format:
 *
 *   datastore: ibs-primary
 *   	path /mnt/backup/ibs-primary
 *   	comment Primary site store
 *
 * A section starts at column 0 with `TYPE: NAME`; its properties follow, indented, one `key value` per line.
 * `#` starts a comment line. Updates take a lock file, re-read, check the digest the caller saw (so two
 * concurrent edits cannot silently overwrite each other), and write atomically.
 */

export interface Section {
  type: string;
  name: string;
  props: Record<string, string>;
}

export interface ConfigSnapshot {
  sections: Section[];
  /** SHA-256 of the file as read ("" content for a missing file). */
  digest: string;
}

const HEADER_RE = /^([a-z][a-z0-9-]*):\s*(\S+)\s*$/;
const PROP_RE = /^\s+([a-z][a-z0-9-]*)(?:\s+(.*?))?\s*$/;

export function parseSections(text: string, source: string): Section[] {
  const sections: Section[] = [];
  let current: Section | undefined;
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '' || line.trimStart().startsWith('#')) return;
    const header = HEADER_RE.exec(line);
    if (header) {
      current = { type: header[1] as string, name: header[2] as string, props: {} };
      if (sections.some((s) => s.type === current?.type && s.name === current.name)) {
        throw new IbsError('CORRUPT', `${source}:${i + 1}: section "${header[1]}: ${header[2]}" appears twice`);
      }
      sections.push(current);
      return;
    }
    const prop = PROP_RE.exec(line);
    if (prop && current) {
      current.props[prop[1] as string] = prop[2] ?? '';
      return;
    }
    throw new IbsError('CORRUPT', `${source}:${i + 1}: cannot parse ${JSON.stringify(line)}: expected "type: name" or an indented "key value" line`);
  });
  return sections;
}

export function formatSections(sections: readonly Section[]): string {
  return sections
    .map((s) => {
      const props = Object.entries(s.props)
        .filter(([, v]) => v !== '')
        .map(([k, v]) => {
          if (/[\r\n]/.test(v)) throw new RangeError(`Config value for ${k} contains a line break`);
          return `\t${k} ${v}\n`;
        });
      return `${s.type}: ${s.name}\n${props.join('')}`;
    })
    .join('\n');
}

function digestOf(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export class SectionConfig {
  readonly path: string;
  readonly #mode: number;

  constructor(path: string, options: { mode?: number } = {}) {
    this.path = path;
    this.#mode = options.mode ?? 0o644;
  }

  /** The file's sections as they are now (read again only when the file changed: see readTextCached). */
  read(): Promise<ConfigSnapshot> {
    return this.#read(false);
  }

  async #read(fresh: boolean): Promise<ConfigSnapshot> {
    let text = '';
    try {
      text = await readTextCached(this.path, { fresh });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new IbsError('PERMISSION_DENIED', `Cannot read config file ${this.path}: ${(error as Error).message}`);
      }
    }
    return { sections: parseSections(text, this.path), digest: digestOf(text) };
  }

  /**
   * Applies `change` under the lock. With `expectedDigest`, fails with BUSY when the file changed since the
   * caller read it.
   */
  async update<T>(change: (sections: Section[]) => T, options: { expectedDigest?: string } = {}): Promise<T> {
    await mkdir(dirname(this.path), { recursive: true });
    const release = await acquireLock(`${this.path}.lock`);
    try {
      // Read from the file itself under the lock: what is written back starts from exactly what is there.
      const current = await this.#read(true);
      if (options.expectedDigest !== undefined && options.expectedDigest !== current.digest) {
        throw new IbsError('BUSY', `${this.path} was changed by someone else since it was read (digest ${current.digest.slice(0, 12)}…, expected ${options.expectedDigest.slice(0, 12)}…): read it again and retry`);
      }
      const sections = current.sections.map((s) => ({ ...s, props: { ...s.props } }));
      const result = change(sections);
      await writeFileAtomic(this.path, formatSections(sections), { mode: this.#mode });
      return result;
    } finally {
      await release();
    }
  }
}

/** An exclusive lock file holding the owner's pid; a lock whose process is gone is taken over. */
export async function acquireLock(path: string, timeoutMs = 10_000): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const handle = await open(path, 'wx', 0o600);
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => rm(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    const age = Date.now() - ((await stat(path).catch(() => undefined))?.mtimeMs ?? Date.now());
    let alive = false;
    if (Number.isInteger(holder) && holder > 0) {
      try {
        process.kill(holder, 0);
        alive = true;
      } catch {
        alive = false;
      }
    }
    if (!alive && age > 1000) {
      await rm(path, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new IbsError('BUSY', `Config lock ${path} is held by process ${holder || '?'}; try again later`);
    await abortableSleep(50);
  }
}
