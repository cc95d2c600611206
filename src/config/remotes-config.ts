import { join } from 'node:path';
import { IbsError, parseAuthId, parseFingerprint } from '../core/index.ts';
import { SectionConfig, type Section } from './section-config.ts';
import { SecretsFile } from './secrets-file.ts';

/** `remote.cfg` (sections `remote: NAME`) and `remote.secrets` (0600): the servers sync jobs talk to. */

const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{1,31}$/;
const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$|^\d{1,3}(?:\.\d{1,3}){3}$|^\[?[0-9A-Fa-f:]+\]?$/;

export interface RemoteConfig {
  name: string;
  host: string;
  port: number;
  authId: string;
  fingerprint: string;
  comment?: string;
}

export function checkRemote(r: RemoteConfig): RemoteConfig {
  if (!NAME_RE.test(r.name)) throw new IbsError('INVALID_ARGUMENT', `Invalid remote name "${r.name}": expected 2 to 32 letters, digits, "_", "-", "."`);
  if (r.host.length > 253 || !HOST_RE.test(r.host)) throw new IbsError('INVALID_ARGUMENT', `Invalid host "${r.host}": expected a host name or an IP address`);
  if (!Number.isInteger(r.port) || r.port < 1 || r.port > 65535) throw new IbsError('INVALID_ARGUMENT', `Invalid port ${r.port}: expected 1 to 65535`);
  const auth = parseAuthId(r.authId);
  if (auth.token === undefined) throw new IbsError('INVALID_ARGUMENT', `Invalid auth id "${r.authId}": expected an API token, user@realm!token`);
  if (r.comment !== undefined && /[\r\n]/.test(r.comment)) throw new IbsError('INVALID_ARGUMENT', 'Invalid comment: expected a single line');
  return { ...r, host: r.host.replace(/^\[|\]$/g, ''), fingerprint: parseFingerprint(r.fingerprint) };
}

function fromSection(s: Section): RemoteConfig {
  return { name: s.name, host: s.props.host ?? '', port: Number(s.props.port ?? 8007), authId: s.props['auth-id'] ?? '', fingerprint: s.props.fingerprint ?? '', ...(s.props.comment ? { comment: s.props.comment } : {}) };
}

function toProps(r: RemoteConfig): Record<string, string> {
  return { host: r.host, port: String(r.port), 'auth-id': r.authId, fingerprint: r.fingerprint, ...(r.comment ? { comment: r.comment } : {}) };
}

export class RemotesConfig {
  readonly #file: SectionConfig;
  readonly #secrets: SecretsFile<string>;

  readonly #path: string;

  constructor(configDir: string) {
    this.#path = join(configDir, 'remote.cfg');
    this.#file = new SectionConfig(this.#path);
    this.#secrets = new SecretsFile(join(configDir, 'remote.secrets'));
  }

  /** Every remote, checked as when it was written: a setting edited by hand into something invalid is CORRUPT, named. */
  async list(): Promise<RemoteConfig[]> {
    return (await this.#sections()).map((s) => this.#parse(s));
  }

  /** One remote, checked (another one that does not check does not stop this one). */
  async get(name: string): Promise<RemoteConfig> {
    const s = (await this.#sections()).find((x) => x.name === name);
    if (!s) throw new IbsError('NOT_FOUND', `Remote "${name}" does not exist (see "ironcore-backup remote list")`);
    return this.#parse(s);
  }

  async #sections(): Promise<Section[]> {
    return (await this.#file.read()).sections.filter((s) => s.type === 'remote');
  }

  #parse(s: Section): RemoteConfig {
    try {
      const port = s.props.port;
      if (port !== undefined && !/^\d{1,5}$/.test(port)) throw new IbsError('INVALID_ARGUMENT', `Invalid port "${port}": expected 1 to 65535`);
      return checkRemote(fromSection(s));
    } catch (error) {
      throw new IbsError('CORRUPT', `${this.#path}: remote "${s.name}" is invalid: ${(error as Error).message}. Correct it with "remote update --name ${s.name} …", or remove it`);
    }
  }

  /** The remote's API token secret (never shown). */
  async secret(name: string): Promise<string> {
    const secret = await this.#secrets.get(name);
    if (secret === undefined) throw new IbsError('NOT_FOUND', `Remote "${name}" has no stored secret: set it with "remote update --name ${name} --secret-file F"`);
    return secret;
  }

  async add(remote: RemoteConfig, secret: string): Promise<RemoteConfig> {
    const r = checkRemote(remote);
    if (secret === '' || /[\r\n]/.test(secret)) throw new IbsError('INVALID_ARGUMENT', 'Invalid secret: expected one non-empty line');
    await this.#file.update((sections) => {
      if (sections.some((s) => s.type === 'remote' && s.name === r.name)) throw new IbsError('EXISTS', `Remote "${r.name}" already exists`);
      sections.push({ type: 'remote', name: r.name, props: toProps(r) });
    });
    await this.#secrets.update((m) => (m[r.name] = secret));
    return r;
  }

  async update(name: string, change: Partial<Omit<RemoteConfig, 'name'>>, secret?: string): Promise<RemoteConfig> {
    if (secret !== undefined && (secret === '' || /[\r\n]/.test(secret))) throw new IbsError('INVALID_ARGUMENT', 'Invalid secret: expected one non-empty line');
    const updated = await this.#file.update((sections) => {
      const s = sections.find((x) => x.type === 'remote' && x.name === name);
      if (!s) throw new IbsError('NOT_FOUND', `Remote "${name}" does not exist (see "ironcore-backup remote list")`);
      const r = checkRemote({ ...fromSection(s), ...Object.fromEntries(Object.entries(change).filter(([, v]) => v !== undefined)) });
      s.props = toProps(r);
      return r;
    });
    if (secret !== undefined) await this.#secrets.update((m) => (m[name] = secret));
    return updated;
  }

  async remove(name: string): Promise<void> {
    await this.#file.update((sections) => {
      const i = sections.findIndex((s) => s.type === 'remote' && s.name === name);
      if (i < 0) throw new IbsError('NOT_FOUND', `Remote "${name}" does not exist`);
      sections.splice(i, 1);
    });
    await this.#secrets.update((m) => delete m[name]);
  }
}
