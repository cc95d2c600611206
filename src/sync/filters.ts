import { IbsError, KEEP_RULES, computePrune, formatGroup, formatNamespace, parseNamespace, retentionWindows, type GroupRef, type KeepRule, type SnapshotRef } from '../core/index.ts';

/**
 * The two filter languages of a sync job.
 * - Group filters (as in PBS): `type:vm|ct|host`, `group:TYPE/ID`, `regex:RE` (unanchored, against "type/id"),
 *   each optionally prefixed `include:` or `exclude:`. No include filter means every group; excludes then remove.
 * - Include filters (IBS), OR-combined over snapshots: `keep-weekly=*` (and keep-last/hourly/daily/monthly/yearly,
 *   `*` or a count: the snapshots that rule alone keeps), `backup-id:TYPE/ID` (or `backup-id:ID`),
 *   `namespace:A/B` (the snapshot's source namespace or below it).
 */

export interface GroupFilter {
  text: string;
  exclude: boolean;
  matches(group: GroupRef): boolean;
}

export function parseGroupFilter(text: string): GroupFilter {
  let rest = text;
  let exclude = false;
  if (rest.startsWith('include:')) rest = rest.slice(8);
  else if (rest.startsWith('exclude:')) {
    exclude = true;
    rest = rest.slice(8);
  }
  const colon = rest.indexOf(':');
  const kind = colon < 0 ? '' : rest.slice(0, colon);
  const value = rest.slice(colon + 1);
  const bad = (why: string): IbsError => new IbsError('INVALID_ARGUMENT', `Invalid group filter "${text}": ${why}`);
  switch (kind) {
    case 'type':
      if (!['vm', 'ct', 'host'].includes(value)) throw bad('expected type:vm, type:ct or type:host');
      return { text, exclude, matches: (g) => g.type === value };
    case 'group':
      if (!/^(vm|ct|host)\/[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(value)) throw bad('expected group:TYPE/ID, e.g. group:vm/100');
      return { text, exclude, matches: (g) => `${g.type}/${g.id}` === value };
    case 'regex': {
      let re: RegExp;
      try {
        re = new RegExp(value);
      } catch (error) {
        throw bad(`not a regular expression (${(error as Error).message})`);
      }
      return { text, exclude, matches: (g) => re.test(`${g.type}/${g.id}`) };
    }
    default:
      throw bad('expected [include:|exclude:]type:T, group:T/ID or regex:RE');
  }
}

export function groupPasses(filters: readonly GroupFilter[], group: GroupRef): boolean {
  const includes = filters.filter((f) => !f.exclude);
  if (includes.length > 0 && !includes.some((f) => f.matches(group))) return false;
  return !filters.some((f) => f.exclude && f.matches(group));
}

export type IncludeFilter = { text: string } & ({ kind: 'keep'; rule: KeepRule; count: number | '*' } | { kind: 'backup-id'; type?: string; id: string } | { kind: 'namespace'; ns: string });

export function parseIncludeFilter(text: string): IncludeFilter {
  const bad = (why: string): IbsError => new IbsError('INVALID_ARGUMENT', `Invalid include filter "${text}": ${why}`);
  const keep = /^(keep-[a-z]+)=(\*|\d{1,6})$/.exec(text);
  if (keep) {
    const rule = keep[1] as KeepRule;
    if (!KEEP_RULES.includes(rule)) throw bad(`expected one of ${KEEP_RULES.map((r) => `${r}=*`).join(', ')}`);
    return { text, kind: 'keep', rule, count: keep[2] === '*' ? '*' : Number(keep[2]) };
  }
  if (text.startsWith('backup-id:')) {
    const v = text.slice(10);
    const m = /^(?:(vm|ct|host)\/)?([A-Za-z0-9_][A-Za-z0-9._-]{0,127})$/.exec(v);
    if (!m) throw bad('expected backup-id:TYPE/ID or backup-id:ID, e.g. backup-id:vm/12345');
    return { text, kind: 'backup-id', ...(m[1] ? { type: m[1] } : {}), id: m[2] as string };
  }
  if (text.startsWith('namespace:')) {
    const v = text.slice(10);
    try {
      return { text, kind: 'namespace', ns: formatNamespace(parseNamespace(v)) };
    } catch (error) {
      throw bad((error as Error).message);
    }
  }
  throw bad('expected keep-weekly=* (or keep-last/hourly/daily/monthly/yearly), backup-id:TYPE/ID or namespace:NS');
}

/**
 * For the snapshots of one group (any order), which pass the include filters (OR-combined; none = all), each
 * with the filter that let it through.
 */
export function includedSnapshots<T extends { ref: SnapshotRef; protected: boolean }>(filters: readonly IncludeFilter[], snapshots: readonly T[]): Array<string | undefined> {
  if (filters.length === 0) return snapshots.map(() => 'all');
  const items = snapshots.map((s) => ({ time: s.ref.time, protected: false }));
  const windows = filters.some((f) => f.kind === 'keep' && f.count === '*') ? retentionWindows(items) : [];
  const counted = new Map<string, boolean[]>();
  for (const f of filters) {
    if (f.kind === 'keep' && f.count !== '*') counted.set(f.text, computePrune(items, { [f.rule]: f.count }).map((m) => m.action === 'keep'));
  }
  return snapshots.map((s, i) => {
    for (const f of filters) {
      if (f.kind === 'keep') {
        if (f.count === '*' ? windows[i]?.has(f.rule) : counted.get(f.text)?.[i]) return f.text;
      } else if (f.kind === 'backup-id') {
        if (s.ref.id === f.id && (f.type === undefined || s.ref.type === f.type)) return f.text;
      } else {
        const ns = formatNamespace(s.ref.ns);
        if (ns === f.ns || ns.startsWith(`${f.ns}/`) || f.ns === '') return f.text;
      }
    }
    return undefined;
  });
}

export function describeGroup(g: GroupRef): string {
  return g.ns.length ? `${formatNamespace(g.ns)}:${formatGroup(g)}` : formatGroup(g);
}
