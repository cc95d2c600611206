import { join } from 'node:path';
import { IbsError } from '../core/index.ts';
import { SectionConfig, type Section } from './section-config.ts';
import { SecretsFile } from './secrets-file.ts';

/**
 * `notifications.cfg`: sections `webhook: NAME`, `sendmail: NAME`, `smtp: NAME` (targets) and `matcher: NAME`;
 * `notifications.secrets` (0600): per target an SMTP password and/or secret webhook headers. The shapes match
 * notify's TargetConfig and MatcherConfig (the notify layer validates them). A value that does not read as its
 * type (a port edited into words, a mode not known) is not guessed at: the entry carries `invalid`, naming it.
 */

export type TargetType = 'webhook' | 'sendmail' | 'smtp';
const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{1,31}$/;

const list = (v: string | undefined): string[] | undefined => (v === undefined || v === '' ? undefined : v.split(',').map((x) => x.trim()).filter(Boolean));

export interface StoredTarget {
  type: TargetType;
  name: string;
  props: Record<string, string>;
}

export class NotificationsConfig {
  readonly #file: SectionConfig;
  readonly #secrets: SecretsFile<{ password?: string; headers?: Record<string, string> }>;

  constructor(configDir: string) {
    this.#file = new SectionConfig(join(configDir, 'notifications.cfg'));
    this.#secrets = new SecretsFile(join(configDir, 'notifications.secrets'));
  }

  async sections(): Promise<Section[]> {
    return (await this.#file.read()).sections;
  }

  /** Targets as the notify layer wants them. */
  async targets(): Promise<Array<Record<string, unknown> & { type: TargetType; name: string; invalid?: InvalidSetting }>> {
    return (await this.sections()).filter((s) => ['webhook', 'sendmail', 'smtp'].includes(s.type)).map((s) => toTarget(s));
  }

  async matchers(): Promise<Array<Record<string, unknown> & { name: string; targets: string[]; mode: 'all' | 'any'; invert: boolean; invalid?: InvalidSetting }>> {
    return (await this.sections())
      .filter((s) => s.type === 'matcher')
      .map((s) => ({
        ...invalid(
          oneOf(s.props.mode, 'mode', ['all', 'any']),
          oneOf(s.props['invert-match'], 'invert-match', ['0', '1']),
          oneOf(s.props.disable, 'disable', ['0', '1']),
        ),
        name: s.name,
        targets: list(s.props.target) ?? [],
        ...(list(s.props['match-severity']) ? { severities: list(s.props['match-severity']) } : {}),
        ...(list(s.props['match-type']) ? { types: list(s.props['match-type']) } : {}),
        ...(list(s.props['match-datastore']) ? { datastores: list(s.props['match-datastore']) } : {}),
        ...(list(s.props['match-job']) ? { jobs: list(s.props['match-job']) } : {}),
        ...(s.props['match-calendar'] ? { calendar: s.props['match-calendar'] } : {}),
        mode: s.props.mode === 'any' ? 'any' : 'all',
        invert: s.props['invert-match'] === '1',
        ...(s.props.disable === '1' ? { disable: true } : {}),
        ...(s.props.comment ? { comment: s.props.comment } : {}),
      }));
  }

  async secrets(name: string): Promise<{ password?: string; headers?: Record<string, string> }> {
    return (await this.#secrets.get(name)) ?? {};
  }

  async add(section: Section, secrets?: { password?: string; headers?: Record<string, string> }): Promise<void> {
    if (!NAME_RE.test(section.name)) throw new IbsError('INVALID_ARGUMENT', `Invalid name "${section.name}": expected 2 to 32 letters, digits, "_", "-", "."`);
    await this.#file.update((sections) => {
      if (sections.some((s) => s.name === section.name && (s.type === 'matcher') === (section.type === 'matcher'))) throw new IbsError('EXISTS', `"${section.name}" already exists`);
      sections.push(section);
    });
    if (secrets && (secrets.password !== undefined || secrets.headers !== undefined)) await this.#secrets.update((m) => (m[section.name] = secrets));
  }

  /**
   * Replaces an existing target or matcher of the same name (its type stays). A target's secrets become
   * `secrets` (none given: it has none). NOT_FOUND when there is none.
   */
  async replace(section: Section, secrets?: { password?: string; headers?: Record<string, string> }): Promise<void> {
    const matcher = section.type === 'matcher';
    await this.#file.update((sections) => {
      const i = sections.findIndex((s) => s.name === section.name && (s.type === 'matcher') === matcher);
      if (i < 0) throw new IbsError('NOT_FOUND', `No notification ${matcher ? 'matcher' : 'target'} "${section.name}"`);
      if ((sections[i] as Section).type !== section.type) throw new IbsError('INVALID_ARGUMENT', `Target "${section.name}" is a ${(sections[i] as Section).type} target: its type cannot change (remove it and create it anew)`);
      sections[i] = section;
    });
    if (matcher) return;
    await this.#secrets.update((m) => {
      if (secrets && (secrets.password !== undefined || secrets.headers !== undefined)) m[section.name] = secrets;
      else delete m[section.name];
    });
  }

  async remove(kind: 'target' | 'matcher', name: string): Promise<void> {
    await this.#file.update((sections) => {
      const i = sections.findIndex((s) => s.name === name && (s.type === 'matcher') === (kind === 'matcher'));
      if (i < 0) throw new IbsError('NOT_FOUND', `No notification ${kind} "${name}"`);
      sections.splice(i, 1);
    });
    if (kind === 'target') await this.#secrets.update((m) => delete m[name]);
  }

}

/** A stored setting that does not read as its type: which, and what is wrong with it. */
export interface InvalidSetting {
  field: string;
  message: string;
}

/** `value` is absent or one of `allowed`; else what is wrong with it. */
function oneOf(value: string | undefined, field: string, allowed: string[]): InvalidSetting | undefined {
  return value === undefined || allowed.includes(value) ? undefined : { field, message: `${field} "${value}": expected ${allowed.join(' or ')}` };
}

/** The first of `checks` that found something, as `invalid`. */
function invalid(...checks: Array<InvalidSetting | undefined>): { invalid?: InvalidSetting } {
  const found = checks.find((c) => c !== undefined);
  return found === undefined ? {} : { invalid: found };
}

function toTarget(s: Section): Record<string, unknown> & { type: TargetType; name: string; invalid?: InvalidSetting } {
  const p = s.props;
  switch (s.type) {
    case 'webhook':
      return { type: 'webhook', name: s.name, url: p.url ?? '', method: (p.method ?? 'POST').toUpperCase(), headers: Object.fromEntries((list(p.header) ?? []).map((h) => [h.slice(0, h.indexOf('=')), h.slice(h.indexOf('=') + 1)])), ...(p.body ? { body: Buffer.from(p.body, 'base64').toString('utf8') } : {}), ...(p.comment ? { comment: p.comment } : {}) };
    case 'sendmail':
      return { type: 'sendmail', name: s.name, mailto: list(p.mailto) ?? [], from: p.from ?? 'ironcore-backup@localhost', path: p.path ?? '/usr/sbin/sendmail', ...(p.comment ? { comment: p.comment } : {}) };
    default:
      return {
        ...invalid(p.port === undefined || /^\d{1,5}$/.test(p.port) ? undefined : { field: 'port', message: `port "${p.port}": expected 1 to 65535` }, oneOf(p.mode, 'mode', ['starttls', 'tls', 'insecure'])),
        type: 'smtp',
        name: s.name,
        server: p.server ?? '',
        port: Number(p.port ?? (p.mode === 'tls' ? 465 : 587)),
        mode: (p.mode ?? 'starttls') as string,
        ...(p.username ? { username: p.username } : {}),
        mailto: list(p.mailto) ?? [],
        from: p.from ?? 'ironcore-backup@localhost',
        ...(p.comment ? { comment: p.comment } : {}),
      };
  }
}
