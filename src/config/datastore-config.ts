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

/** A datastore whose stored settings do not check: CORRUPT, naming the file, the datastore and the value. */
function invalid(source: string, name: string, what: string, fix: string): IbsError {
  return new IbsError('CORRUPT', `${source}: datastore ${name}: ${what}. ${fix}`);
}

/**
 * A datastore's settings as stored, checked as when they were written. `lenient` (an update, whose change may
 * be the correction) reads a retention value that is not a whole number as NaN and takes the GC schedule as it
 * is: the result is checked after the change.
 */
function fromSection(s: Section, source: string, lenient = false): DatastoreConfig {
  const keep: KeepOptions = {};
  for (const rule of KEEP_RULES) {
    const v = s.props[rule];
    if (v === undefined) continue;
    if (/^\d+$/.test(v) && Number(v) <= 100000) keep[rule] = Number(v);
    else if (lenient) keep[rule] = Number.NaN;
    else throw invalid(source, s.name, `${rule} "${v}" is not a whole number from 0 to 100000`, `Correct it with "datastore update ${s.name} --${rule} N"`);
  }
  const path = s.props.path;
  if (path === undefined || !isAbsolute(path)) throw invalid(source, s.name, `path "${path ?? ''}" is not an absolute path`, 'Correct the path in the file, or remove the datastore (its data stays)');
  const backend = s.props.backend ?? 'local';
  if (backend !== 'local') throw invalid(source, s.name, `backend "${backend}" is not supported (expected local)`, 'Correct it in the file, or remove the datastore (its data stays)');
  const gcSchedule = s.props['gc-schedule'];
  if (gcSchedule && !lenient) {
    try {
      parseCalendarEvent(gcSchedule);
    } catch (error) {
      throw invalid(source, s.name, `gc-schedule "${gcSchedule}" is not a calendar event (${(error as Error).message})`, `Correct it with "datastore update ${s.name} --gc-schedule …"`);
    }
  }
  return { name: s.name, backend, path, ...(s.props.comment ? { comment: s.props.comment } : {}), keep, ...(gcSchedule ? { gcSchedule } : {}) };
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

  async #sections(): Promise<Section[]> {
    return (await this.#file.read()).sections.filter((s) => s.type === 'datastore');
  }

  /**
   * Every datastore in the file's order: its settings when they check, else the error naming what does not
   * (with the path as stored, when there is one).
   */
  async listChecked(): Promise<Array<{ name: string; config?: DatastoreConfig; error?: IbsError; path?: string }>> {
    return (await this.#sections()).map((s) => {
      try {
        return { name: s.name, config: fromSection(s, this.#file.path) };
      } catch (error) {
        return { name: s.name, error: error as IbsError, ...(s.props.path !== undefined ? { path: s.props.path } : {}) };
      }
    });
  }

  /** The datastores that check; each one that does not is reported to `onInvalid` and left out (the scheduler runs the others). */
  async listValid(onInvalid: (name: string, error: IbsError) => void): Promise<DatastoreConfig[]> {
    const valid: DatastoreConfig[] = [];
    for (const d of await this.listChecked()) {
      if (d.config) valid.push(d.config);
      else onInvalid(d.name, d.error as IbsError);
    }
    return valid;
  }

  /** One datastore, checked (another one that does not check does not stop this one). */
  async get(name: string): Promise<DatastoreConfig> {
    parseStoreName(name);
    const found = (await this.#sections()).find((s) => s.name === name);
    if (!found) throw new IbsError('NOT_FOUND', `Datastore "${name}" is not configured (see "ironcore-backup datastore list")`);
    return fromSection(found, this.#file.path);
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
      const stored = sections[i] as Section;
      const next = change(fromSection(stored, this.#file.path, true));
      // A stored value that does not read must be replaced by the change, not written back as it was.
      for (const rule of KEEP_RULES) {
        if (Number.isNaN(next.keep[rule])) throw invalid(this.#file.path, name, `${rule} "${stored.props[rule]}" is not a whole number from 0 to 100000`, `This change does not give --${rule}: give it`);
      }
      if (next.gcSchedule !== undefined && next.gcSchedule === stored.props['gc-schedule']) {
        try {
          parseCalendarEvent(next.gcSchedule);
        } catch (error) {
          throw invalid(this.#file.path, name, `gc-schedule "${next.gcSchedule}" is not a calendar event (${(error as Error).message})`, 'This change does not give --gc-schedule: give it');
        }
      }
      validateKeepOptions(next.keep);
      if (next.gcSchedule) parseCalendarEvent(next.gcSchedule);
      if (next.comment && /[\r\n]/.test(next.comment)) throw new IbsError('INVALID_ARGUMENT', 'Invalid comment: expected a single line');
      sections[i] = toSection(next);
      return next;
    });
  }

  /** Removes the datastore's entry (whether or not its settings check: removing it is how to be rid of a bad one). */
  async remove(name: string): Promise<void> {
    await this.#file.update((sections) => {
      const i = sections.findIndex((s) => s.type === 'datastore' && s.name === name);
      if (i < 0) throw new IbsError('NOT_FOUND', `Datastore "${name}" is not configured`);
      sections.splice(i, 1);
    });
  }
}
