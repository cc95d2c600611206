import { isAbsolute } from 'node:path';
import { IbsError, KEEP_RULES, parseCalendarEvent, parseStoreName, validateKeepOptions, type KeepOptions } from '../core/index.ts';
import { SectionConfig, type Section } from './section-config.ts';

/** One datastore of `datastore.cfg`. */
export interface DatastoreConfig {
  name: string;
  /** Backend scheme; "local" for now (offsite backends add their own). */
  backend: 'local';
  path: string;
  comment?: string;
  keep: KeepOptions;
  /** Calendar event for scheduled garbage collection. */
  gcSchedule?: string;
}

function fromSection(s: Section, source: string): DatastoreConfig {
  const keep: KeepOptions = {};
  for (const rule of KEEP_RULES) {
    const v = s.props[rule];
    if (v !== undefined) {
      if (!/^\d+$/.test(v)) throw new IbsError('CORRUPT', `${source}: datastore ${s.name}: ${rule} "${v}" is not a whole number`);
      keep[rule] = Number(v);
    }
  }
  const path = s.props.path;
  if (path === undefined || !isAbsolute(path)) throw new IbsError('CORRUPT', `${source}: datastore ${s.name}: path "${path ?? ''}" is not an absolute path`);
  const backend = s.props.backend ?? 'local';
  if (backend !== 'local') throw new IbsError('CORRUPT', `${source}: datastore ${s.name}: backend "${backend}" is not supported (expected local)`);
  return { name: s.name, backend, path, ...(s.props.comment ? { comment: s.props.comment } : {}), keep, ...(s.props['gc-schedule'] ? { gcSchedule: s.props['gc-schedule'] } : {}) };
}

function toSection(c: DatastoreConfig): Section {
  const props: Record<string, string> = { backend: c.backend, path: c.path };
  if (c.comment) props.comment = c.comment;
  if (c.gcSchedule) props['gc-schedule'] = c.gcSchedule;
  for (const rule of KEEP_RULES) if (c.keep[rule] !== undefined) props[rule] = String(c.keep[rule]);
  return { type: 'datastore', name: c.name, props };
}

export class DatastoreRegistry {
  readonly #file: SectionConfig;

  constructor(path: string) {
    this.#file = new SectionConfig(path);
  }

  async list(): Promise<DatastoreConfig[]> {
    const { sections } = await this.#file.read();
    return sections.filter((s) => s.type === 'datastore').map((s) => fromSection(s, this.#file.path));
  }

  async get(name: string): Promise<DatastoreConfig> {
    parseStoreName(name);
    const found = (await this.list()).find((d) => d.name === name);
    if (!found) throw new IbsError('NOT_FOUND', `Datastore "${name}" is not configured (see "ironcore-backup datastore list")`);
    return found;
  }

  async add(config: DatastoreConfig): Promise<void> {
    parseStoreName(config.name);
    validateKeepOptions(config.keep);
    if (!isAbsolute(config.path)) throw new IbsError('INVALID_ARGUMENT', `Invalid datastore path "${config.path}": expected an absolute path`);
    if (config.comment && /[\r\n]/.test(config.comment)) throw new IbsError('INVALID_ARGUMENT', 'Invalid comment: expected a single line');
    await this.#file.update((sections) => {
      if (sections.some((s) => s.type === 'datastore' && s.name === config.name)) throw new IbsError('EXISTS', `Datastore "${config.name}" is already configured`);
      const samePath = sections.find((s) => s.type === 'datastore' && s.props.path === config.path);
      if (samePath) throw new IbsError('EXISTS', `Path "${config.path}" is already used by datastore "${samePath.name}"`);
      sections.push(toSection(config));
    });
  }

  async update(name: string, change: (c: DatastoreConfig) => DatastoreConfig): Promise<DatastoreConfig> {
    return this.#file.update((sections) => {
      const i = sections.findIndex((s) => s.type === 'datastore' && s.name === name);
      if (i < 0) throw new IbsError('NOT_FOUND', `Datastore "${name}" is not configured`);
      const next = change(fromSection(sections[i] as Section, this.#file.path));
      validateKeepOptions(next.keep);
      if (next.gcSchedule) parseCalendarEvent(next.gcSchedule);
      if (next.comment && /[\r\n]/.test(next.comment)) throw new IbsError('INVALID_ARGUMENT', 'Invalid comment: expected a single line');
      sections[i] = toSection(next);
      return next;
    });
  }

  async remove(name: string): Promise<DatastoreConfig> {
    return this.#file.update((sections) => {
      const i = sections.findIndex((s) => s.type === 'datastore' && s.name === name);
      if (i < 0) throw new IbsError('NOT_FOUND', `Datastore "${name}" is not configured`);
      const [removed] = sections.splice(i, 1);
      return fromSection(removed as Section, this.#file.path);
    });
  }
}
